"""Scale-out on existing Dask clusters, with real ``dask scheduler`` and ``dask worker`` processes.

Every test starts its own scheduler and two workers on 127.0.0.1 (``dask_processes``) and
tears them down, process groups and runner children included, whatever the outcome. Jobs go
through the command line (``daskprs run conf.yaml --scheduler tcp://...``) as a user would
run them. Nothing waits on a sleep: the tests wait on the scheduler's log line, on
``Client.wait_for_workers``, on files the entry script writes (``init/<pid>.txt`` when
``init()`` ran, ``held/<pid>`` when ``run()`` is holding a mini-batch, ``ran/<pid>.txt`` after
each ``run()``), on ``<output>/_daskprs/committed/`` and on process exits.

The entry script can be told to hold a mini-batch: while ``hold/<runner pid>`` exists, that
runner's next ``run()`` (of one of the ids listed in the file, or of any id when the file is
empty) writes ``held/<pid>`` and waits until the hold file is removed or its Dask worker
process is gone. That makes "a worker dies in the middle of a mini-batch" and "a worker joins
while the others are busy" exact instead of likely.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import yaml

from daskprs import ClusterError, Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.commit import StateStore
from daskprs.storage import Location

ATTEMPT_HEADER = ("run_id,mini_batch_id,input,first_item,last_item,attempt,worker,pid,"
                  "start_utc,seconds,items,succeeded,failed,status,error,device,script")
FIX = ("Use object storage (s3://..., az://...) or a filesystem every worker mounts at the "
       "same path")
DEADLINE = 60.0

SCRIPT = """
import argparse
import os
import time

from daskprs import EntryScript


def _append(path, line):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\\n")


