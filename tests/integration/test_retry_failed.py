"""``--retry-failed`` (issue 13 item 2): after a fix, rerun only the failed mini-batches
and merge them into the same ordered, exactly-once output.

Jobs run on the session ``client`` (2 workers x 1 thread), with ``run_max_try=1``; the
CLI is run in-process on the same scheduler. The script is "fixed" by rewriting it, so
its fingerprint changes between the runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from daskprs import ConfigError, Dataset, OutputError, ParallelRunConfig, ParallelRunStep
from daskprs.cli import main
from daskprs.commit import StateStore
from daskprs.storage import Location
from tests.integration.test_dead_letters import BAD_IDS, ROW_SCRIPT, ROW_SCRIPT_FIXED

# BAD_IDS fall in mini-batches 0, 10 and 19 of 20 here (25 rows each)
BAD_FILES = (3, 40, 57)  # of 60 files, 2 a mini-batch
FILE_SCRIPT = f"""
import os
import pandas as pd

BAD = set({BAD_FILES!r})

def run(mini_batch, mini_batch_context):
    numbers = [int(os.path.basename(p)[5:8]) for p in mini_batch]
    if BAD & set(numbers):
        raise ValueError(f"bad files {{sorted(BAD & set(numbers))}}")
    return pd.DataFrame({{"number": numbers, "version": 1}})
"""
FILE_SCRIPT_FIXED = """
import os
import pandas as pd

def run(mini_batch, mini_batch_context):
    numbers = [int(os.path.basename(p)[5:8]) for p in mini_batch]
    return pd.DataFrame({"number": numbers, "version": 2})
