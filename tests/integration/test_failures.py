"""Failure semantics under faults (SPEC §2, §4, §5; issue 4).

Thresholds at, below and above their limits; the live early abort; a chaos job whose
mini-batches raise, hang or kill their runner; init() failures; resume after SIGKILL;
killing the process while the output is committed; Ctrl-C and SIGTERM; the inline target.

Python-API jobs run on the session ``client`` (2 workers x 1 thread). Jobs that are killed
run the CLI in a subprocess of their own process group (``compute_target: local``), so the
whole job - client, Dask workers and their runners - can be killed and checked gone. Tests
wait on files and processes, never on sleeps; user entry scripts sleep to simulate work.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from daskprs import ClusterError, Dataset, OutputError, ParallelRunConfig, ParallelRunStep
from daskprs.commit import StateStore
from daskprs.storage import Location

ATTEMPT_HEADER = ["run_id", "mini_batch_id", "input", "first_item", "last_item", "attempt",
                  "worker", "pid", "start_utc", "seconds", "items", "succeeded", "failed",
                  "status", "error", "device", "script"]
NO_ATTEMPTS = {"total": 0, "failed": 0, "timed_out": 0, "crashed": 0, "worker_lost": 0,
               "transient": 0}
POLL_SECONDS = 0.02      # how often a waiting test looks at a file or a process
DEADLINE_SECONDS = 240   # a condition not met by then is a hang, not a slow machine

# ---------------------------------------------------------------- entry scripts

# Mini-batches whose ordinal is in --bad raise (--mode raise) or return one element too
# few (--mode short); the others return their ids.
THRESHOLD_SCRIPT = """
import argparse

def init():
    global bad, mode
    parser = argparse.ArgumentParser()
    parser.add_argument("--bad", default="")
    parser.add_argument("--mode", default="raise")
    args, _ = parser.parse_known_args()
    bad = {int(x) for x in args.bad.split(",") if x}
    mode = args.mode

def run(mini_batch, mini_batch_context):
    ordinal = int(mini_batch_context.mini_batch_id.rsplit("-", 1)[1])
    ids = mini_batch["id"].tolist()
    if ordinal in bad:
        if mode == "raise":
            raise ValueError(f"bad mini-batch {ordinal}")
        return ids[:-1]
    return ids
"""

# Each run() takes the next number of a shared counter (one file per call, created
# exclusively, so it works across worker processes); call number --fail raises. The
# counter folder tells how many run() calls started.
COUNTED_SCRIPT = """
import argparse
import os
import time

def init():
    global calls, fail
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls")
    parser.add_argument("--fail", type=int)
    args, _ = parser.parse_known_args()
    calls, fail = args.calls, args.fail

