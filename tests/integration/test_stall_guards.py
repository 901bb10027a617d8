"""Stall guards (issue 13 item 3): ``init_timeout``, ``first_mini_batch_timeout`` and
``no_progress_timeout``.

Hangs never end by themselves (``threading.Event().wait()``), so every guard is far from a
race: a hang that lasts forever against a timeout of a few seconds. The entry script tells
what happened through files (one per ``init()`` call, one per held mini-batch); nothing
waits on a sleep.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.errors import ConfigError
from daskprs.stall_guards import StallGuard, describe_states
from tests.integration.test_clusters import DaskProcesses

# init() on the runner of --hang-on never returns; run() of --hold-id never returns; each
# init() call writes signals/init/<agent>.<pid>.
SCRIPT = """
import argparse
import os
import threading


def init():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--signals")
    parser.add_argument("--hang-on", default="")
    parser.add_argument("--hold-id", default="")
    ARGS, _ = parser.parse_known_args()
    agent = os.environ["DASKPRS_AGENT_NAME"]  # EntryScript().agent_name, without imports
    os.makedirs(os.path.join(ARGS.signals, "init"), exist_ok=True)
    open(os.path.join(ARGS.signals, "init", f"{agent}.{os.getpid()}"), "w").close()
    if ARGS.hang_on in (agent, "*"):
        threading.Event().wait()


def run(mini_batch, mini_batch_context):
    if mini_batch_context.mini_batch_id == ARGS.hold_id:
        threading.Event().wait()
    return mini_batch["id"].tolist()
