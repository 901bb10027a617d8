"""``compute_target: inline``: the same contract, run serially in the calling process.

For debugging: a breakpoint in ``run()`` stops here. There is no runner process, so no
``run_invocation_timeout`` and no crash isolation; ``print()`` goes to the terminal.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import cloudpickle

from daskprs.commit import task_name
from daskprs.compat import add_shim_to_path, model_variables
from daskprs.entry_script import (
    ENV_AGENT_NAME,
    ENV_LOG_DIR,
    ENV_LOG_LEVEL,
    ENV_OUTPUT_DIR,
    ENV_WORKING_DIR,
)
from daskprs.errors import EntryScriptError
from daskprs.inputs.plan import MiniBatch, Plan
from daskprs.result_check import check_result
from daskprs.sink import RecordSink
from daskprs.storage import Location
from daskprs.worker.downloads import local_arguments
from daskprs.worker.local_files import LocalFiles
from daskprs.worker.runner import takes_context
from daskprs.worker.runner_client import Outcome
from daskprs.worker.spec import JobSpec
from daskprs.worker.wrapper import file_loader, run_task, tabular_loader

logger = logging.getLogger("daskprs")
AGENT = "inline"


class InlineRunner:
    """Runs the entry script in this process; what the wrapper needs of a RunnerPlugin."""

    def __init__(self, spec: JobSpec, script: Any, files: LocalFiles) -> None:
        self.spec = spec
        self.script = script
        self.files = files
        self.agent = AGENT
        self.runner_pid = os.getpid()
        self.logger = logger
        self.error_log = os.path.join(files.log_dir, "user", "error", f"{AGENT}.txt")
        self.takes_context = takes_context(script.run)
        self.address = AGENT
        self.init_error = None
        self.healthy = True

    def wait_ready(self) -> bool:
        """``init()`` ran before the first mini-batch: always ready."""
        return True

    def run_attempt(self, mini_batch: Any, context: Any) -> Outcome:
        """Call ``run()`` here; an exception fails the attempt."""
        try:
            result = self.script.run(mini_batch, context) if self.takes_context \
                else self.script.run(mini_batch)
        except Exception as exc:
            text = traceback.format_exc()
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            with open(self.error_log, "a", encoding="utf-8") as handle:
                handle.write(f"{stamp} run() of {context.mini_batch_id}, attempt "
                             f"{context.attempt} failed\n{text}\n")
            return Outcome("error", error=f"{type(exc).__name__}: {exc}", traceback=text)
        problem = check_result(result)
        return Outcome("error", error=problem) if problem else Outcome("ok", value=result)


def run_inline(spec: JobSpec, plan: Plan, todo: Iterable[MiniBatch], sink: RecordSink) -> str:
    """Run ``todo`` one after another in this process; return the failure reason or ''."""
    logger.info("compute_target inline: running in this process, without a runner: no "
                "run_invocation_timeout and no crash isolation")
    files = LocalFiles(Location(spec.output_url, spec.output_storage_options),
                       f"daskprs-{spec.run_id}-inline-")
    os.makedirs(os.path.join(files.log_dir, "user", "error"), exist_ok=True)
    with _script_context(spec, files.log_dir, files.output_dir) as script:
        runner = InlineRunner(spec, script, files)
        try:
            for mini_batch in todo:
                records = run_task(runner, task_name([mini_batch], 0), [mini_batch],
                                   lambda mb: _loader(plan, mb, files.root))
                for record in records:
                    reason = sink.add(record)
                    if reason:
                        return reason
        finally:
            shutdown = getattr(script, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:
                    logger.exception("shutdown() failed (the status is unchanged)")
            files.sync_logs(force=True)
    return ""


def _loader(plan: Plan, mini_batch: MiniBatch, parent: str) -> Any:
    if plan.kind == "file":
        return file_loader(mini_batch, parent)
    return tabular_loader(None, mini_batch)


@contextlib.contextmanager
def _script_context(spec: JobSpec, log_dir: str, output_dir: str) -> Iterator[Any]:
    """Load the script as the runner would (cwd, argv, sys.path, env); restore after."""
    saved_cwd, saved_argv, saved_path = os.getcwd(), list(sys.argv), list(sys.path)
    saved_env = dict(os.environ)
    cwd = spec.source_directory or os.getcwd()
    arguments = local_arguments(spec.arguments, spec.remote_side_inputs, os.path.join(
        tempfile.gettempdir(), f"daskprs-{spec.run_id}-side-inputs"))
    os.environ.update({k: str(v) for k, v in spec.environment_variables.items()})
    os.environ.update({ENV_AGENT_NAME: AGENT, ENV_LOG_DIR: log_dir, ENV_OUTPUT_DIR: output_dir,
                       ENV_LOG_LEVEL: spec.logging_level, ENV_WORKING_DIR: cwd})
    os.environ.update(model_variables(spec.models, os.path.join(
        tempfile.gettempdir(), f"daskprs-{spec.run_id}-models"), output_dir))
    try:
        os.chdir(cwd)
        if spec.source_directory:
            sys.path.insert(0, spec.source_directory)
        add_shim_to_path()  # sys.path is restored below
        if spec.script_object is not None:
            sys.argv = ["entry_script", *arguments]
            script = cloudpickle.loads(spec.script_object)
        else:
            sys.argv = [str(spec.script_path), *arguments]
            script = _import(str(spec.script_path))
        init = getattr(script, "init", None)
        if callable(init):
            try:
                init()
            except Exception as exc:
                raise EntryScriptError(f"init() failed: {type(exc).__name__}: {exc}\n"
                                       f"{traceback.format_exc()}") from exc
        yield script
    finally:
        os.chdir(saved_cwd)
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.environ.clear()
        os.environ.update(saved_env)


def _import(path: str) -> Any:
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
