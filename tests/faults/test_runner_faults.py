"""The runner's life (SPEC §2, §4; issues 16.8 and 17.9-17.13), with real processes.

The timeout clock covers ``run()`` only; a replacement runner whose ``init()`` fails is
retried, and a worker that turns unhealthy gives its mini-batch away uncharged; nothing
``run()`` started outlives its runner; a ``MemoryError`` replaces the runner; a worker's
temporary folders go at teardown (and stale ones of dead workers at the next setup); user
logs are redacted. Jobs run on the session ``client`` (2 workers x 1 thread), the 17.9
cases on real ``dask scheduler`` / ``dask worker`` processes. Tests wait on
files and processes with generous deadlines, never on sleeps.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from tests.integration.test_failures import (
    DEADLINE_SECONDS,
    NO_ATTEMPTS,
    POLL_SECONDS,
    api_step,
    attempt_rows,
    ids_text,
    make_rows,
    output_lines,
)

# ---------------------------------------------------------------- entry scripts

# run() takes ~0.1 s and never imports pandas itself (the runner unpickles DataFrames).
NO_PANDAS_SCRIPT = """
import time

def run(mini_batch):
    time.sleep(0.1)
    return mini_batch["id"].tolist()
"""

# input0-3 kills its runner on its first attempt; then init() of a replacement runner on
# that worker fails --failing-inits times (-1: always). First runners always init.
REINIT_SCRIPT = """
import argparse
import os

from daskprs import EntryScript

def init():
    global crashed
    parser = argparse.ArgumentParser()
    parser.add_argument("--state")
    parser.add_argument("--failing-inits", type=int)
    args, _ = parser.parse_known_args()
    crashed = os.path.join(args.state, "crashed-" + EntryScript().agent_name)
    if not os.path.exists(crashed):
        return
    failed = [n for n in os.listdir(args.state) if n.startswith("init-failed-")]
    if args.failing_inits < 0 or len(failed) < args.failing_inits:
        open(os.path.join(args.state, f"init-failed-{os.getpid()}"), "w").close()
        raise RuntimeError(f"init() of a replacement runner fails on purpose ({os.getpid()})")

def run(mini_batch, mini_batch_context):
    if mini_batch_context.mini_batch_id == "input0-3" and mini_batch_context.attempt == 1:
        open(crashed, "w").close()
        os._exit(3)
    return mini_batch["id"].tolist()
"""

# First attempts: input0-1 starts a child then exits; input0-2 starts a child then hangs
# (killed on timeout); input0-3 forks (the forked runner copy holds the socket) and exits.
# Every other run() starts a child and returns, leaving it behind. Each child's pid and
# start time go to --pids/<mini-batch>.<attempt>.
CHILDREN_SCRIPT = """
import argparse
import os
import subprocess
import time

import psutil

def init():
    global pids
    parser = argparse.ArgumentParser()
    parser.add_argument("--pids")
    args, _ = parser.parse_known_args()
    pids = args.pids

def record(name, pid):
    with open(os.path.join(pids, name), "w") as handle:
        handle.write(f"{pid} {psutil.Process(pid).create_time()}")

def run(mini_batch, mini_batch_context):
    name = f"{mini_batch_context.mini_batch_id}.{mini_batch_context.attempt}"
    kind = mini_batch_context.mini_batch_id if mini_batch_context.attempt == 1 else ""
    if kind == "input0-3":
        child = os.fork()
        if child == 0:
            time.sleep(600)
            os._exit(0)
        record(name, child)
        os._exit(4)
    record(name, subprocess.Popen(["sleep", "600"]).pid)
    if kind == "input0-1":
        os._exit(3)
    if kind == "input0-2":
        time.sleep(600)
    return mini_batch["id"].tolist()
"""

# input0-1 runs out of memory on its first attempt; init() and run() note their pids.
MEMORY_SCRIPT = """
import argparse
import os

def init():
    global folder
    parser = argparse.ArgumentParser()
    parser.add_argument("--pids")
    args, _ = parser.parse_known_args()
    folder = args.pids
    open(os.path.join(folder, f"init-{os.getpid()}"), "w").close()