"""


def _step(tmp_path: Path, make_parquet: Any, write_script: Any, arguments: list[str],
          **config: Any) -> tuple[ParallelRunStep, Path]:
    make_parquet(tmp_path / "data", files=2, rows_per_file=40, row_group_size=10)
    source = write_script(tmp_path, SCRIPT)
    signals = tmp_path / "signals"
    signals.mkdir()
    step = ParallelRunStep(
        name="stalls", inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
        output=str(tmp_path / "out"), arguments=["--signals", str(signals), *arguments],
        parallel_run_config=ParallelRunConfig(source_directory=str(source),
                                              entry_script="score.py",
                                              mini_batch_size="10 rows", **config))
    return step, signals


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "logs" / "sys" / "mini_batches.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_hung_init_on_one_worker_is_killed_retried_and_the_job_completes_on_the_other(
        tmp_path: Path, client: Any, make_parquet: Any, write_script: Any) -> None:
    names = sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())
    hung, healthy = names[0], names[1]
    step, signals = _step(tmp_path, make_parquet, write_script, ["--hang-on", hung],
                          init_timeout=3)
    result = step.run(client=client, progress=False)
    assert result.status == "Completed", result.summary()
    ids = result.read_output()[0].tolist()
    assert sorted(ids) == list(range(80)) and len(set(ids)) == 80  # every item exactly once
    rows = _rows(tmp_path / "out")
    assert {r["worker"] for r in rows} == {healthy}
    assert Counter(r["status"] for r in rows) == {"succeeded": 8}
    starts = Counter(path.name.split(".")[0] for path in (signals / "init").iterdir())
    assert starts[hung] == 3  # killed at init_timeout, started again, then unhealthy
    log = (tmp_path / "out" / "logs" / "sys" / "workers" / f"{hung}.txt").read_text()
    assert log.count("TimeoutError: init() took longer than 3 s (init_timeout); its process "
                     "was killed") == 3
    assert "init() exceeded init_timeout (3 s): starting a new runner" in log


def test_a_job_with_no_worker_fails_after_first_mini_batch_timeout_naming_the_cause(
        tmp_path: Path, make_parquet: Any, write_script: Any) -> None:
    folder = tmp_path / "cluster"
    folder.mkdir()
    cluster = DaskProcesses(folder)
    try:
        cluster.start_scheduler()
        step, _ = _step(tmp_path, make_parquet, write_script, [],
                        first_mini_batch_timeout=3)
        result = step.run(client=cluster.address, progress=False)
    finally:
        cluster.stop()
    assert result.status == "Failed"
    assert result.reason == (
        f"first_mini_batch_timeout: no worker started a mini-batch within 3 s; no worker "
        f"joined the cluster (scheduler {cluster.address}). Raise first_mini_batch_timeout "
        f"if that is expected.")
    assert result.reason in (tmp_path / "out" / "logs" / "job_result.txt").read_text()


def test_a_job_whose_every_init_hangs_fails_after_first_mini_batch_timeout(
        tmp_path: Path, client: Any, make_parquet: Any, write_script: Any) -> None:
    step, signals = _step(tmp_path, make_parquet, write_script, ["--hang-on", "*"],
                          init_timeout=600, first_mini_batch_timeout=3)
    result = step.run(client=client, progress=False)  # ends: the hung runners are killed
    assert result.status == "Failed"
    assert re.fullmatch(
        r"first_mini_batch_timeout: no worker started a mini-batch within 3 s; every init\(\) "
        r"still running on 2 of 2 workers \(the longest for \d+ s, try 1\)\. Raise "
        r"first_mini_batch_timeout if that is expected\.", result.reason), result.reason
    assert len(list((signals / "init").iterdir())) == 2


def test_no_progress_timeout_names_the_mini_batch_in_flight_and_its_worker(
        tmp_path: Path, client: Any, make_parquet: Any, write_script: Any) -> None:
    step, _ = _step(tmp_path, make_parquet, write_script, ["--hold-id", "input0-5"],
                    no_progress_timeout=3, run_invocation_timeout=600)
    result = step.run(client=client, progress=False)
    assert result.status == "Failed"
    assert result.reason.startswith(
        "no_progress_timeout: nothing committed and no attempt started for 3 s while work "
        "remains; in flight: input0-5 (attempt 1 on "), result.reason
    assert result.reason.endswith(
        "See logs/sys/workers/ and logs/user/; raise no_progress_timeout if mini-batches "
        "legitimately take longer.")
    agents = {str(w["name"]) for w in client.scheduler_info()["workers"].values()}
    named = result.reason.split("(attempt 1 on ", 1)[1].split(",", 1)[0]
    assert named in agents
    assert result.mini_batches["succeeded"] == 7  # all the others committed


def test_describe_states_says_what_the_workers_wait_for() -> None:
    states = {"a": {"state": "init", "agent": "worker-0", "tries": 1, "seconds": 12.4},
              "b": {"state": "init", "agent": "worker-1", "tries": 2, "seconds": 3.0}}
    assert describe_states(2, states) == (
        "every init() still running on 2 of 2 workers (the longest for 12 s, try 2)")
    states["b"] = {"state": "unhealthy", "agent": "worker-1", "error": "ValueError: no model"}
    assert describe_states(2, states) == (
        "init() still running on 1 of 2 workers (the longest for 12 s, try 1); 1 workers "
        "unhealthy (worker-1: ValueError: no model)")


def test_stall_guard_clocks() -> None:
    now = [0.0]
    guard = StallGuard(None, "p", first_mini_batch_timeout=10, no_progress_timeout=5,
                       clock=lambda: now[0])
    now[0] = 9.0
    assert guard.check() is None
    guard.on_event({"id": "input0-0", "attempt": 1, "agent": "worker-0"})
    now[0] = 14.0
    assert guard.check() is None
    now[0] = 14.5
    assert guard.check().startswith(
        "no_progress_timeout: nothing committed and no attempt started for 5 s while work "
        "remains; in flight: input0-0 (attempt 1 on worker-0, started 6 s ago)")
    guard.on_record("input0-0")
    assert guard.check() is None


@pytest.mark.parametrize(("values", "message"), [
    ({"init_timeout": 0}, "init_timeout (keyword argument): must be a number > 0, got 0"),
    ({"first_mini_batch_timeout": "10m"}, "first_mini_batch_timeout (keyword argument): "
                                          "must be a number > 0, got '10m'"),
    ({"no_progress_timeout": -1}, "no_progress_timeout (keyword argument): must be a number "
                                  "> 0, got -1"),
])
def test_bad_guard_timeouts_are_config_errors(tmp_path: Path, write_script: Any,
                                              values: dict[str, Any], message: str) -> None:
    source = write_script(tmp_path, "def run(mini_batch):\n    return mini_batch\n")
    with pytest.raises(ConfigError) as caught:
        ParallelRunConfig(source_directory=str(source), entry_script="score.py", **values)
    assert message in str(caught.value)


def test_azures_timeout_options_in_arguments_set_the_stall_guards(
        tmp_path: Path, make_parquet: Any, write_script: Any) -> None:
    step, _ = _step(tmp_path, make_parquet, write_script,
                    ["--first_task_creation_timeout", "900", "--progress_update_timeout=1200"])
    config = step.parallel_run_config
    assert (config.first_mini_batch_timeout, config.no_progress_timeout) == (900, 1200)
    assert step.arguments[-3:] == ["--first_task_creation_timeout", "900",
                                   "--progress_update_timeout=1200"]  # still passed on