def init():
    global ARGS, PARENT
    parser = argparse.ArgumentParser()
    parser.add_argument("--signals", required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    ARGS, _ = parser.parse_known_args()
    PARENT = os.getppid()
    agent = EntryScript().agent_name
    print(f"init pid {os.getpid()} on {agent}", flush=True)
    _append(os.path.join(ARGS.signals, "init", f"{os.getpid()}.txt"), agent)


def _hold(mini_batch_id):
    hold = os.path.join(ARGS.signals, "hold", str(os.getpid()))
    try:
        with open(hold, encoding="utf-8") as handle:
            ids = handle.read().split()
    except FileNotFoundError:
        return
    if ids and mini_batch_id not in ids:
        return
    held = os.path.join(ARGS.signals, "held", str(os.getpid()))
    os.makedirs(os.path.dirname(held), exist_ok=True)
    with open(held + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(mini_batch_id)
    os.replace(held + ".tmp", held)
    deadline = time.monotonic() + 60
    while os.path.exists(hold) and os.getppid() == PARENT and time.monotonic() < deadline:
        time.sleep(0.02)


def run(mini_batch, mini_batch_context):
    _hold(mini_batch_context.mini_batch_id)
    time.sleep(ARGS.seconds)
    _append(os.path.join(ARGS.signals, "ran", f"{os.getpid()}.txt"),
            mini_batch_context.mini_batch_id)
    if isinstance(mini_batch, list):
        return [os.path.basename(path) for path in mini_batch]
    return mini_batch["id"].tolist()
"""


# ---------------------------------------------------------------- processes

def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE,
               process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` s or when ``process``
    (a job or server that should still run) ended first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            text = log.read_text(encoding="utf-8", errors="replace")[-4000:] if log else ""
            pytest.fail(f"process {process.args!r} ended with {process.returncode} before "
                        f"{what}\n{text}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie nobody reaped counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def descendants(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` processes, each in its own process group."""

    folder: Path
    address: str = ""
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    client: Any = None
    tracked: set[int] = field(default_factory=set)

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as handle:
            return subprocess.Popen([sys.executable, "-m", *args], stdout=handle,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.folder, start_new_session=True)

    def start_scheduler(self) -> None:
        log = self.folder / "scheduler.log"
        self.scheduler = self._spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                      "--port", "0", "--dashboard-address", "127.0.0.1:0"], log)

        def address() -> str | None:
            found = re.search(r"Scheduler at:\s+(tcp://\S+)", log.read_text(errors="replace"))
            return found.group(1) if found else None

        self.address = wait_until(address, "the scheduler's 'Scheduler at:' line",
                                  process=self.scheduler, log=log)
        from distributed import Client

        self.client = Client(self.address, timeout="30s")

    def start_worker(self) -> subprocess.Popen[bytes]:
        number = len(self.workers)
        (self.folder / f"worker-{number}").mkdir()
        worker = self._spawn(["distributed.cli.dask_worker", self.address, "--host", "127.0.0.1",
                              "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                              "--local-directory", str(self.folder / f"worker-{number}")],
                             self.folder / f"worker-{number}.log")
        self.workers.append(worker)
        return worker

    def names(self) -> dict[str, str]:
        """Worker address -> Dask worker name."""
        return {address: str(info["name"])
                for address, info in self.client.scheduler_info()["workers"].items()}

    def stop(self) -> list[int]:
        """Kill every process group started here; return the pids still alive after 20 s
        (killed then), among the processes and all their descendants (runners included)."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=5)
        started = [p for p in [*self.workers, self.scheduler] if p is not None]
        pids = set(self.tracked)
        for process in started:
            pids.add(process.pid)
            pids |= descendants(process.pid)
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in started:
            process.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(gone(pid) for pid in pids):
            time.sleep(0.05)
        orphans = sorted(pid for pid in pids if not gone(pid))
        for pid in orphans:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        return orphans


@pytest.fixture
def dask_processes(tmp_path: Path) -> Iterator[DaskProcesses]:
    """A real ``dask scheduler`` on 127.0.0.1 and two ``dask worker --nthreads 1 --nworkers 1``
    (with their nannies, the default), all registered; everything killed afterwards, and a
    leftover process (an orphaned worker or runner) is an error."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    cluster = DaskProcesses(folder)
    try:
        cluster.start_scheduler()
        cluster.start_worker()
        cluster.start_worker()
        cluster.client.wait_for_workers(2, timeout=DEADLINE)
        yield cluster
    finally:
        # every runner that ran init() must be gone too (the entry script wrote its pid)
        cluster.tracked |= {int(path.stem) for path in tmp_path.glob("**/signals/init/*.txt")}
        orphans = cluster.stop()
    if orphans:
        pytest.fail(f"processes left running after teardown (killed now): {orphans}")


# ---------------------------------------------------------------- jobs

@dataclass
class Job:
    """A step's folders: the YAML config, its output and the entry script's signal files."""

    root: Path
    config: Path
    output: Path
    signals: Path

    def init_agents(self) -> dict[int, list[str]]:
        """Runner pid -> the agent name written by each init() in that process."""
        folder = self.signals / "init"
        if not folder.is_dir():
            return {}
        return {int(path.stem): path.read_text(encoding="utf-8").split()
                for path in folder.glob("*.txt")}

    def committed(self) -> int:
        return len(StateStore(Location(str(self.output))).committed_ids())

    def held(self, pid: int) -> str | None:
        path = self.signals / "held" / str(pid)
        return path.read_text(encoding="utf-8") if path.exists() else None

    def hold(self, pid: int, ids: list[str] | None = None) -> None:
        folder = self.signals / "hold"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{pid}.tmp").write_text(" ".join(ids or []), encoding="utf-8")
        os.replace(folder / f"{pid}.tmp", folder / str(pid))

    def release(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.signals / "hold" / str(pid)).unlink()

    def release_all(self) -> None:
        if not (self.signals / "hold").is_dir():
            return
        for path in (self.signals / "hold").glob("*"):
            path.unlink(missing_ok=True)

    def attempts(self) -> pd.DataFrame:
        path = self.output / "logs" / "sys" / "mini_batches.csv"
        with open(path, encoding="utf-8") as handle:
            assert handle.readline().rstrip("\n") == ATTEMPT_HEADER
        return pd.read_csv(path, dtype={"first_item": str, "last_item": str, "error": str,
                                        "worker": str, "seconds": str},
                           keep_default_na=False)

    def job_result(self) -> dict[str, Any]:
        return json.loads((self.output / "logs" / "job_result.json").read_text(encoding="utf-8"))

    def lines(self) -> list[str]:
        return (self.output / "parallel_run_step.txt").read_text(encoding="utf-8").splitlines()


def make_job(tmp_path: Path, write_script: Callable[..., Path], input_spec: dict[str, Any],
             mini_batch_size: Any, seconds: float, output: str | None = None,
             **config: Any) -> Job:
    source = write_script(tmp_path, SCRIPT)
    signals = tmp_path / "signals"
    signals.mkdir()
    out = tmp_path / "out"
    document = {
        "name": "scale-out",
        "inputs": [input_spec],
        "output": output or str(out),
        "arguments": ["--signals", str(signals), "--seconds", seconds],
        "allow_reuse": False,
        "parallel_run_config": {"source_directory": str(source), "entry_script": "score.py",
                                "mini_batch_size": mini_batch_size, "error_threshold": 0,
                                "run_invocation_timeout": 60, "run_max_try": 3, **config},
    }
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return Job(tmp_path, path, out, signals)


def parquet_input(tmp_path: Path, make_parquet: Callable[..., Any], files: int,
                  rows_per_file: int) -> dict[str, Any]:
    folder = tmp_path / "table"
    make_parquet(folder, files=files, rows_per_file=rows_per_file, row_group_size=250)
    return {"name": "table", "type": "tabular", "format": "parquet", "path": str(folder)}


def file_input(tmp_path: Path, files: int) -> tuple[dict[str, Any], list[str]]:
    folder = tmp_path / "files"
    folder.mkdir()
    names = [f"f-{number:05d}.txt" for number in range(files)]
    for number, name in enumerate(names):
        (folder / name).write_text(str(number), encoding="utf-8")
    return {"name": "files", "type": "file", "path": str(folder)}, names


class Cli:
    """``python -m daskprs run CONFIG [--scheduler ADDRESS] --no-progress`` in the
    background, its output in files."""

    def __init__(self, job: Job, scheduler: str | None) -> None:
        self.stdout = job.root / "cli.stdout"
        self.stderr = job.root / "cli.stderr"
        args = [sys.executable, "-m", "daskprs", "run", str(job.config), "--no-progress"]
        if scheduler is not None:
            args += ["--scheduler", scheduler]
        self.started = time.monotonic()
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(args, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, cwd=job.root)
        self.seen: set[int] = set()

    def watch(self) -> None:
        """Remember the CLI's descendants (cluster processes it starts)."""
        self.seen |= descendants(self.process.pid)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Wait for the exit; return (exit code, stdout, stderr)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"daskprs run did not end within {timeout} s:\n{self.err()}")
        self.seconds = time.monotonic() - self.started
        return code, self.stdout.read_text(encoding="utf-8"), self.err()

    def err(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def cli(job: Job, scheduler: str | None) -> Iterator[Cli]:
    """Start the CLI; on the way out (also on failure) release holds and kill it if alive."""
    run = Cli(job, scheduler)
    try:
        yield run
    finally:
        job.release_all()
        run.kill()


def runner_worker(runner_pid: int) -> int:
    """The Dask worker process a runner belongs to (its parent)."""
    return psutil.Process(runner_pid).ppid()


def owner(cluster: DaskProcesses, runner_pid: int) -> subprocess.Popen[bytes]:
    """The ``dask worker`` process (nanny) whose worker process started this runner."""
    nanny = psutil.Process(runner_worker(runner_pid)).ppid()
    return next(worker for worker in cluster.workers if worker.pid == nanny)


def dask_agent(worker_name: str) -> str:
    """SPEC 5.1: on a cluster daskprs did not start, the Dask worker name with ':' and '/'
    replaced by '_'."""
    return worker_name.replace(":", "_").replace("/", "_")


def ordinal(mini_batch_id: str) -> int:
    return int(mini_batch_id.rsplit("-", 1)[1])


def assert_each_mini_batch_succeeded_once(table: pd.DataFrame, total: int, prefix: str
                                          ) -> None:
    succeeded = sorted(table[table["status"] == "succeeded"]["mini_batch_id"], key=ordinal)
    expected = [f"{prefix}-{n}" for n in range(total)]
    missing = sorted(set(expected) - set(succeeded), key=ordinal)
    assert succeeded == expected, (f"mini_batches.csv has no succeeded attempt of {missing}; "
                                   f"{len(succeeded)} succeeded rows for {total} mini-batches")


# ---------------------------------------------------------------- tests

def test_a_tabular_job_through_the_cli_on_an_existing_cluster_runs_init_once_per_worker(
        dask_processes, tmp_path, make_parquet, write_script):
    cluster = dask_processes
    spec = parquet_input(tmp_path, make_parquet, files=3, rows_per_file=1000)
    job = make_job(tmp_path, write_script, spec, "200 rows", seconds=0.05)
    names = cluster.names()

    with cli(job, cluster.address) as run:
        code, out, err = run.finish()

    assert code == 0, err
    assert "Completed" in out
    assert "Dask dashboard: http://127.0.0.1:" in err
    assert job.lines() == [str(n) for n in range(3000)]
    table = job.attempts()
    assert len(table) == 15 and set(table["status"]) == {"succeeded"}
    assert_each_mini_batch_succeeded_once(table, 15, "table")
    assert set(table["items"]) == {200}
    # init() ran once in each worker's runner: two processes, one line each
    inits = job.init_agents()
    assert len(inits) == 2 == len(names)
    assert all(len(agents) == 1 for agents in inits.values())
    assert set(table["pid"]) == set(inits)
    # worker names are the Dask worker names with ':' and '/' replaced by '_'
    agents = {dask_agent(name) for name in names.values()}
    assert all(":" not in a and "/" not in a for a in agents)
    assert {written[0] for written in inits.values()} == agents
    assert set(table["worker"]) == agents
    stdout_logs = job.output / "logs" / "user" / "stdout"
    assert sorted(p.name for p in stdout_logs.iterdir()) == sorted(f"{a}.txt" for a in agents)
    for pid, (agent,) in inits.items():
        assert f"init pid {pid} on {agent}" in (stdout_logs / f"{agent}.txt").read_text()
    result = job.job_result()
    assert result["status"] == "Completed"
    assert result["items"] == {"total": 3000, "succeeded": 3000, "failed": 0}


def test_a_file_job_through_the_cli_on_an_existing_cluster_outputs_every_file_once_in_order(
        dask_processes, tmp_path, write_script):
    cluster = dask_processes
    spec, files = file_input(tmp_path, 300)
    job = make_job(tmp_path, write_script, spec, 10, seconds=0.02)
    names = cluster.names()

    with cli(job, cluster.address) as run:
        code, _out, err = run.finish()

    assert code == 0, err
    assert job.lines() == files
    table = job.attempts()
    assert len(table) == 30 and set(table["status"]) == {"succeeded"}
    assert_each_mini_batch_succeeded_once(table, 30, "files")
    assert set(table["items"]) == {10}
    inits = job.init_agents()
    assert len(inits) == 2
    assert all(len(agents) == 1 for agents in inits.values())
    assert set(table["pid"]) == set(inits)
    agents = {dask_agent(name) for name in names.values()}
    assert set(table["worker"]) == agents
    stdout_logs = job.output / "logs" / "user" / "stdout"
    assert sorted(p.name for p in stdout_logs.iterdir()) == sorted(f"{a}.txt" for a in agents)
    assert job.job_result()["items"] == {"total": 300, "succeeded": 300, "failed": 0}


def test_sigkilling_a_dask_worker_process_group_mid_job_loses_nothing(
        dask_processes, tmp_path, make_parquet, write_script):
    """The whole ``dask worker`` process group (nanny + worker process) gets SIGKILL, as when
    a machine or container dies: the worker is gone for good and the survivor finishes.

    The runner is not in that group (it runs in its own session so that a terminal's Ctrl-C
    does not reach it); it must leave by itself once its worker is gone.
    """
    cluster = dask_processes
    spec = parquet_input(tmp_path, make_parquet, files=1, rows_per_file=2000)
    job = make_job(tmp_path, write_script, spec, "50 rows", seconds=0.2)  # 40 mini-batches

    with cli(job, cluster.address) as run:
        wait_until(lambda: job.committed() >= 3, "3 committed mini-batches", process=run.process,
                   log=run.stderr)
        runners = wait_until(lambda: len(job.init_agents()) == 2 and job.init_agents(),
                             "init() in both runners", process=run.process, log=run.stderr)
        victim_runner = min(runners)
        survivor_runner = max(runners)
        cluster.tracked |= set(runners)
        job.hold(victim_runner)
        held = wait_until(lambda: job.held(victim_runner), "the victim holding a mini-batch",
                          process=run.process, log=run.stderr)
        victim = owner(cluster, victim_runner)
        victim_worker_process = runner_worker(victim_runner)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        code, _out, err = run.finish()
        wait_until(lambda: gone(victim_runner), "the victim's runner to end", timeout=30)

    assert code == 0, err
    assert gone(victim_worker_process)
    assert job.lines() == [str(n) for n in range(2000)]
    table = job.attempts()
    victim_agent = runners[victim_runner][0]
    survivor_agent = runners[survivor_runner][0]
    rows = table[table["mini_batch_id"] == held].sort_values("attempt")
    assert list(rows["status"]) == ["worker_lost", "succeeded"]
    assert list(rows["attempt"]) == [1, 2]
    assert list(rows["worker"]) == [victim_agent, survivor_agent]
    assert (table["status"] == "worker_lost").sum() == 1
    result = job.job_result()
    assert result["status"] == "Completed"
    assert result["items"] == {"total": 2000, "succeeded": 2000, "failed": 0}
    assert result["attempts"]["worker_lost"] == 1
    assert result["attempts"]["failed"] == 0
    # a mini-batch the victim committed just before it died, whose record had not reached
    # the client yet, is still in mini_batches.csv and not "reused" (this is no resumed job)
    assert_each_mini_batch_succeeded_once(table, 40, "table")
    assert result["mini_batches"]["reused"] == 0
    # the lost attempt names the runner that was running it, like every other row
    assert int(rows["pid"].iloc[0]) == victim_runner


def test_sigkilling_only_the_worker_process_mid_job_its_nanny_restarts_it_and_nothing_is_lost(
        dask_processes, tmp_path, write_script):
    """Only the worker process (the nanny's child) gets SIGKILL, as when the kernel's OOM
    killer picks it: the nanny restarts it under a new address, the restarted worker runs
    ``init()`` again, and the mini-batch it was running is run again elsewhere.

    File mini-batches travel several per Dask task (3 here: 40 mini-batches, 2 workers), so
    the held mini-batch is the second of its task: the first one committed on the worker
    that then died, and its task is rerun as a whole.
    """
    cluster = dask_processes
    spec, files = file_input(tmp_path, 400)
    job = make_job(tmp_path, write_script, spec, 10, seconds=0.2)  # 40 mini-batches
    second_of_task = [f"files-{n}" for n in range(40) if n % 3 == 1]

    with cli(job, cluster.address) as run:
        wait_until(lambda: job.committed() >= 3, "3 committed mini-batches", process=run.process,
                   log=run.stderr)
        runners = wait_until(lambda: len(job.init_agents()) == 2 and job.init_agents(),
                             "init() in both runners", process=run.process, log=run.stderr)
        victim_runner, survivor_runner = min(runners), max(runners)
        cluster.tracked |= set(runners)
        # the survivor holds too, so the job is still running when the new worker is up
        job.hold(victim_runner, second_of_task)
        job.hold(survivor_runner)
        held = wait_until(lambda: job.held(victim_runner), "the victim holding a mini-batch",
                          process=run.process, log=run.stderr)
        wait_until(lambda: job.held(survivor_runner), "the survivor holding a mini-batch",
                   process=run.process, log=run.stderr)
        nanny = owner(cluster, victim_runner)
        victim_worker_process = runner_worker(victim_runner)
        os.kill(victim_worker_process, signal.SIGKILL)
        restarted = wait_until(lambda: set(job.init_agents()) - set(runners),
                               "init() in the restarted worker", process=run.process,
                               log=run.stderr)
        cluster.tracked |= restarted
        (new_runner,) = restarted
        new_worker_process = runner_worker(new_runner)
        assert psutil.Process(new_worker_process).ppid() == nanny.pid
        job.release(survivor_runner)
        code, _out, err = run.finish()
        wait_until(lambda: gone(victim_runner), "the killed worker's runner to end", timeout=30)

    assert code == 0, err
    assert nanny.poll() is None  # the nanny lives on
    assert new_worker_process != victim_worker_process
    inits = job.init_agents()
    assert len(inits) == 3 and all(len(agents) == 1 for agents in inits.values())
    victim_agent, survivor_agent = runners[victim_runner][0], runners[survivor_runner][0]
    new_agent = inits[new_runner][0]
    assert new_agent not in (victim_agent, survivor_agent)  # a new address, so a new name
    assert job.lines() == files
    table = job.attempts()
    rows = table[table["mini_batch_id"] == held].sort_values("attempt")
    assert list(rows["status"]) == ["worker_lost", "succeeded"]
    assert rows["worker"].iloc[0] == victim_agent
    assert rows["worker"].iloc[1] in (survivor_agent, new_agent)
    assert (table["status"] == "worker_lost").sum() == 1
    result = job.job_result()
    assert result["status"] == "Completed"
    assert result["items"] == {"total": 400, "succeeded": 400, "failed": 0}
    assert result["attempts"]["worker_lost"] == 1
    # the first mini-batch of the lost task committed before the worker died: its attempt
    # is in mini_batches.csv, and it is not "reused" (this is not a resumed job)
    assert_each_mini_batch_succeeded_once(table, 40, "files")
    assert result["mini_batches"]["reused"] == 0


def test_a_worker_that_joins_during_a_job_runs_init_and_takes_mini_batches(
        dask_processes, tmp_path, make_parquet, write_script):
    cluster = dask_processes
    spec = parquet_input(tmp_path, make_parquet, files=1, rows_per_file=3000)
    job = make_job(tmp_path, write_script, spec, "50 rows", seconds=0.2)  # 60 mini-batches

    with cli(job, cluster.address) as run:
        wait_until(lambda: job.committed() >= 3, "3 committed mini-batches", process=run.process,
                   log=run.stderr)
        runners = wait_until(lambda: len(job.init_agents()) == 2 and job.init_agents(),
                             "init() in both runners", process=run.process, log=run.stderr)
        cluster.tracked |= set(runners)
        for pid in runners:  # both busy: the next mini-batch can only go to the newcomer
            job.hold(pid)
        for pid in runners:
            wait_until(lambda pid=pid: job.held(pid), f"runner {pid} holding",
                       process=run.process, log=run.stderr)
        cluster.start_worker()
        new = wait_until(lambda: set(job.init_agents()) - set(runners),
                         "init() in the third worker", process=run.process, log=run.stderr)
        cluster.tracked |= new
        (new_runner,) = new
        wait_until(lambda: (job.signals / "ran" / f"{new_runner}.txt").exists(),
                   "a mini-batch run by the third worker", process=run.process, log=run.stderr)
        job.release_all()
        code, _out, err = run.finish()

    assert code == 0, err
    assert job.lines() == [str(n) for n in range(3000)]
    inits = job.init_agents()
    assert len(inits) == 3 and all(len(agents) == 1 for agents in inits.values())
    third_agent = inits[new_runner][0]
    third_names = {dask_agent(name) for name in cluster.names().values()}
    assert third_agent in third_names
    table = job.attempts()
    assert_each_mini_batch_succeeded_once(table, 60, "table")
    assert set(table["status"]) == {"succeeded"}
    assert third_agent in set(table["worker"])
    assert set(table[table["worker"] == third_agent]["pid"]) == {new_runner}
    assert set(table["pid"]) <= set(inits)


def test_a_dask_jobqueue_local_cluster_from_yaml_runs_a_job_end_to_end(
        tmp_path, make_parquet, write_script):
    """``compute_target: {class: dask_jobqueue.local.LocalCluster, options: ...}`` with
    ``node_count: 2``: daskprs starts the cluster (two jobs, each a ``dask worker``), scales it,
    runs the job and closes it; no process is left behind."""
    spec = parquet_input(tmp_path, make_parquet, files=2, rows_per_file=1000)
    target = {"class": "dask_jobqueue.local.LocalCluster",
              "options": {"cores": 1, "memory": "1GB", "processes": 1}}
    job = make_job(tmp_path, write_script, spec, "200 rows", seconds=0.0,
                   compute_target=target, node_count=2)

    with cli(job, None) as run:
        while run.process.poll() is None:  # remember the cluster's processes while it runs
            run.watch()
            time.sleep(0.05)
        code, _out, err = run.finish()
        run.seen |= set(job.init_agents())
        wait_until(lambda: all(gone(pid) for pid in run.seen),
                   "the jobqueue cluster's processes to end", timeout=30)

    assert code == 0, err
    assert run.seen, "the job started no cluster process"
    assert job.lines() == [str(n) for n in range(2000)]
    table = job.attempts()
    assert_each_mini_batch_succeeded_once(table, 10, "table")
    inits = job.init_agents()
    assert 1 <= len(inits) <= 2 and all(len(agents) == 1 for agents in inits.values())
    assert set(table["pid"]) <= set(inits)
    assert set(table["worker"]) <= {agents[0] for agents in inits.values()}
    assert job.job_result()["status"] == "Completed"


def test_an_output_the_workers_cannot_see_is_refused_before_any_mini_batch_runs(
        dask_processes, tmp_path, make_parquet, write_script):
    """``memory://`` lives in the client's process: real worker processes cannot read it."""
    import fsspec

    cluster = dask_processes
    folder = tmp_path / "table"
    make_parquet(folder, files=1, rows_per_file=100, row_group_size=100)
    signals = tmp_path / "signals"
    source = write_script(tmp_path, SCRIPT)
    url = f"memory://daskprs-clusters/{tmp_path.name}/out"
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size="10 rows")
    step = ParallelRunStep(name="unreachable", parallel_run_config=config,
                           inputs=[Dataset.Tabular.from_parquet_files(str(folder))], output=url,
                           arguments=["--signals", str(signals)], allow_reuse=False)
    memory = fsspec.filesystem("memory")
    try:
        with pytest.raises(ClusterError) as caught:
            step.run(client=cluster.address, progress=False)
        committed = memory.glob(f"{url}/_daskprs/commits/*/*")
    finally:
        with contextlib.suppress(FileNotFoundError):
            memory.rm(f"daskprs-clusters/{tmp_path.name}", recursive=True)

    message = str(caught.value)
    first_worker = sorted(cluster.names())[0]
    assert message.startswith(f"worker {first_worker} cannot reach the output {url} ("), message
    assert FIX in message
    assert not signals.exists()  # no init(), no run()
    assert committed == []
    plugins = cluster.client.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert not any(name.startswith("daskprs-") for names in plugins.values() for name in names)