def run(mini_batch, mini_batch_context):
    number = 0
    while True:
        try:
            os.close(os.open(os.path.join(calls, str(number)), os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            number += 1
    time.sleep(0.05)
    if number == fail:
        raise RuntimeError(f"call {number} fails ({mini_batch_context.mini_batch_id})")
    return mini_batch["id"].tolist()
"""

# --plan maps mini-batch ids to raise | hang | exit; the fault happens on the first
# attempt only: the first call creates the mini-batch's marker file (holding the attempt
# number), later calls find it and return normally.
CHAOS_SCRIPT = """
import argparse
import json
import os
import time

def init():
    global plan, markers
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan")
    parser.add_argument("--markers")
    args, _ = parser.parse_known_args()
    with open(args.plan) as handle:
        plan = json.load(handle)
    markers = args.markers

def run(mini_batch, mini_batch_context):
    mini_batch_id = mini_batch_context.mini_batch_id
    kind = plan.get(mini_batch_id)
    if kind is not None:
        try:
            fd = os.open(os.path.join(markers, mini_batch_id),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(mini_batch_context.attempt).encode())
            os.close(fd)
            if kind == "raise":
                raise RuntimeError(f"injected failure in {mini_batch_id}")
            if kind == "hang":
                time.sleep(60)
            if kind == "exit":
                os._exit(3)
    return mini_batch["id"].tolist()
"""

INIT_FAILS_EVERYWHERE = """
def init():
    raise RuntimeError("no model here: init fails on every worker")

def run(mini_batch):
    return mini_batch["id"].tolist()
"""

# The first init() to create the --lock file fails; every later init() succeeds.
INIT_FAILS_ONCE = """
import argparse
import os

def init():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lock")
    args, _ = parser.parse_known_args()
    try:
        fd = os.open(args.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    raise RuntimeError(f"init fails on purpose in pid {os.getpid()}")

def run(mini_batch):
    return mini_batch["id"].tolist()
"""

SLOW_SCRIPT = """
import time

def run(mini_batch):
    time.sleep({seconds})
    return mini_batch["id"].tolist()
"""

VERSIONED_SCRIPT = """
import time

VERSION = "{version}"

def run(mini_batch):
    time.sleep(0.05)
    return [f"{{VERSION}}-{{i}}" for i in mini_batch["id"]]
"""

# init() appends its pid to --pids; run() raises on each mini-batch's first attempt.
FLAKY_SCRIPT = """
import argparse
import os

def init():
    global markers
    parser = argparse.ArgumentParser()
    parser.add_argument("--pids")
    parser.add_argument("--markers")
    args, _ = parser.parse_known_args()
    with open(args.pids, "a") as handle:
        handle.write(f"{os.getpid()}\\n")
    markers = args.markers

def run(mini_batch, mini_batch_context):
    marker = os.path.join(markers, mini_batch_context.mini_batch_id)
    if not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(str(mini_batch_context.attempt))
        raise RuntimeError(f"first try of {mini_batch_context.mini_batch_id}")
    return [f"{mini_batch_context.mini_batch_id}:{i}" for i in mini_batch["id"]]
"""


# ---------------------------------------------------------------- helpers

def make_rows(make_parquet: Callable[..., list[Path]], folder: Path, rows: int) -> Path:
    """One Parquet file of ``rows`` rows, ``id`` = 0 .. rows-1."""
    make_parquet(folder, files=1, rows_per_file=rows, row_group_size=rows)
    return folder


def api_step(source: Path, data: Path, out: Path, arguments: list[Any] | None = None,
             **config: Any) -> ParallelRunStep:
    """A step over the Parquet folder ``data`` with the script ``source/score.py``."""
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py", **config)
    return ParallelRunStep(name="failure-test", parallel_run_config=cfg,
                           inputs=[Dataset.Tabular.from_parquet_files(str(data))],
                           output=str(out), arguments=arguments)


def write_config(tmp_path: Path, source: Path, data: Path, out: Path,
                 arguments: list[Any] | None = None, **config: Any) -> Path:
    """A YAML config for the CLI: an embedded LocalCluster of 2 workers unless overridden."""
    parallel = {"source_directory": str(source), "entry_script": "score.py",
                "compute_target": "local", "process_count_per_node": 2, **config}
    data_config = {"name": "failure-test",
                   "inputs": [{"name": "input0", "type": "tabular", "format": "parquet",
                               "path": str(data)}],
                   "output": str(out), "parallel_run_config": parallel}
    if arguments:
        data_config["arguments"] = arguments
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data_config), encoding="utf-8")
    return path


def job_json(out: Path) -> dict[str, Any]:
    return json.loads((out / "logs" / "job_result.json").read_text(encoding="utf-8"))


def first_line(out: Path) -> str:
    return (out / "logs" / "job_result.txt").read_text(encoding="utf-8").splitlines()[0]


def attempt_rows(out: Path) -> list[dict[str, str]]:
    """``logs/sys/mini_batches.csv`` as dicts, after checking the header and that every
    row is whole (16 fields)."""
    with open(out / "logs" / "sys" / "mini_batches.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows and rows[0] == ATTEMPT_HEADER, rows[:1]
    broken = [row for row in rows[1:] if len(row) != len(ATTEMPT_HEADER)]
    assert not broken, f"rows of mini_batches.csv that are not whole: {broken[:3]}"
    return [dict(zip(ATTEMPT_HEADER, row, strict=True)) for row in rows[1:]]


def status_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    return dict(collections.Counter(row["status"] for row in rows))


def output_lines(out: Path) -> list[str]:
    return (out / "parallel_run_step.txt").read_text(encoding="utf-8").splitlines()


def ids_text(ids: Any) -> list[str]:
    return [str(i) for i in ids]


def committed_ids(out: Path) -> set[str]:
    """Mini-batches committed so far (in the task bundles under ``_daskprs/commits/``)."""
    return StateStore(Location(str(out))).committed_ids()


def all_ids(count: int) -> set[str]:
    return {f"input0-{i}" for i in range(count)}


# ---------------------------------------------------------------- CLI processes

class CliJobs:
    """CLI jobs started by one test, each in its own process group; everything they start
    (Dask workers, runners in their own sessions) is tracked so nothing outlives the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.descendants: dict[int, psutil.Process] = {}

    def start(self, config: Path, *options: str) -> subprocess.Popen[bytes]:
        number = len(self.procs)
        with open(self.folder / f"cli-{number}.stdout", "wb") as out, \
                open(self.folder / f"cli-{number}.stderr", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "daskprs", "run", str(config), "--no-progress",
                 *options], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.folder)
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> tuple[str, str]:
        """The stdout and stderr of a finished CLI job."""
        number = self.procs.index(proc)
        return tuple(  # type: ignore[return-value]
            (self.folder / f"cli-{number}.{name}").read_text(encoding="utf-8", errors="replace")
            for name in ("stdout", "stderr"))

    def run(self, config: Path, *options: str) -> tuple[int, str, str]:
        """Run a CLI job to its end; return its exit code, stdout and stderr."""
        proc = self.start(config, *options)
        try:
            code = proc.wait(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daskprs run did not end within {DEADLINE_SECONDS} s")
        return (code, *self.output(proc))

    def wait_for(self, proc: subprocess.Popen[bytes], condition: Callable[[], bool],
                 what: str) -> None:
        """Poll ``condition`` while the job runs; fail if the job ends first."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not condition():
            if proc.poll() is not None:
                stdout, stderr = self.output(proc)
                pytest.fail(f"the job ended (exit {proc.returncode}) before {what}:\n"
                            f"{stdout}\n{stderr[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {DEADLINE_SECONDS} s")
            self.snapshot(proc)
            time.sleep(POLL_SECONDS)

    def snapshot(self, proc: subprocess.Popen[bytes]) -> None:
        """Remember the job's processes (runners are replaced, so look often)."""
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            self.descendants.setdefault(child.pid, child)

    def signal(self, proc: subprocess.Popen[bytes], signum: int, group: bool = True) -> None:
        """Send ``signum`` to the job's process group (as a terminal does) or its pid."""
        self.snapshot(proc)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)

    def wait_gone(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait until the CLI process and every process it started have exited."""
        try:
            code = proc.wait(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the CLI process did not exit within {DEADLINE_SECONDS} s")
        _, alive = psutil.wait_procs(list(self.descendants.values()), timeout=DEADLINE_SECONDS)
        assert not alive, f"processes outlived the job: {alive}"
        return code

    def close(self) -> None:
        """Kill whatever a failed test left running (only processes this test started)."""
        for proc in self.procs:
            if proc.poll() is None:
                self.snapshot(proc)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for child in self.descendants.values():
            try:
                if child.is_running():
                    child.kill()
            except psutil.NoSuchProcess:
                pass


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CliJobs]:
    jobs = CliJobs(tmp_path)
    try:
        yield jobs
    finally:
        jobs.close()


# ---------------------------------------------------------------- 1. thresholds

# 10 mini-batches of 10 rows; mini-batches 2 and 7 fail, so each threshold sees exactly 2
# failures: "short" = run() returns one element too few (2 failed items, 0 failed
# mini-batches); "raise" = run() raises with run_max_try=1 (2 failed mini-batches, 20 failed
# items). At the limit (2, 20 %) the job completes; a limit one step under fails; a limit
# over it, or a disabled one (-1, 100), completes.
THRESHOLD_CASES = [
    ("error_threshold", 2, "short", "Completed"),
    ("error_threshold", 1, "short", "Failed"),
    ("error_threshold", 3, "short", "Completed"),
    ("error_threshold", -1, "short", "Completed"),
    ("allowed_failed_count", 2, "raise", "Completed"),
    ("allowed_failed_count", 1, "raise", "Failed"),
    ("allowed_failed_count", 3, "raise", "Completed"),
    ("allowed_failed_count", -1, "raise", "Completed"),
    ("allowed_failed_percent", 20, "raise", "Completed"),
    ("allowed_failed_percent", 19.9, "raise", "Failed"),
    ("allowed_failed_percent", 25, "raise", "Completed"),
    ("allowed_failed_percent", 100, "raise", "Completed"),
]


@pytest.mark.parametrize(("parameter", "limit", "mode", "status"), THRESHOLD_CASES,
                         ids=[f"{p}={v}-{s}" for p, v, _, s in THRESHOLD_CASES])
def test_a_threshold_fails_the_job_only_when_failures_exceed_it(
        client, tmp_path, make_parquet, write_script, parameter, limit, mode, status):
    data = make_rows(make_parquet, tmp_path / "data", 100)
    source = write_script(tmp_path, THRESHOLD_SCRIPT)
    out = tmp_path / "out"
    step = api_step(source, data, out, arguments=["--bad", "2,7", "--mode", mode],
                    mini_batch_size="10 rows", run_max_try=1, **{parameter: limit})

    result = step.run(client=client, progress=False)

    summary = job_json(out)
    assert result.status == summary["status"] == first_line(out) == status, result.summary()
    assert summary["thresholds"][parameter] == limit
    if mode == "raise":  # both failures are reported with their inputs and traceback file
        job_error = (out / "logs" / "job_error.txt").read_text(encoding="utf-8")
        for k in (2, 7):
            first = f"{data}/part-000.parquet#{10 * k}"
            last = f"{data}/part-000.parquet#{10 * k + 9}"
            assert f"mini-batch input0-{k} (input input0, items {first} .. {last})" in job_error
            assert f"  ValueError: bad mini-batch {k}\n  traceback: logs/user/error/" in job_error
        tracebacks = "".join(p.read_text(encoding="utf-8")
                             for p in (out / "logs" / "user" / "error").glob("*.txt"))
        assert tracebacks.count("ValueError: bad mini-batch") == 2
    if status == "Failed":
        assert summary["reason"].startswith(f"{parameter} exceeded"), summary["reason"]
        # the job stopped at the second failure, which is the one that exceeded the limit
        if mode == "short":
            assert summary["items"]["failed"] == 2
            assert summary["mini_batches"]["failed"] == 0
        else:
            assert summary["mini_batches"]["failed"] == 2
        assert not (out / "parallel_run_step.txt").exists()
        with pytest.raises(OutputError):
            result.read_output()
        return
    assert summary["reason"] == ""
    bad = {2, 7}
    if mode == "short":
        assert summary["mini_batches"] == {"total": 10, "succeeded": 10, "failed": 0,
                                           "reused": 0}
        assert summary["items"] == {"total": 100, "succeeded": 98, "failed": 2}
        assert summary["attempts"] == {**NO_ATTEMPTS, "total": 10}
        kept = [i for i in range(100) if not (i // 10 in bad and i % 10 == 9)]
    else:
        assert summary["mini_batches"] == {"total": 10, "succeeded": 8, "failed": 2,
                                           "reused": 0}
        assert summary["items"] == {"total": 100, "succeeded": 80, "failed": 20}
        assert summary["attempts"] == {**NO_ATTEMPTS, "total": 10, "failed": 2}
        kept = [i for i in range(100) if i // 10 not in bad]
        errors = sorted((e["mini_batch_id"], e["error"]) for e in summary["first_errors"])
        assert errors == [("input0-2", "ValueError: bad mini-batch 2"),
                          ("input0-7", "ValueError: bad mini-batch 7")]
    assert output_lines(out) == ids_text(kept)
    rows = attempt_rows(out)
    assert len(rows) == 10
    assert status_counts(rows) == ({"succeeded": 10} if mode == "short"
                                   else {"succeeded": 8, "failed": 2})


# ---------------------------------------------------------------- 2. live early abort

def test_one_failure_with_allowed_failed_count_0_stops_the_job_long_before_its_end(
        client, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 200)
    source = write_script(tmp_path, COUNTED_SCRIPT)
    calls = tmp_path / "calls"
    calls.mkdir()
    out = tmp_path / "out"
    # 100 mini-batches of 50 ms; the 4th run() call (in execution order) raises
    step = api_step(source, data, out, arguments=["--calls", str(calls), "--fail", 3],
                    mini_batch_size="2 rows", allowed_failed_count=0, run_max_try=1)

    result = step.run(client=client, progress=False)

    assert result.status == "Failed", result.summary()
    assert result.reason.startswith("allowed_failed_count exceeded: 1 failed mini-batches > 0")
    assert result.mini_batches["total"] == 100
    assert result.mini_batches["failed"] == 1
    rows = attempt_rows(out)
    assert [row["status"] for row in rows].count("failed") == 1
    # counts, not times: what ran is a handful of mini-batches, not 100
    started_calls = len(list(calls.iterdir()))
    assert 4 <= started_calls <= 20, started_calls
    assert len(rows) <= 20, len(rows)
    assert not (out / "parallel_run_step.txt").exists()


# ---------------------------------------------------------------- 3. chaos

def test_chaos_raises_hangs_and_runner_deaths_on_first_attempts_still_give_every_item_once(
        client, tmp_path, make_parquet, write_script):
    mini_batches, rows_each = 200, 5
    data = make_rows(make_parquet, tmp_path / "data", mini_batches * rows_each)
    source = write_script(tmp_path, CHAOS_SCRIPT)
    rng = random.Random(20240604)
    chosen = rng.sample(range(mini_batches), mini_batches // 5)   # a seeded 20 %
    kinds = ["hang"] * 4 + ["exit"] * 12 + ["raise"] * (len(chosen) - 16)
    rng.shuffle(kinds)
    plan = {f"input0-{ordinal}": kind for ordinal, kind in zip(chosen, kinds, strict=True)}
    (tmp_path / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    step = api_step(source, data, out,
                    arguments=["--plan", str(tmp_path / "plan.json"), "--markers", str(markers)],
                    mini_batch_size=f"{rows_each} rows", run_max_try=3,
                    run_invocation_timeout=1.5, allowed_failed_count=0)

    result = step.run(client=client, progress=False)

    injected = collections.Counter(plan.values())
    assert injected == {"raise": 24, "exit": 12, "hang": 4}
    assert result.status == "Completed", result.summary()
    assert output_lines(out) == ids_text(range(mini_batches * rows_each))
    summary = job_json(out)
    assert summary["mini_batches"] == {"total": 200, "succeeded": 200, "failed": 0,
                                       "reused": 0}
    assert summary["items"] == {"total": 1000, "succeeded": 1000, "failed": 0}
    assert summary["attempts"] == {"total": 200 + len(plan), "failed": injected["raise"],
                                   "timed_out": injected["hang"], "crashed": injected["exit"],
                                   "worker_lost": 0, "transient": 0}
    rows = attempt_rows(out)
    assert status_counts(rows) == {"succeeded": 200, "failed": injected["raise"],
                                   "timed_out": injected["hang"], "crashed": injected["exit"]}
    # each faulty mini-batch: attempt 1 with its fault, attempt 2 succeeded; others: 1 try
    expected_status = {"raise": "failed", "hang": "timed_out", "exit": "crashed"}
    by_id: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for row in rows:
        by_id[row["mini_batch_id"]].append(row)
    assert set(by_id) == all_ids(mini_batches)
    for mini_batch_id, tries in by_id.items():
        tries.sort(key=lambda row: int(row["attempt"]))
        kind = plan.get(mini_batch_id)
        if kind is None:
            assert [(t["attempt"], t["status"]) for t in tries] == [("1", "succeeded")]
            continue
        assert [(t["attempt"], t["status"]) for t in tries] == [
            ("1", expected_status[kind]), ("2", "succeeded")], mini_batch_id
        assert (tries[0]["succeeded"], tries[0]["failed"]) == ("0", "5")
        error = tries[0]["error"]
        if kind == "raise":
            assert error == f"RuntimeError: injected failure in {mini_batch_id}"
        elif kind == "hang":
            assert error.startswith("TimeoutError:"), error
        else:
            assert error == "RunnerCrashed: the runner process ended with exit code 3"
    assert {p.name: p.read_text() for p in markers.iterdir()} == dict.fromkeys(plan, "1")


# ---------------------------------------------------------------- 4. init() failures

def test_init_failing_on_every_worker_fails_the_job_at_once_with_the_init_traceback(
        client, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 100)
    source = write_script(tmp_path, INIT_FAILS_EVERYWHERE)
    out = tmp_path / "out"
    step = api_step(source, data, out, mini_batch_size="10 rows")

    with pytest.raises(ClusterError) as caught:
        step.run(client=client, progress=False)

    message = str(caught.value)
    assert "init() failed on every worker" in message
    assert "RuntimeError: no model here: init fails on every worker" in message
    assert "Traceback (most recent call last)" in message
    assert f'File "{source / "score.py"}", line 2, in init' in message
    assert job_json(out)["status"] == "Failed"
    assert first_line(out) == "Failed"
    assert attempt_rows(out) == []          # no mini-batch was tried
    assert committed_ids(out) == set()
    assert not (out / "parallel_run_step.txt").exists()


def test_the_cli_exits_1_with_the_init_traceback_when_no_worker_can_init(
        client, cli, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 100)
    source = write_script(tmp_path, INIT_FAILS_EVERYWHERE)
    out = tmp_path / "out"
    config = write_config(tmp_path, source, data, out, mini_batch_size="10 rows")

    code, _, stderr = cli.run(config, "--scheduler", client.scheduler.address)

    assert "RuntimeError: no model here: init fails on every worker" in stderr
    assert "Traceback (most recent call last)" in stderr
    assert first_line(out) == "Failed"
    assert code == 1, f"SPEC §7: no healthy worker is a Failed job, exit 1; got {code}"


def test_init_failing_on_one_worker_leaves_the_job_to_the_other(
        client, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 200)
    source = write_script(tmp_path, INIT_FAILS_ONCE)
    out = tmp_path / "out"
    step = api_step(source, data, out, arguments=["--lock", str(tmp_path / "init.lock")],
                    mini_batch_size="10 rows")
    client.wait_for_workers(2, timeout=DEADLINE_SECONDS)  # one an earlier test killed may be back

    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.summary()
    assert result.mini_batches == {"total": 20, "succeeded": 20, "failed": 0, "reused": 0}
    assert result.attempts == {**NO_ATTEMPTS, "total": 20}   # the bad worker charged nothing
    assert output_lines(out) == ids_text(range(200))
    rows = attempt_rows(out)
    assert len(rows) == 20
    assert status_counts(rows) == {"succeeded": 20}
    workers = {row["worker"] for row in rows}
    assert len(workers) == 1, workers
    client_log = (out / "logs" / "sys" / "client.txt").read_text(encoding="utf-8")
    assert "takes no mini-batches: init() failed" in client_log
    errors = {p.stem: p.read_text(encoding="utf-8")
              for p in (out / "logs" / "user" / "error").glob("*.txt")}
    failed_on = {name for name, text in errors.items() if "init fails on purpose" in text}
    assert len(failed_on) == 1 and failed_on.isdisjoint(workers), (failed_on, workers)


# ---------------------------------------------------------------- 5. resume after SIGKILL

def test_a_job_killed_with_sigkill_resumes_running_only_its_uncommitted_mini_batches(
        cli, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 600)
    source = write_script(tmp_path, SLOW_SCRIPT.format(seconds=0.1))
    out = tmp_path / "out"
    config = write_config(tmp_path, source, data, out, mini_batch_size="10 rows")

    proc = cli.start(config)
    cli.wait_for(proc, lambda: len(committed_ids(out)) >= 15, "15 mini-batches committed")
    cli.signal(proc, signal.SIGKILL)
    assert cli.wait_gone(proc) == -signal.SIGKILL
    before = committed_ids(out)
    assert 15 <= len(before) < 60, len(before)
    assert not (out / "parallel_run_step.txt").exists()

    code, stdout, stderr = cli.run(config)

    assert code == 0, stdout + stderr
    summary = job_json(out)
    assert summary["status"] == "Completed"
    assert summary["mini_batches"] == {"total": 60, "succeeded": 60, "failed": 0,
                                       "reused": len(before)}
    rerun = [row for row in attempt_rows(out) if row["run_id"] == summary["run_id"]]
    assert len(rerun) == 60 - len(before)
    assert {row["mini_batch_id"] for row in rerun} == all_ids(60) - before
    assert status_counts(rerun) == {"succeeded": 60 - len(before)}
    assert output_lines(out) == ids_text(range(600))


@pytest.mark.timeout(900)  # a hang detector only: two 100,000-file jobs on a busy machine
def test_a_100000_file_job_killed_with_sigkill_reruns_only_its_uncommitted_mini_batches(
        cli, tmp_path, write_script):
    """The scale case: 10,000 mini-batches of 10 files, the client (and its embedded
    cluster) SIGKILLed a tenth of the way in, then run again."""
    folder = tmp_path / "files"
    paths = []
    for number in range(100_000):
        if number % 1_000 == 0:
            sub = folder / f"d{number // 1_000:03d}"
            sub.mkdir(parents=True)
        path = sub / f"f{number:06d}.txt"
        path.touch()
        paths.append(str(path))
    source = write_script(tmp_path, "import time\n\n\ndef run(mini_batch):\n"
                                    "    time.sleep(0.002)\n    return mini_batch\n")
    out = tmp_path / "out"
    config = tmp_path / "files.yaml"
    config.write_text(yaml.safe_dump({
        "name": "many-files", "inputs": [{"name": "files", "type": "file", "path": str(folder)}],
        "output": str(out),
        "parallel_run_config": {"source_directory": str(source), "entry_script": "score.py",
                                "mini_batch_size": 10, "compute_target": "local",
                                "process_count_per_node": 2}}), encoding="utf-8")

    proc = cli.start(config)
    cli.wait_for(proc, lambda: len(committed_ids(out)) >= 1_000, "1,000 mini-batches committed")
    cli.signal(proc, signal.SIGKILL)
    assert cli.wait_gone(proc) == -signal.SIGKILL
    before = committed_ids(out)
    assert 1_000 <= len(before) < 10_000, len(before)

    code, stdout, stderr = cli.run(config)

    assert code == 0, stdout + stderr
    summary = job_json(out)
    assert summary["mini_batches"] == {"total": 10_000, "succeeded": 10_000, "failed": 0,
                                       "reused": len(before)}
    rerun = [row for row in attempt_rows(out) if row["run_id"] == summary["run_id"]]
    every = {f"files-{i}" for i in range(10_000)}
    assert len(rerun) == 10_000 - len(before)
    assert {row["mini_batch_id"] for row in rerun} == every - before
    assert status_counts(rerun) == {"succeeded": 10_000 - len(before)}
    assert output_lines(out) == paths  # every path exactly once, in order


# ---------------------------------------------------------------- 6. kill during the commit

@pytest.fixture
def versioned_job(client, tmp_path, make_parquet, write_script) -> dict[str, Any]:
    """An output holding a completed job's file (A), and the script changed so that a
    new job would write B."""
    data = make_rows(make_parquet, tmp_path / "data", 600)
    source = write_script(tmp_path, VERSIONED_SCRIPT.format(version="first"))
    out = tmp_path / "out"
    result = api_step(source, data, out, mini_batch_size="10 rows").run(
        client=client, progress=False)
    assert result.status == "Completed", result.summary()
    old = (out / "parallel_run_step.txt").read_bytes()
    assert old == "".join(f"first-{i}\n" for i in range(600)).encode()
    write_script(tmp_path, VERSIONED_SCRIPT.format(version="second-version"))
    new = "".join(f"second-version-{i}\n" for i in range(600)).encode()
    return {"data": data, "source": source, "out": out, "old": old, "new": new}


def test_killing_the_job_at_any_point_leaves_the_previous_output_or_the_new_one(
        cli, tmp_path, versioned_job):
    out, old, new = versioned_job["out"], versioned_job["old"], versioned_job["new"]
    final = out / "parallel_run_step.txt"
    assembly = out / "_daskprs" / "assembly"
    config = write_config(tmp_path, versioned_job["source"], versioned_job["data"], out,
                          mini_batch_size="10 rows")

    def temp_files() -> set[str]:
        return {p.name for p in assembly.glob("*.tmp")} if assembly.exists() else set()

    # allow_reuse=false: every killed job starts again from nothing, so each kill point
    # is reached with the whole job's work (and the previous output) in front of it
    for name, expected in [("a new temp file", {old}), ("30 committed", {old}),
                           ("60 committed", {old, new}), ("output replaced", {new})]:
        known = temp_files()
        inode = final.stat().st_ino
        proc = cli.start(config, "--set", "allow_reuse=false")
        cli.wait_for(proc, lambda known=known: bool(temp_files() - known), "a new temp file")
        conditions = {"a new temp file": lambda: True,
                      "30 committed": lambda: len(committed_ids(out)) >= 30,
                      # a completed job removes its staging right after the rename, so
                      # "all committed" may only be seen as "replaced": either is late enough
                      "60 committed": lambda inode=inode: (len(committed_ids(out)) == 60
                                                           or final.stat().st_ino != inode),
                      "output replaced": lambda inode=inode: final.stat().st_ino != inode}
        cli.wait_for(proc, conditions[name], name)
        cli.signal(proc, signal.SIGKILL)
        cli.wait_gone(proc)
        content = final.read_bytes()
        assert content in (old, new), f"killed at {name}: a partial output file"
        assert content in expected, f"killed at {name}: {content[:40]!r}"
        strays = sorted(p.name for p in out.iterdir()
                        if p.name.startswith("parallel_run_step.txt") and p != final)
        assert strays == [], strays

    code, stdout, stderr = cli.run(config)

    assert code == 0, stdout + stderr
    assert final.read_bytes() == new
    assert job_json(out)["status"] == "Completed"


def test_a_completed_rerun_removes_the_temporary_files_a_killed_job_left(
        cli, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 600)
    source = write_script(tmp_path, SLOW_SCRIPT.format(seconds=0.02))
    out = tmp_path / "out"
    config = write_config(tmp_path, source, data, out, mini_batch_size="10 rows",
                          compute_target="inline")
    proc = cli.start(config)
    cli.wait_for(proc, lambda: len(committed_ids(out)) >= 5, "5 mini-batches committed")
    cli.signal(proc, signal.SIGKILL)
    cli.wait_gone(proc)
    assert list((out / "_daskprs" / "assembly").glob("*.tmp")), "no temp file to clean up"

    code, stdout, stderr = cli.run(config)

    assert code == 0, stdout + stderr
    assert output_lines(out) == ids_text(range(600))
    leftovers = sorted(str(p.relative_to(out)) for p in out.rglob("*.tmp"))
    assert leftovers == [], f"temporary files of the killed job are never removed: {leftovers}"


# ---------------------------------------------------------------- 7. Ctrl-C and SIGTERM

@pytest.mark.parametrize(("signum", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False),
                                               (signal.SIGTERM, True)],
                         ids=["ctrl-c-to-the-group", "sigterm-to-the-cli",
                              "sigterm-to-the-group"])
def test_an_interrupted_job_exits_130_canceled_and_keeps_its_committed_mini_batches(
        client, cli, tmp_path, make_parquet, write_script, signum, group):
    data = make_rows(make_parquet, tmp_path / "data", 600)
    source = write_script(tmp_path, SLOW_SCRIPT.format(seconds=0.1))
    out = tmp_path / "out"
    config = write_config(tmp_path, source, data, out, mini_batch_size="10 rows")

    proc = cli.start(config)
    cli.wait_for(proc, lambda: len(committed_ids(out)) >= 15, "15 mini-batches committed")
    cli.signal(proc, signum, group=group)
    code = cli.wait_gone(proc)

    stdout, stderr = cli.output(proc)
    assert code == 130, stdout + stderr[-3000:]
    assert first_line(out) == "Canceled"
    assert job_json(out)["status"] == "Canceled"
    assert not (out / "parallel_run_step.txt").exists()
    before = committed_ids(out)
    assert 15 <= len(before) < 60, len(before)

    # the rerun needs no cluster of its own: the session's will do
    code, stdout, stderr = cli.run(config, "--scheduler", client.scheduler.address)

    assert code == 0, stdout + stderr
    summary = job_json(out)
    assert summary["mini_batches"]["reused"] == len(before)
    rerun = [row for row in attempt_rows(out) if row["run_id"] == summary["run_id"]]
    assert {row["mini_batch_id"] for row in rerun} == all_ids(60) - before
    assert len(rerun) == 60 - len(before)
    assert output_lines(out) == ids_text(range(600))


def test_a_second_ctrl_c_exits_at_once_and_still_leaves_a_canceled_job_result(
        cli, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 600)
    source = write_script(tmp_path, SLOW_SCRIPT.format(seconds=0.1))
    out = tmp_path / "out"
    config = write_config(tmp_path, source, data, out, mini_batch_size="10 rows")

    proc = cli.start(config)
    cli.wait_for(proc, lambda: len(committed_ids(out)) >= 5, "5 mini-batches committed")
    cli.signal(proc, signal.SIGINT, group=False)
    cli.signal(proc, signal.SIGINT, group=False)
    code = cli.wait_gone(proc)

    assert code == 130
    assert first_line(out) == "Canceled"
    assert job_json(out)["status"] == "Canceled"
    assert job_json(out)["mini_batches"]["total"] == 60
    assert not (out / "parallel_run_step.txt").exists()


def test_a_canceled_job_prints_no_raw_log_lines_of_dask_on_the_terminal(
        cli, tmp_path, make_parquet, write_script):
    """Ctrl-C from a terminal (the whole process group): the user sees daskprs' own lines,
    not distributed's (they are in logs/sys/client.txt)."""
    data = make_rows(make_parquet, tmp_path / "data", 600)
    source = write_script(tmp_path, SLOW_SCRIPT.format(seconds=0.1))
    out = tmp_path / "out"
    config = write_config(tmp_path, source, data, out, mini_batch_size="10 rows")

    proc = cli.start(config)
    cli.wait_for(proc, lambda: len(committed_ids(out)) >= 5, "5 mini-batches committed")
    cli.signal(proc, signal.SIGINT)
    code = cli.wait_gone(proc)

    _, stderr = cli.output(proc)
    assert code == 130, stderr[-3000:]
    raw = [line for line in stderr.splitlines()
           if re.search(r" - distributed\.[\w.]+ - (DEBUG|INFO|WARNING|ERROR|CRITICAL) - ", line)
           or line.startswith("Traceback")]
    assert raw == [], "\n".join(raw[:10])
    assert "Canceled" in stderr


# ---------------------------------------------------------------- 8. inline

def test_inline_gives_the_clusters_output_and_runs_init_in_the_calling_process(
        client, cli, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 60)
    source = write_script(tmp_path, FLAKY_SCRIPT)
    results = {}
    for target in ("cluster", "inline", "cli-inline"):
        (tmp_path / target).mkdir()
        arguments = ["--pids", str(tmp_path / target / "pids.txt"),
                     "--markers", str(tmp_path / target)]
        out = tmp_path / target / "out"
        if target == "cli-inline":
            config = write_config(tmp_path, source, data, out, arguments=arguments,
                                  mini_batch_size="10 rows")
            code, stdout, stderr = cli.run(
                config, "--set", "parallel_run_config.compute_target=inline")
            assert code == 0, stdout + stderr
        else:
            step = api_step(source, data, out, arguments=arguments,
                            mini_batch_size="10 rows", run_max_try=2,
                            compute_target="inline" if target == "inline" else None)
            result = step.run(client=client if target == "cluster" else None,
                              progress=False)
            assert result.status == "Completed", result.summary()
        pids = [int(x) for x in (tmp_path / target / "pids.txt").read_text().split()]
        results[target] = (out, pids)

    expected = [f"input0-{i // 10}:{i}" for i in range(60)]
    for target, (out, _) in results.items():
        assert output_lines(out) == expected, target
        summary = job_json(out)
        assert summary["attempts"] == {**NO_ATTEMPTS, "total": 12, "failed": 6}, target
        assert summary["mini_batches"] == {"total": 6, "succeeded": 6, "failed": 0,
                                           "reused": 0}, target
        rows = sorted(attempt_rows(out), key=lambda r: (r["mini_batch_id"], r["attempt"]))
        assert [(r["mini_batch_id"], r["attempt"], r["status"]) for r in rows] == [
            (f"input0-{i}", n, s) for i in range(6)
            for n, s in (("1", "failed"), ("2", "succeeded"))], target
    assert results["inline"][1] == [os.getpid()]
    assert results["cli-inline"][1] == [cli.procs[-1].pid]
    assert os.getpid() not in results["cluster"][1]