def run(mini_batch, mini_batch_context):
    name = f"run-{mini_batch_context.mini_batch_id}.{mini_batch_context.attempt}"
    with open(os.path.join(folder, name), "w") as handle:
        handle.write(str(os.getpid()))
    if mini_batch_context.mini_batch_id == "input0-1" and mini_batch_context.attempt == 1:
        bytearray(1 << 62)
    return mini_batch["id"].tolist()
"""

# Writes the job's secret every way user code writes logs.
SECRET_SCRIPT = """
import logging
import os
import sys

from daskprs import EntryScript

def init():
    print("init() sees", os.environ["AZURE_CLIENT_SECRET"])

def run(mini_batch):
    secret = os.environ["AZURE_CLIENT_SECRET"]
    print("print:", secret)
    logging.getLogger("user").warning("root logger: %s", secret)
    EntryScript().logger.warning("entry script logger: %s", secret)
    sys.stderr.write(f"stderr: {secret}\\n")
    print("a SAS URL: https://a.blob.core.windows.net/c/b?sv=2024-01-01&sig=S1gnatureValue9")
    return mini_batch["id"].tolist()
"""

IDS_SCRIPT = """
def run(mini_batch):
    return mini_batch["id"].tolist()
"""


# ---------------------------------------------------------------- helpers

def tries_by_id(out: Path) -> dict[str, list[dict[str, str]]]:
    """``mini_batches.csv`` rows grouped by mini-batch, in attempt order."""
    grouped: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for row in attempt_rows(out):
        grouped[row["mini_batch_id"]].append(row)
    for rows in grouped.values():
        rows.sort(key=lambda row: int(row["attempt"]))
    return grouped


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {DEADLINE_SECONDS} s")
        time.sleep(POLL_SECONDS)


def running(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (a zombie does
    not: it has ended and waits for its parent)."""
    try:
        process = psutil.Process(pid)
        return (abs(process.create_time() - started) < 0.01
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def temp_folders(run_id: str) -> list[str]:
    return sorted(p.name for p in Path(tempfile.gettempdir()).glob(f"daskprs-{run_id}-*"))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from tests.storage_servers import start_moto

    server, endpoint = start_moto()
    try:
        yield endpoint
    finally:
        server.stop()


# ---------------------------------------------------------------- 16.8 the timeout clock

def test_a_one_second_timeout_is_not_spent_on_a_fresh_runners_imports(
        client, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 120)
    source = write_script(tmp_path, NO_PANDAS_SCRIPT)
    out = tmp_path / "out"
    step = api_step(source, data, out, mini_batch_size="10 rows", run_invocation_timeout=1)

    result = step.run(client=client, progress=False)

    assert result.attempts == {**NO_ATTEMPTS, "total": 12}, attempt_rows(out)
    assert result.status == "Completed", result.summary()
    assert output_lines(out) == ids_text(range(120))


# ---------------------------------------------------------------- 17.9 init() of replacements

def test_a_replacement_runner_whose_init_fails_once_is_started_again_on_the_same_worker(
        dask_processes, tmp_path, make_parquet, write_script):
    """On real ``dask scheduler`` / ``dask worker`` processes."""
    data = make_rows(make_parquet, tmp_path / "data", 100)
    source = write_script(tmp_path, REINIT_SCRIPT)
    state = tmp_path / "state"
    state.mkdir()
    out = tmp_path / "out"
    step = api_step(source, data, out, arguments=["--state", str(state), "--failing-inits", 1],
                    mini_batch_size="10 rows", run_max_try=3)

    result = step.run(client=dask_processes.address, progress=False)

    assert result.mini_batches == {"total": 10, "succeeded": 10, "failed": 0, "reused": 0}
    assert result.attempts == {**NO_ATTEMPTS, "total": 11, "crashed": 1}
    assert output_lines(out) == ids_text(range(100))
    tries = tries_by_id(out)["input0-3"]
    assert [(t["attempt"], t["status"]) for t in tries] == [("1", "crashed"), ("2", "succeeded")]
    assert tries[0]["worker"] == tries[1]["worker"]  # the worker stayed healthy
    assert len([p for p in state.iterdir() if p.name.startswith("init-failed-")]) == 1
    errors = (out / "logs" / "user" / "error" / f"{tries[0]['worker']}.txt").read_text()
    assert "init() of a replacement runner fails on purpose" in errors


def test_a_worker_whose_replacement_runners_fail_init_three_times_gives_its_mini_batch_away(
        dask_processes, tmp_path, make_parquet, write_script):
    """On real ``dask scheduler`` / ``dask worker`` processes."""
    data = make_rows(make_parquet, tmp_path / "data", 100)
    source = write_script(tmp_path, REINIT_SCRIPT)
    state = tmp_path / "state"
    state.mkdir()
    out = tmp_path / "out"
    # two tries: the crash is one, so a charged "unhealthy" attempt would fail the mini-batch
    step = api_step(source, data, out, arguments=["--state", str(state), "--failing-inits", -1],
                    mini_batch_size="10 rows", run_max_try=2)

    result = step.run(client=dask_processes.address, progress=False)

    assert result.mini_batches == {"total": 10, "succeeded": 10, "failed": 0, "reused": 0}
    assert result.attempts == {**NO_ATTEMPTS, "total": 11, "crashed": 1}
    assert output_lines(out) == ids_text(range(100))
    tries = tries_by_id(out)["input0-3"]
    assert [(t["attempt"], t["status"]) for t in tries] == [("1", "crashed"), ("2", "succeeded")]
    assert tries[0]["worker"] != tries[1]["worker"]  # moved to the healthy worker
    assert tries[0]["error"] == "RunnerCrashed: the runner process ended with exit code 3"
    assert len([p for p in state.iterdir() if p.name.startswith("init-failed-")]) == 3
    client_log = (out / "logs" / "sys" / "client.txt").read_text(encoding="utf-8")
    assert "takes no mini-batches" in client_log
    assert "init() of a replacement runner failed 3 times in a row" in client_log


# ---------------------------------------------------------------- 17.10 children of run()

def test_nothing_run_started_outlives_its_runner_and_a_fork_then_exit_is_a_prompt_crash(
        client, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 60)
    source = write_script(tmp_path, CHILDREN_SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    out = tmp_path / "out"
    # a fork-then-exit seen only when the timeout expires would be recorded timed_out
    step = api_step(source, data, out, arguments=["--pids", str(pids)],
                    mini_batch_size="10 rows", run_invocation_timeout=3, run_max_try=2)

    result = step.run(client=client, progress=False)

    children = {p.name: tuple(p.read_text().split()) for p in pids.iterdir()}
    assert len(children) == 9, sorted(children)  # 6 returned, 3 faulty first attempts

    def survivors() -> list[str]:
        return [name for name, (pid, started) in children.items()
                if running(int(pid), float(started))]

    try:
        wait_until(lambda: not survivors(), f"children of run() still alive: {survivors()}")
    finally:  # a failed test leaves nothing behind either
        for name in survivors():
            psutil.Process(int(children[name][0])).kill()
    assert result.status == "Completed", result.summary()
    assert output_lines(out) == ids_text(range(60))
    tries = tries_by_id(out)
    statuses = {mb: [t["status"] for t in rows] for mb, rows in tries.items()}
    assert statuses == {"input0-0": ["succeeded"], "input0-1": ["crashed", "succeeded"],
                        "input0-2": ["timed_out", "succeeded"],
                        "input0-3": ["crashed", "succeeded"], "input0-4": ["succeeded"],
                        "input0-5": ["succeeded"]}
    assert tries["input0-1"][0]["error"].endswith("exit code 3")
    assert tries["input0-3"][0]["error"].endswith("exit code 4")


# ---------------------------------------------------------------- 17.11 MemoryError

def test_a_memory_error_in_run_fails_the_attempt_and_replaces_the_runner(
        client, tmp_path, make_parquet, write_script):
    data = make_rows(make_parquet, tmp_path / "data", 40)
    source = write_script(tmp_path, MEMORY_SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    out = tmp_path / "out"
    step = api_step(source, data, out, arguments=["--pids", str(pids)], mini_batch_size="10 rows")

    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.summary()
    assert result.attempts == {**NO_ATTEMPTS, "total": 5, "failed": 1}
    assert output_lines(out) == ids_text(range(40))
    first, second = tries_by_id(out)["input0-1"]
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    assert first["error"].startswith("MemoryError"), first["error"]
    ran = {p.name: int(p.read_text()) for p in pids.glob("run-input0-1.*")}
    assert ran["run-input0-1.1"] != ran["run-input0-1.2"]  # the retry ran in a new runner
    inits = {int(p.name.split("-")[1]) for p in pids.glob("init-*")}
    assert len(inits) == 3 and ran["run-input0-1.2"] in inits  # 2 workers + 1 replacement


# ---------------------------------------------------------------- 17.12 temporary folders

def test_a_workers_temporary_folders_are_removed_when_the_job_ends(
        client, tmp_path, make_parquet, write_script, s3_endpoint):
    import fsspec

    options = {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint}
    bucket = f"t{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3", **options).mkdir(bucket)
    data = make_rows(make_parquet, tmp_path / "data", 40)
    source = write_script(tmp_path, IDS_SCRIPT)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                            mini_batch_size="10 rows")
    step = ParallelRunStep(name="temp-folders", parallel_run_config=cfg,
                           inputs=[Dataset.Tabular.from_parquet_files(str(data))],
                           output=f"s3://{bucket}/out", output_storage_options=options)

    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.summary()
    fs = fsspec.filesystem("s3", **options)
    assert fs.find(f"{bucket}/out/logs/user/stdout")  # the logs were uploaded first
    assert temp_folders(result.run_id) == []


def test_stale_temporary_folders_of_ended_workers_are_removed_and_no_others(
        client, tmp_path, make_parquet, write_script):
    from daskprs.worker.scratch import OWNER_FILE, mark_owned

    tag = uuid.uuid4().hex[:8]
    make = (f"from daskprs.worker.scratch import make_owned_dir; "
            f"print(make_owned_dir('daskprs-stale-{tag}-'))")
    stale = Path(subprocess.run([sys.executable, "-c", make], capture_output=True, text=True,
                                check=True).stdout.strip())   # made by a process that ended
    (stale / "work").mkdir()
    (stale / "work" / "big.bin").write_bytes(b"x" * 1000)
    live = Path(tempfile.mkdtemp(prefix=f"daskprs-live-{tag}-"))
    mark_owned(str(live))                                           # owned by this process
    foreign = Path(tempfile.mkdtemp(prefix=f"daskprs-foreign-{tag}-"))  # no owner file
    try:
        assert (stale / OWNER_FILE).exists() and (live / OWNER_FILE).exists()
        data = make_rows(make_parquet, tmp_path / "data", 20)
        source = write_script(tmp_path, IDS_SCRIPT)
        result = api_step(source, data, tmp_path / "out", mini_batch_size="10 rows").run(
            client=client, progress=False)
        assert result.status == "Completed", result.summary()

        wait_until(lambda: not stale.exists(), f"stale folder {stale} removed")
        assert live.exists() and foreign.exists()
        assert temp_folders(result.run_id) == []
    finally:
        for folder in (stale, live, foreign):
            shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- 17.13 redacted user logs

def test_secrets_user_code_writes_are_redacted_in_the_user_logs(
        client, tmp_path, make_parquet, write_script, monkeypatch):
    secret = f"client-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)  # a credential variable of the client
    data = make_rows(make_parquet, tmp_path / "data", 20)
    source = write_script(tmp_path, SECRET_SCRIPT)
    out = tmp_path / "out"
    step = api_step(source, data, out, mini_batch_size="10 rows",
                    environment_variables={"AZURE_CLIENT_SECRET": secret})

    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.summary()
    texts = {str(p.relative_to(out)): p.read_text(encoding="utf-8")
             for p in (out / "logs" / "user").rglob("*.txt")}
    everything = "\n".join(texts.values())
    leaks = [name for name, text in texts.items() if secret in text]
    assert leaks == [], leaks
    assert "S1gnatureValue9" not in everything
    for line in ("init() sees ***", "print: ***", "root logger: ***",
                 "entry script logger: ***", "stderr: ***", "sv=***&sig=***"):
        assert line in everything, line
    assert json.loads((out / "logs" / "job_result.json").read_text())["status"] == "Completed"