"""


def make_step(source: Path, inputs: list[Any], output: Path | str, allow_reuse: bool = True,
              **config: Any) -> ParallelRunStep:
    config.setdefault("run_max_try", 1)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py", **config)
    return ParallelRunStep(name="retry-failed", parallel_run_config=cfg, inputs=inputs,
                           output=str(output), allow_reuse=allow_reuse)


def attempts(output: Path) -> pd.DataFrame:
    return pd.read_csv(output / "logs" / "sys" / "mini_batches.csv", dtype=str,
                       keep_default_na=False)


@pytest.fixture
def rows(tmp_path: Path, make_parquet: Any) -> Path:
    make_parquet(tmp_path / "data", files=1, rows_per_file=500, row_group_size=500)
    return tmp_path / "data"


def test_retry_failed_after_a_fix_reruns_only_the_failed_mini_batches_into_one_ordered_output(
        client, tmp_path, rows, write_script):
    source = write_script(tmp_path, ROW_SCRIPT)
    out = tmp_path / "out"
    step = make_step(source, [Dataset.Tabular.from_parquet_files(str(rows))], out,
                     mini_batch_size="25 rows")
    first = step.run(client=client, progress=False)
    assert first.status == "Completed" and first.mini_batches["failed"] == 3

    write_script(tmp_path, ROW_SCRIPT_FIXED)
    result = step.run(client=client, progress=False, retry_failed=True)

    assert result.status == "Completed"
    assert result.items == {"total": 500, "succeeded": 500, "failed": 0}
    assert result.mini_batches == {"total": 20, "succeeded": 20, "failed": 0, "reused": 17}
    ids = (out / "parallel_run_step.txt").read_text(encoding="utf-8").split()
    assert ids == [str(i) for i in range(500)]  # every row once, in order
    table = attempts(out)
    retried = table[table["run_id"] == result.run_id]
    assert sorted(retried["mini_batch_id"]) == ["input0-0", "input0-10", "input0-19"]
    assert set(retried["status"]) == {"succeeded"}
    scripts = table.groupby("run_id")["script"].agg(set).to_dict()
    assert scripts[first.run_id] != scripts[result.run_id] and len(scripts) == 2
    assert [(r["run_id"], r["script"], r["mini_batches"], r["retry_failed"])
            for r in result.runs] == [
        (first.run_id, next(iter(scripts[first.run_id])), 17, False),
        (result.run_id, next(iter(scripts[result.run_id])), 3, True)]
    saved = json.loads((out / "logs" / "job_result.json").read_text(encoding="utf-8"))
    assert saved["runs"] == result.runs
    assert not (out / "logs" / "failed_items.csv").exists()  # nothing failed any more
    assert not list((out / "_daskprs" / "commits").iterdir())  # complete: bundles removed

    changed = make_step(source, [Dataset.Tabular.from_parquet_files(str(rows))], out,
                        mini_batch_size="50 rows")
    with pytest.raises(OutputError, match="--retry-failed: the plan changed since the "
                                          f"earlier job {result.run_id}"):
        changed.run(client=client, progress=False, retry_failed=True)


def test_retry_failed_completes_a_failed_parquet_job_of_files_each_file_once_in_order(
        client, tmp_path, write_script):
    folder = tmp_path / "files"
    folder.mkdir()
    for number in range(60):
        (folder / f"item-{number:03d}.txt").write_text("x", encoding="utf-8")
    source = write_script(tmp_path, FILE_SCRIPT)
    out = tmp_path / "out"
    step = make_step(source, [Dataset.File.from_files(str(folder))], out, mini_batch_size=2,
                     output_action="parquet", allowed_failed_count=0)
    first = step.run(client=client, progress=False)
    assert first.status == "Failed"
    before = attempts(out)
    reported = set(before[before["status"] == "succeeded"]["mini_batch_id"])
    done_first = StateStore(Location(str(out))).committed_ids()  # also those the cancel cut
    assert reported <= done_first and len(done_first) < 30

    write_script(tmp_path, FILE_SCRIPT_FIXED)
    result = step.run(client=client, progress=False, retry_failed=True)

    assert result.status == "Completed"
    frame = result.read_output()
    assert frame["number"].tolist() == list(range(60))  # each file once, in order
    table = attempts(out)
    rerun = set(table[table["run_id"] == result.run_id]["mini_batch_id"])
    assert rerun == {f"input0-{k}" for k in range(30)} - done_first  # only what did not commit
    assert {f"input0-{n // 2}" for n in BAD_FILES} <= rerun
    versions = frame.groupby("version")["number"].count().to_dict()
    assert versions == {1: 2 * len(done_first), 2: 2 * len(rerun)}
    assert [r["mini_batches"] for r in result.runs] == [len(done_first), len(rerun)]


def test_retry_failed_refuses_an_output_without_a_job_and_allow_reuse_false(
        tmp_path, rows, write_script):
    source = write_script(tmp_path, ROW_SCRIPT)
    step = make_step(source, [Dataset.Tabular.from_parquet_files(str(rows))], tmp_path / "out",
                     compute_target="inline")

    with pytest.raises(OutputError) as error:
        step.run(progress=False, retry_failed=True)
    assert str(error.value) == (f"--retry-failed: the output holds no earlier job to retry, got "
                                f"{str(tmp_path / 'out')!r}. Run the job once without "
                                f"--retry-failed.")

    fresh = make_step(source, [Dataset.Tabular.from_parquet_files(str(rows))],
                      tmp_path / "out", allow_reuse=False, compute_target="inline")
    with pytest.raises(ConfigError) as refused:
        fresh.run(progress=False, retry_failed=True)
    assert str(refused.value) == (
        "invalid configuration, 1 problem:\n  - allow_reuse (step): is False, which reruns "
        "every mini-batch, but --retry-failed (retry_failed=True) reruns only the failed "
        "ones, got False. Set allow_reuse: true, or run without --retry-failed.")


def test_retry_failed_after_a_job_without_failures_reuses_it_even_with_a_new_script(
        tmp_path, rows, write_script):
    source = write_script(tmp_path, ROW_SCRIPT_FIXED)
    out = tmp_path / "out"
    step = make_step(source, [Dataset.Tabular.from_parquet_files(str(rows))], out,
                     mini_batch_size="100 rows", compute_target="inline")
    first = step.run(progress=False)
    assert first.status == "Completed" and first.mini_batches["failed"] == 0
    published = (out / "parallel_run_step.txt").read_bytes()

    write_script(tmp_path, ROW_SCRIPT)  # would fail 3 mini-batches if anything ran
    result = step.run(progress=False, retry_failed=True)

    assert result.reused and result.status == "Completed" and result.run_id == first.run_id
    assert (out / "parallel_run_step.txt").read_bytes() == published


def test_retry_failed_on_object_storage_keeps_both_runs_attempts_and_merges_parquet(
        tmp_path, write_script):
    import fsspec

    source = write_script(tmp_path, ROW_SCRIPT)
    frame = pd.DataFrame({"id": range(500)})
    url = f"memory://retry-{tmp_path.name}/out"
    step = make_step(source, [Dataset.Tabular.from_pandas_dataframe(frame)], url,
                     mini_batch_size="50 rows", output_action="parquet",
                     compute_target="inline")
    first = step.run(progress=False)
    fs = fsspec.filesystem("memory")
    dead = pd.read_parquet(f"{url}/logs/failed_items.parquet")
    assert dead["id"].tolist() == [i for b in BAD_IDS for i in range(b // 50 * 50,
                                                                      b // 50 * 50 + 50)]

    write_script(tmp_path, ROW_SCRIPT_FIXED)
    result = step.run(progress=False, retry_failed=True)

    assert result.read_output()["result"].tolist() == list(range(500))
    with fs.open(f"{url}/logs/sys/mini_batches.csv") as handle:
        table = pd.read_csv(handle, dtype=str, keep_default_na=False)
    assert table.groupby("run_id").size().to_dict() == {first.run_id: 10, result.run_id: 3}
    assert not fs.exists(f"{url}/logs/failed_items.parquet")


def test_cli_retry_failed_exit_codes(client, tmp_path, rows, write_script, cli_state):
    write_script(tmp_path, ROW_SCRIPT)
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "name": "retry-cli", "output": "out",
        "inputs": [{"type": "tabular", "format": "parquet", "path": str(rows)}],
        "parallel_run_config": {"source_directory": "src", "entry_script": "score.py",
                                "mini_batch_size": "25 rows", "run_max_try": 1}}),
        encoding="utf-8")
    command = ["run", str(config), "--no-progress", "--scheduler", client.scheduler.address]

    nothing = CliRunner().invoke(main, [*command, "--retry-failed"])
    assert nothing.exit_code == 2, nothing.output
    assert "--retry-failed: the output holds no earlier job to retry" in nothing.output

    first = CliRunner().invoke(main, command)
    assert first.exit_code == 0, first.output  # completed, with 3 failed mini-batches
    assert "mini-batches: 17 succeeded, 3 failed" in first.output

    write_script(tmp_path, ROW_SCRIPT_FIXED)
    again = CliRunner().invoke(main, [*command, "--retry-failed"])
    assert again.exit_code == 0, again.output
    assert "mini-batches: 20 succeeded, 0 failed, 17 reused, of 20" in again.output
    assert "--retry-failed): 3 mini-batches" in again.output
    ids = (tmp_path / "out" / "parallel_run_step.txt").read_text(encoding="utf-8").split()
    assert ids == [str(i) for i in range(500)]

    changed = CliRunner().invoke(main, [*command, "--retry-failed", "--set",
                                        "parallel_run_config.mini_batch_size=50 rows"])
    assert changed.exit_code == 2, changed.output
    assert "--retry-failed: the plan changed" in changed.output
