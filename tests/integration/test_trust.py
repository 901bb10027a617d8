"""Wrong output reported as success, and reasons that mislead (the trust issue).

Each test fails on the release before the fix: extra ``run()`` results were written and the
job Completed; every attempt raising blamed the return values; a job whose mini-batches all
returned ``[]`` by design (Azure's own ``parallel_train.py``) Failed.
"""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

ONE_TOO_MANY = """
def run(mini_batch, mini_batch_context):
    ids = mini_batch["id"].tolist()
    if mini_batch_context.mini_batch_id == "input0-3":
        return ids + [-1]
    return ids
"""

ALWAYS_RAISES = """
def run(mini_batch):
    raise RuntimeError("the model is broken")
"""

TRAINS_AND_RETURNS_NOTHING = """
import os
from daskprs import EntryScript

def run(mini_batch, mini_batch_context):
    path = os.path.join(EntryScript().output_dir, mini_batch_context.mini_batch_id + ".model")
    with open(path, "w") as handle:
        handle.write(str(len(mini_batch)))
    return []
"""


def step_over(tmp_path: Path, make_parquet: Any, write_script: Any, body: str,
              **config: Any) -> ParallelRunStep:
    """200 rows (``id`` 0-199) in mini-batches of 20 rows, scored by ``body``."""
    make_parquet(tmp_path / "data", files=1, rows_per_file=200, row_group_size=200)
    source = write_script(tmp_path, body)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                            mini_batch_size="20 rows", **config)
    return ParallelRunStep(name="trust", parallel_run_config=cfg,
                           inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                           output=str(tmp_path / "out"))


def attempts(out: Path) -> list[dict[str, str]]:
    with open(out / "logs" / "sys" / "mini_batches.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_run_returning_more_elements_than_items_fails_the_attempt_and_writes_nothing(
        client, tmp_path, make_parquet, write_script):
    step = step_over(tmp_path, make_parquet, write_script, ONE_TOO_MANY, run_max_try=2)

    result = step.run(client=client, progress=False)

    out = tmp_path / "out"
    lines = (out / "parallel_run_step.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [str(i) for i in range(200) if not 60 <= i < 80]
    assert "-1" not in lines
    assert result.items == {"total": 200, "succeeded": 180, "failed": 20}
    assert result.mini_batches["failed"] == 1
    tried = [row for row in attempts(out) if row["mini_batch_id"] == "input0-3"]
    assert [row["status"] for row in tried] == ["failed", "failed"]
    assert tried[0]["error"] == ("ResultLengthError: run() returned 21 elements for 20 items; "
                                 "return at most one element per item (one per successful "
                                 "item)")


def test_run_returning_more_elements_fails_a_job_with_error_threshold_0(
        client, tmp_path, make_parquet, write_script):
    step = step_over(tmp_path, make_parquet, write_script, ONE_TOO_MANY, run_max_try=1,
                     error_threshold=0)

    result = step.run(client=client, progress=False)

    assert result.status == "Failed"
    assert result.reason.startswith("error_threshold exceeded: 20 failed items > 0")
    assert not (tmp_path / "out" / "parallel_run_step.txt").exists()


def test_a_job_whose_every_attempt_raised_names_the_error_not_the_return_values(
        client, tmp_path, make_parquet, write_script):
    step = step_over(tmp_path, make_parquet, write_script, ALWAYS_RAISES, run_max_try=1)

    result = step.run(client=client, progress=False)

    assert result.status == "Failed"
    assert result.reason == ("every mini-batch failed (10 of 10); the first error: "
                             "RuntimeError: the model is broken")
    assert "must return" not in result.reason


def test_a_job_whose_mini_batches_all_return_nothing_completes_with_a_warning(
        client, tmp_path, make_parquet, write_script, caplog: pytest.LogCaptureFixture):
    """Azure's v2 ``parallel_train.py``: one model saved per partition, ``return []``,
    ``error_threshold: -1``: Completed on Azure, so Completed here."""
    step = step_over(tmp_path, make_parquet, write_script, TRAINS_AND_RETURNS_NOTHING,
                     error_threshold=-1)

    with caplog.at_level(logging.WARNING, logger="daskprs"):
        result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.summary()
    assert result.items == {"total": 200, "succeeded": 0, "failed": 200}
    models = sorted(p.name for p in (tmp_path / "out").glob("*.model"))
    assert models == sorted(f"input0-{i}.model" for i in range(10))
    assert any("no rows were returned" in r.getMessage() for r in caplog.records)


INIT_FAILS = """
def init():
    raise RuntimeError("no model here")

def run(mini_batch):
    return mini_batch["id"].tolist()
"""


def cli_config(tmp_path: Path, make_parquet: Any, write_script: Any, body: str) -> Path:
    make_parquet(tmp_path / "data", files=1, rows_per_file=200, row_group_size=200)
    source = write_script(tmp_path, body)
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "name": "trust", "inputs": [{"name": "input0", "type": "tabular", "format": "parquet",
                                     "path": str(tmp_path / "data")}],
        "output": str(tmp_path / "out"),
        "parallel_run_config": {"source_directory": str(source), "entry_script": "score.py",
                                "mini_batch_size": "20 rows"}}), encoding="utf-8")
    return config


def daskprs_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daskprs", *args], capture_output=True,
                          text=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=300,
                          check=False)


def test_init_failing_everywhere_prints_the_job_counts_on_stdout(
        client, tmp_path, make_parquet, write_script):
    config = cli_config(tmp_path, make_parquet, write_script, INIT_FAILS)

    done = daskprs_cli("run", str(config), "--no-progress", "--scheduler",
                       client.scheduler.address, cwd=tmp_path)

    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0] == "Failed"
    assert "items: 0 succeeded, 0 failed, of 200" in done.stdout
    assert "RuntimeError: no model here" in done.stderr


def test_a_reused_job_says_every_mini_batch_was_reused_and_its_own_time(
        client, tmp_path, make_parquet, write_script):
    step = step_over(tmp_path, make_parquet, write_script, "def run(mini_batch):\n"
                     "    return mini_batch['id'].tolist()\n")
    first = step.run(client=client, progress=False)
    assert first.status == "Completed"

    again = step.run(client=client, progress=False)

    assert again.reused
    assert again.mini_batches == {"total": 10, "succeeded": 10, "failed": 0, "reused": 10}
    assert again.run_id == first.run_id
    assert again.seconds < first.seconds
    assert "10 reused, of 10" in again.summary()


def test_the_dashboard_link_is_printed_once(tmp_path, make_parquet, write_script):
    config = cli_config(tmp_path, make_parquet, write_script,
                        "def run(mini_batch):\n    return mini_batch['id'].tolist()\n")

    done = daskprs_cli("run", str(config), cwd=tmp_path)  # the embedded cluster has one

    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Dask dashboard: http") == 1, done.stderr
