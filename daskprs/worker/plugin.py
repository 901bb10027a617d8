"""RunnerPlugin: the WorkerPlugin that gives each Dask worker one runner process.

``setup`` starts the runner and runs ``init()`` there, off the worker's event loop; the
wrapper asks the plugin to run each attempt; ``teardown`` calls ``shutdown()``, uploads
the logs and removes the worker's temporary folders. A runner that timed out, died or
hit a ``MemoryError`` is replaced; the replacement's ``init()`` is tried up to
:data:`MAX_INIT_FAILURES` times in a row before the worker is unhealthy (a first
``init()`` that fails makes it unhealthy at once). Dask workers never run user code, and
daskprs never restarts a Dask worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from distributed import WorkerPlugin

from daskprs.compat import model_variables
from daskprs.entry_script import (
    ENV_AGENT_NAME,
    ENV_LOG_DIR,
    ENV_LOG_LEVEL,
    ENV_OUTPUT_DIR,
    ENV_WORKING_DIR,
)
from daskprs.storage import Location
from daskprs.storage.secrets import RedactingFilter
from daskprs.worker.downloads import local_arguments
from daskprs.worker.local_files import LocalFiles
from daskprs.worker.runner_client import Outcome, RunnerProcess
from daskprs.worker.scratch import make_owned_dir, mark_owned, remove_dir, remove_stale
from daskprs.worker.spec import JobSpec, agent_name

MAX_INIT_FAILURES = 3
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class RunnerPlugin(WorkerPlugin):
    """Start, use and stop the runner of one worker for one job.

    Parameters
    ----------
    spec
        The job, as workers see it.
    threads_per_runner
        BLAS/OpenMP threads for the runner on clusters daskprs starts, else None.
    """

    idempotent = True

    def __init__(self, spec: JobSpec, threads_per_runner: int | None = None) -> None:
        self.spec = spec
        self.name = spec.plugin_name
        self.threads_per_runner = threads_per_runner

    async def setup(self, worker: Any) -> None:
        """Start the runner and its ``init()`` in a thread, off the worker's event loop.

        Setup returns at once: registration does not wait for the slowest ``init()``, and
        each mini-batch waits for its own worker's (:meth:`wait_ready`).
        """
        self.agent = agent_name(worker.name, self.spec.owned_cluster)
        self.address = worker.address
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.runner: RunnerProcess | None = None
        self.init_error: str | None = None
        self.init_count = 0
        self.closed = False
        threading.Thread(target=remove_stale, name=f"{self.name}-clean", daemon=True).start()
        self.local_dir = make_owned_dir(f"daskprs-{self.spec.run_id}-")
        output = Location(self.spec.output_url, self.spec.output_storage_options)
        self.files = LocalFiles(output, f"daskprs-{self.spec.run_id}-files-")
        if self.files.remote:
            mark_owned(self.files.root)
        self.log_dir = self._log_dir()
        self.logger = _worker_logger(self.log_dir, self.agent, self.spec)
        threading.Thread(target=self._first_start, name=f"{self.name}-init", daemon=True).start()

    async def teardown(self, worker: Any) -> None:
        """Call ``shutdown()`` in the runner, stop it (and what it started), upload the
        logs, remove the worker's temporary folders."""
        await asyncio.to_thread(self.ready.wait, self.spec.init_timeout + 10)
        await asyncio.to_thread(self._stop_runner)
        try:
            await asyncio.to_thread(self.files.sync_logs, True)
        finally:
            await asyncio.to_thread(self._remove_folders)

    @property
    def healthy(self) -> bool:
        """Whether this worker can run mini-batches: its first ``init()`` succeeded (False
        while it runs) and no replacement runner failed ``init()`` too often since."""
        return self.ready.is_set() and self.init_error is None

    def wait_ready(self) -> bool:
        """Wait for the first ``init()`` to end; return whether the worker is healthy."""
        self.ready.wait(self.spec.init_timeout + 10)
        return self.healthy

    def _first_start(self) -> None:
        with self.lock:
            error: str | None = "the runner did not start"
            try:
                error = self._start_runner()
            except Exception as exc:  # the runner could not even be started
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self.init_error = error
                self.ready.set()

    def run_attempt(self, mini_batch: Any, context: Any) -> Outcome:
        """Run one attempt in the runner; replace the runner when it timed out, died or
        cannot be used again.

        Returns ``Outcome("unhealthy")`` (nothing ran) when this worker can take no more
        mini-batches: the mini-batch belongs to another worker, uncharged.
        """
        with self.lock:
            if self.healthy and not self.closed and (self.runner is None
                                                     or not self.runner.alive()):
                self._replace_runner("ended between attempts")
            if self.runner is None:
                reason = self.init_error or "the job's plugin was removed from this worker"
                return Outcome("unhealthy", error=f"WorkerUnhealthy: {reason}")
            outcome = self.runner.run(mini_batch, context, self.spec.run_invocation_timeout)
            if outcome.status in ("timed_out", "crashed") or not self.runner.alive():
                self._replace_runner(f"{outcome.status} in {context.mini_batch_id} "
                                     f"({outcome.error})")
            return outcome

    @property
    def runner_pid(self) -> int | None:
        """The pid of the current runner."""
        return self.runner.pid if self.runner is not None else None

    def _replace_runner(self, why: str) -> None:
        """Start a new runner; after :data:`MAX_INIT_FAILURES` failed ``init()`` in a row
        the worker is unhealthy (``init_error`` set)."""
        if self.runner is not None:
            self.logger.warning("runner pid %s %s: replacing it", self.runner.pid, why)
            self.runner.kill()
            self.runner = None
        errors = []
        while len(errors) < MAX_INIT_FAILURES:
            try:
                error = self._start_runner()
            except Exception as exc:  # the runner could not even be started
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                return
            errors.append(error)
        self.init_error = (f"init() of a replacement runner failed {len(errors)} times in a "
                           f"row; the last error:\n{errors[-1]}")
        self.logger.error("worker unhealthy: %s", self.init_error)

    def _start_runner(self) -> str | None:
        """Start a runner and its ``init()``; return None when it is ready, else the error."""
        spec = self.spec
        user = os.path.join(self.log_dir, "user")
        runner = RunnerProcess(self._settings(), self._env(),
                               os.path.join(user, "stdout", f"{self.agent}.txt"),
                               os.path.join(user, "stderr", f"{self.agent}.txt"))
        outcome = runner.start(spec.init_timeout)
        self.init_count += 1
        if outcome.status == "ok":
            self.runner = runner
            self.logger.info("init() done in runner pid %s", runner.pid)
            return None
        runner.kill()
        self.logger.error("init() failed in runner pid %s: %s", runner.pid, outcome.error)
        return f"{outcome.error}\n{outcome.traceback}".strip()

    def _stop_runner(self) -> None:
        with self.lock:
            self.closed = True  # an attempt still queued must not start a new runner
            if self.runner is not None:
                self.runner.stop(timeout=self.spec.run_invocation_timeout)
                self.runner = None
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)

    def _remove_folders(self) -> None:
        remove_dir(self.local_dir)
        if self.files.remote:
            remove_dir(self.files.root)

    def _log_dir(self) -> str:
        root = self.files.log_dir
        for sub in ("stdout", "stderr", "error", "entry_script_log"):
            os.makedirs(os.path.join(root, "user", sub), exist_ok=True)
        os.makedirs(os.path.join(root, "sys", "workers"), exist_ok=True)
        return root

    def _settings(self) -> dict[str, Any]:
        spec = self.spec
        cwd = spec.source_directory or os.path.join(self.local_dir, "work")
        os.makedirs(cwd, exist_ok=True)
        return {"script_path": spec.script_path, "script_object": spec.script_object,
                "source_directory": spec.source_directory, "arguments": self._arguments(),
                "cwd": cwd, "logging_level": spec.logging_level, "secrets": list(spec.secrets),
                "warm_up": spec.kind == "tabular",
                "error_log": os.path.join(self.log_dir, "user", "error", f"{self.agent}.txt")}

    def _arguments(self) -> list[str]:
        """``arguments`` with each remote side input's URL replaced by a local copy
        (downloaded once per worker)."""
        if not hasattr(self, "local_args"):
            self.local_args = local_arguments(self.spec.arguments, self.spec.remote_side_inputs,
                                              os.path.join(self.local_dir, "side_inputs"))
        return self.local_args

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.threads_per_runner is not None:
            env.update({name: str(self.threads_per_runner) for name in _THREAD_VARIABLES})
        env.update({key: str(value) for key, value in self.spec.environment_variables.items()})
        env.update({ENV_AGENT_NAME: self.agent, ENV_LOG_DIR: self.log_dir,
                    ENV_OUTPUT_DIR: self.files.output_dir, ENV_LOG_LEVEL: self.spec.logging_level,
                    ENV_WORKING_DIR: self.spec.source_directory or os.path.join(
                        self.local_dir, "work")})
        env.update(model_variables(self.spec.models, os.path.join(self.local_dir, "models"),
                                   self.files.output_dir))  # Azure's, for azureml.core
        path = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, path) if p)
        return env


def _worker_logger(log_dir: str, agent: str, spec: JobSpec) -> logging.Logger:
    logger = logging.getLogger(f"daskprs.worker.{spec.run_id}")
    logger.setLevel(spec.logging_level)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(os.path.join(log_dir, "sys", "workers", f"{agent}.txt"),
                                      encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.addFilter(RedactingFilter(spec.secrets))
        logger.addHandler(handler)
    return logger