def test_an_input_the_workers_cannot_see_is_refused_before_any_mini_batch_runs(
        dask_processes, tmp_path, write_script):
    """The same check for an input: the client lists ``memory://`` files, the workers
    cannot; the output is a local folder they all see."""
    import fsspec

    cluster = dask_processes
    root = f"memory://daskprs-clusters/{tmp_path.name}"
    with fsspec.open(f"{root}/table/part-000.parquet", "wb") as handle:
        pd.DataFrame({"id": range(100)}).to_parquet(handle, index=False)
    signals = tmp_path / "signals"
    source = write_script(tmp_path, SCRIPT)
    out = tmp_path / "out"
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size="10 rows")
    step = ParallelRunStep(name="unreachable", parallel_run_config=config,
                           inputs=[Dataset.Tabular.from_parquet_files(f"{root}/table/*.parquet")],
                           output=str(out), arguments=["--signals", str(signals)],
                           allow_reuse=False)
    try:
        with pytest.raises(ClusterError) as caught:
            step.run(client=cluster.address, progress=False)
    finally:
        fsspec.filesystem("memory").rm(f"daskprs-clusters/{tmp_path.name}", recursive=True)

    first_worker = sorted(cluster.names())[0]
    assert str(caught.value) == (f"worker {first_worker} cannot reach the input {root}/table "
                                 f"(it does not exist there). {FIX}.")
    assert not signals.exists()  # no init(), no run()
    assert not (out / "_daskprs" / "commits").exists()
    assert not (out / "parallel_run_step.txt").exists()


