"""Dead letters (issue 13 item 1): every failed item in ``logs/failed_items.*``, which is
itself an input that reruns exactly those items.

Jobs run on the session ``client`` (2 workers x 1 thread), with ``run_max_try=1``; the
CLI is run in-process on the same scheduler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.cli import main

BAD_IDS = (7, 251, 498)  # in mini-batches 1, 50 and 99 of 100 (5 rows each): 3% of items
BAD_FILES = (3, 40, 77)  # of 100 files, one a mini-batch: 3% of items

ROW_SCRIPT = f"""
BAD = set({BAD_IDS!r})

def run(mini_batch, mini_batch_context):
    ids = mini_batch["id"].tolist()
    if BAD & set(ids):
        raise ValueError(f"bad ids {{sorted(BAD & set(ids))}}")
    return ids
"""
ROW_SCRIPT_FIXED = """
def run(mini_batch, mini_batch_context):
    return mini_batch["id"].tolist()
"""
FILE_SCRIPT = """
import os

def run(mini_batch, mini_batch_context):
    names = []
    for path in mini_batch:
        with open(path) as handle:
            if handle.read().strip() == "bad":
                raise ValueError(f"bad file {os.path.basename(path)}")
        names.append(os.path.basename(path))
    return names
"""
FILE_SCRIPT_FIXED = """
import os

def run(mini_batch, mini_batch_context):
    return [os.path.basename(path) for path in mini_batch]
"""
# mini-batch 2 drops its last row and returns ids (identifiable); mini-batch 3 drops one
# and returns -1s (not identifiable)
DROP_SCRIPT = """
def run(mini_batch, mini_batch_context):
    ids = mini_batch["id"].tolist()
    if mini_batch_context.mini_batch_id.endswith("-2"):
        return ids[:-1]
    if mini_batch_context.mini_batch_id.endswith("-3"):
        return [-1] * (len(ids) - 1)
    return ids
