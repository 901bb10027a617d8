"""The command line itself: ``show`` of folders that are no output, the help texts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from daskprs.cli import main


def test_show_of_a_missing_folder_says_there_is_no_such_folder(tmp_path: Path) -> None:
    missing = tmp_path / "out" / "nothing-here"

    result = CliRunner().invoke(main, ["show", str(missing)])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (f"error: output: no such folder, got {str(missing)!r}. Give the "
                             f"output folder of a job (the output: of its config).\n")
    assert not missing.exists()


def test_show_of_a_folder_no_job_wrote_says_it_is_not_an_output_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n", encoding="utf-8")

    result = CliRunner().invoke(main, ["show", str(tmp_path)])

    assert result.exit_code == 2
    assert result.stderr == (f"error: output: not a daskprs output folder (it has no "
                             f"logs/job_result.json), got {str(tmp_path)!r}. Give the folder a "
                             f"job wrote.\n")


def test_help_lists_the_exit_codes() -> None:
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0
    lines = [line.strip() for line in result.output.splitlines()]
    assert "Exit codes:" in lines
    for code in ("0    Completed (or reused)",
                 "1    Failed (thresholds, no item succeeded, no healthy worker)",
                 "2    a problem found before any work started: configuration, empty input,",
                 "3    internal error (a bug; the traceback goes to stderr)",
                 "130  interrupted (Ctrl-C, SIGTERM)",
                 "show: 0 Completed, 1 Failed or Canceled, 2 not an output folder."):
        assert code in lines, result.output


@pytest.mark.parametrize("command", ["run", "validate"])
def test_help_of_run_and_validate_says_that_set_repeats(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])

    assert result.exit_code == 0
    assert "Repeat --set for each value." in " ".join(result.output.split())
