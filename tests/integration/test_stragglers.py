"""Stragglers (issue 13 item 5): with ``straggler_factor``, a mini-batch that runs far
longer than the median gets a backup attempt on an idle worker once all other work is
submitted; the first commit wins, the other execution is discarded and its runner killed.

The straggler is made exact rather than likely: the first execution of ``input0-7``
claims a marker file and then never returns (a straggler slower than any factor of the
median), so the backup always commits first and only killing the straggler's runner ends
its attempt. The other mini-batches take a moment of simulated work.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.stragglers import OVERTAKEN_ERROR, StragglerWatch

SCRIPT = """
import argparse
import os
import threading
import time


def init():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--signals")
    ARGS, _ = parser.parse_known_args()


def run(mini_batch, mini_batch_context):
    if mini_batch_context.mini_batch_id == "input0-7":
        try:  # the first execution claims the marker and straggles
            os.close(os.open(os.path.join(ARGS.signals, "straggler"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return mini_batch["id"].tolist()  # the backup
        threading.Event().wait()  # never ends by itself: only killing its runner ends it
    time.sleep(0.05)  # simulated work
    return mini_batch["id"].tolist()
"""


def test_a_straggler_is_overtaken_by_its_backup_and_its_items_appear_once(
        tmp_path: Path, client: Any, make_parquet: Any, write_script: Any) -> None:
    make_parquet(tmp_path / "data", files=2, rows_per_file=40, row_group_size=10)
    source = write_script(tmp_path, SCRIPT)
    signals = tmp_path / "signals"
    signals.mkdir()
    out = tmp_path / "out"
    step = ParallelRunStep(
        name="stragglers", inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
        output=str(out), arguments=["--signals", str(signals)],
        parallel_run_config=ParallelRunConfig(
            source_directory=str(source), entry_script="score.py", mini_batch_size="10 rows",
            straggler_factor=3, run_invocation_timeout=60))
    result = step.run(client=client, progress=False)
    assert result.status == "Completed", result.summary()
    ids = result.read_output()[0].tolist()
    assert ids == list(range(80))  # in order, every item exactly once
    assert result.stragglers == {"backups": 1, "backups_won": 1}
    assert result.first_errors == []
    assert "stragglers: 1 backup attempts started, 1 committed first" in result.summary()
    with open(out / "logs" / "sys" / "mini_batches.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["mini_batch_id"] == "input0-7"]
    assert [(r["attempt"], r["status"]) for r in rows] == [("1", "overtaken"),
                                                           ("2", "succeeded")]
    assert rows[0]["error"] == OVERTAKEN_ERROR
    assert rows[0]["worker"] != rows[1]["worker"]
    log = (out / "logs" / "sys" / "workers" / f"{rows[0]['worker']}.txt").read_text()
    assert "input0-7 abandoned: another execution committed it first; runner pid" in log


def test_no_backup_is_started_without_straggler_factor(
        tmp_path: Path, client: Any, make_parquet: Any, write_script: Any) -> None:
    make_parquet(tmp_path / "data", files=1, rows_per_file=40, row_group_size=10)
    source = write_script(tmp_path, "def run(mini_batch):\n    return mini_batch['id'].tolist()\n")
    step = ParallelRunStep(
        name="no-stragglers", inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
        output=str(tmp_path / "out"),
        parallel_run_config=ParallelRunConfig(source_directory=str(source),
                                              entry_script="score.py", mini_batch_size="10 rows"))
    result = step.run(client=client, progress=False)
    assert result.status == "Completed"
    assert result.stragglers == {}
    assert "stragglers" not in result.summary()


def test_straggler_watch_compares_with_the_median() -> None:
    now = [0.0]
    watch = StragglerWatch(5, clock=lambda: now[0])
    watch.on_event({"id": "input0-3", "worker": "tcp://a", "execution": "e1"})
    assert watch.straggling(["input0-3"]) is None  # no median yet
    for number, seconds in enumerate([0.1, 0.2, 0.3]):
        watch.observe(f"input0-{number}", seconds)
    now[0] = 1.0
    assert watch.straggling(["input0-3"]) is None  # 1 s <= 5 x 0.2 s
    now[0] = 1.5
    assert watch.straggling(["input0-3"]) == (1.5, "tcp://a")
    assert watch.worker_of("e1") == "tcp://a"