"""
CSV_HEADER = ["mini_batch_id", "input", "item", "position", "items", "attempts", "status",
              "last_error"]


def make_step(source: Path, inputs: list[Any], output: Path, **config: Any) -> ParallelRunStep:
    config.setdefault("run_max_try", 1)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py", **config)
    return ParallelRunStep(name="dead-letters", parallel_run_config=cfg, inputs=inputs,
                           output=str(output))


def failed_items(output: Path) -> pd.DataFrame:
    """``logs/failed_items.csv``, after checking its header."""
    path = output / "logs" / "failed_items.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(CSV_HEADER)
    return pd.read_csv(path, dtype={"item": str, "position": str}, keep_default_na=False)


def output_lines(output: Path) -> list[str]:
    return (output / "parallel_run_step.txt").read_text(encoding="utf-8").split()


@pytest.fixture
def rows(tmp_path: Path, make_parquet: Any) -> Path:
    """500 rows (``id`` 0..499, three float columns) in one Parquet file."""
    make_parquet(tmp_path / "data", files=1, rows_per_file=500, row_group_size=500)
    return tmp_path / "data" / "part-000.parquet"


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """100 text files ``item-000.txt`` ...; those of BAD_FILES hold ``bad``."""
    folder = tmp_path / "files"
    folder.mkdir()
    paths = []
    for number in range(100):
        path = folder / f"item-{number:03d}.txt"
        path.write_text("bad" if number in BAD_FILES else "ok", encoding="utf-8")
        paths.append(path)
    return paths


def test_failed_rows_are_written_with_their_mini_batch_attempts_and_error_and_rerun_exactly(
        client, tmp_path, rows, write_script):
    source = write_script(tmp_path, ROW_SCRIPT)
    out = tmp_path / "out"

    result = make_step(source, [Dataset.Tabular.from_parquet_files(str(rows))], out,
                       mini_batch_size="5 rows").run(client=client, progress=False)

    assert result.status == "Completed"
    assert result.items == {"total": 500, "succeeded": 485, "failed": 15}
    bad_rows = [i for b in BAD_IDS for i in range(b // 5 * 5, b // 5 * 5 + 5)]
    table = failed_items(out)
    assert table["position"].astype(int).tolist() == bad_rows
    assert table["item"].tolist() == [f"{rows}#{i}" for i in bad_rows]
    assert table["mini_batch_id"].tolist() == [f"input0-{i // 5}" for i in bad_rows]
    assert set(table["attempts"]) == {1} and set(table["status"]) == {"failed"}
    assert table["last_error"].tolist() == [f"ValueError: bad ids [{b}]"
                                            for b in BAD_IDS for _ in range(5)]
    dead = pd.read_parquet(out / "logs" / "failed_items.parquet")
    expected = pd.read_parquet(rows).iloc[bad_rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(dead, expected)  # the rows themselves, input columns only
    assert not (out / "logs" / "failed_items.txt").exists()
    assert ("logs/failed_items.csv (every failed item; rerun them: --retry-failed)"
            in (out / "logs" / "job_result.txt").read_text(encoding="utf-8"))

    write_script(tmp_path, ROW_SCRIPT_FIXED)
    again = tmp_path / "again"
    rerun = make_step(source, [Dataset.Tabular.from_parquet_files(
        str(out / "logs" / "failed_items.parquet"))], again, mini_batch_size="5 rows").run(
        client=client, progress=False)

    assert rerun.status == "Completed"
    assert rerun.items == {"total": 15, "succeeded": 15, "failed": 0}
    assert output_lines(again) == [str(i) for i in bad_rows]
    assert not (again / "logs" / "failed_items.csv").exists()


def test_failed_files_are_listed_and_the_list_reruns_exactly_them_from_the_cli(
        client, tmp_path, files, write_script, cli_state):
    source = write_script(tmp_path, FILE_SCRIPT)
    out = tmp_path / "out"

    result = make_step(source, [Dataset.File.from_files(str(tmp_path / "files"))], out,
                       mini_batch_size=1).run(client=client, progress=False)

    assert result.status == "Completed"
    assert result.items == {"total": 100, "succeeded": 97, "failed": 3}
    listed = (out / "logs" / "failed_items.txt").read_text(encoding="utf-8").splitlines()
    assert listed == [str(files[n]) for n in BAD_FILES]
    table = failed_items(out)
    assert table["item"].tolist() == listed
    assert table["position"].astype(int).tolist() == list(BAD_FILES)
    assert table["mini_batch_id"].tolist() == [f"input0-{n}" for n in BAD_FILES]
    assert table["last_error"].tolist() == [f"ValueError: bad file item-{n:03d}.txt"
                                            for n in BAD_FILES]
    assert not (out / "logs" / "failed_items.parquet").exists()

    write_script(tmp_path, FILE_SCRIPT_FIXED)
    config = tmp_path / "rerun.yaml"
    config.write_text(yaml.safe_dump({
        "name": "rerun-failed", "output": "again",
        "inputs": [{"type": "file", "format": "list",
                    "path": str(out / "logs" / "failed_items.txt")}],
        "parallel_run_config": {"source_directory": "src", "entry_script": "score.py",
                                "mini_batch_size": 1}}), encoding="utf-8")
    done = CliRunner().invoke(main, ["run", str(config), "--no-progress", "--scheduler",
                                     client.scheduler.address])

    assert done.exit_code == 0, done.output
    assert output_lines(tmp_path / "again") == [f"item-{n:03d}.txt" for n in BAD_FILES]


@pytest.mark.parametrize("action", ["append_row", "parquet"])
def test_dropped_items_are_listed_when_the_results_identify_them_else_their_mini_batch(
        client, tmp_path, write_script, action):
    source = write_script(tmp_path, DROP_SCRIPT)
    frame = pd.DataFrame({"id": range(20), "x": [f"row {i}" for i in range(20)]})
    out = tmp_path / "out"

    result = make_step(source, [Dataset.Tabular.from_pandas_dataframe(frame)], out,
                       mini_batch_size="5 rows", output_action=action).run(
        client=client, progress=False)

    assert result.status == "Completed"
    assert result.items == {"total": 20, "succeeded": 18, "failed": 2}
    table = failed_items(out)
    assert table.to_dict("records") == [
        {"mini_batch_id": "input0-2", "input": "input0", "item": "input0#14", "position": "14",
         "items": 1, "attempts": 1, "status": "dropped", "last_error": ""},
        {"mini_batch_id": "input0-3", "input": "input0", "item": "", "position": "",
         "items": 1, "attempts": 1, "status": "dropped", "last_error": ""}]
    dead = pd.read_parquet(out / "logs" / "failed_items.parquet")
    assert dead.to_dict("records") == [{"id": 14, "x": "row 14"}]  # only the identified row


def test_an_empty_file_list_is_refused_naming_the_path(tmp_path):
    listing = tmp_path / "failed_items.txt"
    listing.write_text("# nothing failed\n\n", encoding="utf-8")

    with pytest.raises(ValueError, match="lists no file") as error:
        Dataset.File.from_file_list(str(listing))

    assert str(listing) in str(error.value)


def test_a_yaml_file_list_that_cannot_be_read_is_a_config_error_naming_the_key(
        tmp_path, cli_state):
    config = tmp_path / "rerun.yaml"
    config.write_text(yaml.safe_dump({
        "name": "rerun-failed", "output": "again",
        "inputs": [{"type": "file", "format": "list", "path": "out/logs/failed_items.txt"}],
        "parallel_run_config": {"entry_script": "score.py"}}), encoding="utf-8")

    done = CliRunner().invoke(main, ["validate", str(config)])

    assert done.exit_code == 2
    listing = tmp_path / "out" / "logs" / "failed_items.txt"
    assert (f"  - inputs[0].path ({config}: inputs[0].path): cannot be read (FileNotFoundError: "
            f"[Errno 2] No such file or directory: '{listing}'), got '{listing}'. Give a text "
            f"file of paths, one a line, e.g. out/logs/failed_items.txt.") in done.output
