"""Hostile file inputs (issue 17, item 15): links, dangling links, ``::`` in names.

Decisions: links to files and folders are followed (a folder reached twice through links
is listed once); a link to nothing is an InputError before any cluster starts; a name with
``::`` (fsspec's chaining separator) is an ordinary local file name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from daskprs import Dataset, InputError, ParallelRunConfig, ParallelRunStep

PATHS = "def run(mini_batch):\n    return [open(p).read() for p in mini_batch]\n"


def run_files(tmp_path: Path, write_script: Any, folder: Any) -> list[str]:
    source = write_script(tmp_path, PATHS)
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size=2, compute_target="inline")
    step = ParallelRunStep(name="hostile", parallel_run_config=config,
                           inputs=[Dataset.File.from_files(
                               folder if isinstance(folder, list) else str(folder))],
                           output=str(tmp_path / "out"))
    result = step.run(progress=False)
    assert result.status == "Completed", result.summary()
    return (tmp_path / "out" / "parallel_run_step.txt").read_text().splitlines()


def test_a_link_to_a_folder_is_followed_and_its_files_are_run_once(tmp_path, write_script):
    folder = tmp_path / "files"
    (folder / "sub").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.txt").write_text("x")
    (folder / "a.txt").write_text("a")
    os.symlink(elsewhere, folder / "sub" / "link")
    os.symlink(elsewhere, folder / "again")  # the same folder twice: listed once

    assert run_files(tmp_path, write_script, folder) == ["a", "x"]


def test_a_dangling_link_is_an_input_error_naming_it(tmp_path, write_script):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    os.symlink(tmp_path / "gone.txt", folder / "b.txt")

    with pytest.raises(InputError) as caught:
        run_files(tmp_path, write_script, folder)

    assert str(caught.value) == (
        f"input 'input0': {str(folder / 'b.txt')!r} is a link to nothing (its target "
        f"{str(tmp_path / 'gone.txt')!r} does not exist). Remove the link or restore its "
        f"target.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", ["folder", "file", "list"])
def test_a_file_name_with_a_double_colon_is_read_whole(tmp_path, write_script, given):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "a::b.txt").write_text("colons")
    (folder / "c.txt").write_text("c")
    path: Any = {"folder": folder, "file": folder / "a::b.txt",
                 "list": [str(folder / "a::b.txt"), str(folder / "c.txt")]}[given]

    lines = run_files(tmp_path, write_script, path)

    assert lines == (["colons"] if given == "file" else ["colons", "c"])


def run_table(tmp_path: Path, write_script: Any, dataset: Any) -> Any:
    source = write_script(tmp_path, "def run(mini_batch):\n    return mini_batch['id'].tolist()\n")
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size="1000 rows", compute_target="inline")
    return ParallelRunStep(name="hostile", parallel_run_config=config, inputs=[dataset],
                           output=str(tmp_path / "out"))


def test_a_header_only_csv_has_no_rows_before_any_cluster(tmp_path, write_script):
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "a.csv").write_text("id,x\n")
    step = run_table(tmp_path, write_script,
                     Dataset.Tabular.from_delimited_files(str(tmp_path / "table")))

    with pytest.raises(InputError, match=r"input 'input0' \(.*\) has no rows"):
        step.validate()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("empty_name", ["0.csv", "5.csv"])  # sorts first, sorts between
def test_an_empty_csv_file_is_skipped_wherever_it_sorts(tmp_path, write_script, empty_name,
                                                        caplog):
    folder = tmp_path / "table"
    folder.mkdir()
    (folder / "1.csv").write_text("id,x\n1,a\n")
    (folder / "9.csv").write_text("id,x\n9,b\n")
    (folder / empty_name).write_text("")
    step = run_table(tmp_path, write_script, Dataset.Tabular.from_delimited_files(str(folder)))

    result = step.run(progress=False)

    assert result.status == "Completed", result.summary()
    assert result.read_output()[0].tolist() == [1, 9]
    assert f"skipping 1 empty (0-byte) file(s): {folder / empty_name}" in caplog.text


def test_parquet_files_with_conflicting_schemas_are_refused_naming_both(tmp_path, write_script):
    import pandas as pd

    folder = tmp_path / "table"
    folder.mkdir()
    pd.DataFrame({"id": [1, 2]}).to_parquet(folder / "a.parquet")
    pd.DataFrame({"id": ["x"]}).to_parquet(folder / "b.parquet")
    step = run_table(tmp_path, write_script,
                     Dataset.Tabular.from_parquet_files(str(folder)))

    with pytest.raises(InputError) as caught:
        step.validate()

    message = str(caught.value)
    assert "its Parquet files have conflicting schemas" in message
    assert f"{folder / 'a.parquet'} (id: int64)" in message
    assert f"{folder / 'b.parquet'} (id: " in message


def test_parquet_files_with_extra_columns_warn_and_the_job_lists_every_column(
        tmp_path, write_script, caplog):
    import pandas as pd

    folder = tmp_path / "table"
    folder.mkdir()
    pd.DataFrame({"id": [1, 2]}).to_parquet(folder / "a.parquet")
    pd.DataFrame({"id": [3], "score": [0.5]}).to_parquet(folder / "b.parquet")
    step = run_table(tmp_path, write_script,
                     Dataset.Tabular.from_parquet_files(str(folder)))

    result = step.run(progress=False)

    assert result.status == "Completed"
    assert result.columns == ["id", "score"]
    assert "1 of 2 Parquet files have another schema" in caplog.text


def test_an_output_inside_its_input_folder_is_refused_by_the_cli_before_any_cluster(
        tmp_path, write_script):
    """Item 4: a rerun would read its own previous output (and logs) as input."""
    import subprocess
    import sys

    import yaml

    folder = tmp_path / "table"
    folder.mkdir()
    (folder / "a.csv").write_text("id\n1\n2\n")
    source = write_script(tmp_path, PATHS)
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "name": "inside", "inputs": [{"name": "table", "type": "tabular",
                                      "format": "delimited", "path": str(folder)}],
        "output": str(folder / "scored"),
        "parallel_run_config": {"source_directory": str(source), "entry_script": "score.py"}}))

    done = subprocess.run([sys.executable, "-m", "daskprs", "run", str(config)],
                          capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)

    assert done.returncode == 2, done.stderr
    assert str(folder / "scored") in done.stderr and str(folder) in done.stderr
    assert "Dask dashboard" not in done.stderr
    assert not (folder / "scored").exists()