def test_an_output_the_workers_cannot_see_exits_2_through_the_cli(
        dask_processes, tmp_path, make_parquet, write_script):
    cluster = dask_processes
    spec = parquet_input(tmp_path, make_parquet, files=1, rows_per_file=100)
    url = "memory://daskprs-clusters/out"
    job = make_job(tmp_path, write_script, spec, "10 rows", seconds=0.0, output=url)

    with cli(job, cluster.address) as run:
        code, _out, err = run.finish()

    assert code == 2, err
    assert "cannot reach the output memory://daskprs-clusters/out" in err
    assert FIX in err
    assert any(f"worker {address} " in err for address in cluster.names())
    assert not job.signals.joinpath("init").exists()


def test_an_unreachable_scheduler_exits_2_naming_the_address_and_the_fix(
        tmp_path, make_parquet, write_script):
    spec = parquet_input(tmp_path, make_parquet, files=1, rows_per_file=100)
    job = make_job(tmp_path, write_script, spec, "10 rows", seconds=0.0)
    address = f"tcp://127.0.0.1:{free_port()}"  # bound, then closed: nobody listens

    with cli(job, address) as run:
        code, _out, err = run.finish()

    assert code == 2, err
    assert f"scheduler '{address}' cannot be reached" in err
    assert "Start it with 'dask scheduler', check the address" in err
    assert "Traceback" not in err
    assert not job.signals.exists() or not any(job.signals.iterdir())
    assert not (job.output / "parallel_run_step.txt").exists()
    # the client's connect timeout is 10 s; the whole command (interpreter start included)
    # must not take much longer
    assert run.seconds < 25, run.seconds
