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


def run_files(tmp_path: Path, write_script: Any, folder: Path) -> list[str]:
    source = write_script(tmp_path, PATHS)
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size=2, compute_target="inline")
    step = ParallelRunStep(name="hostile", parallel_run_config=config,
                           inputs=[Dataset.File.from_files(str(folder))],
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


def test_a_file_name_with_a_double_colon_is_read_whole(tmp_path, write_script):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "a::b.txt").write_text("colons")
    (folder / "c.txt").write_text("c")

    assert run_files(tmp_path, write_script, folder) == ["colons", "c"]
