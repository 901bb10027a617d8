"""Issue 16 item 3: the ``append_row`` file round-trips through ``JobResult.read_output()``.

Values holding the separator, a quote or a line end are quoted as ``csv.QUOTE_MINIMAL``
quotes them; plain values are written exactly as before (``str(x)``, Azure's format, read by
``pd.read_csv(path, sep=" ", header=None)``); DataFrame results get their column names back.
No cluster: files are written by the serializer, or by ``compute_target: inline`` jobs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.result import JobResult
from daskprs.serialize import append_row_bytes

AWKWARD = ["plain", "two words", "comma, here", "tab\there", "pipe|here", 'say "hi"',
           '"quoted"', "line\nend", "windows\r\nline end", "lone\rcarriage", " leading",
           "trailing ", "a\n\n\nb", '"', "semi;colon"]
SEPARATORS = [" ", ",", "\t", "|", ";"]


def write_output(folder: Path, results: list[Any], separator: str,
                 columns: list[Any] | None = None, file: str = "parallel_run_step.txt"
                 ) -> JobResult:
    """An append_row output as a job writes it: each result's lines, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_bytes(b"".join(append_row_bytes(r, separator) for r in results))
    output = {"url": str(folder), "action": "append_row", "file": file,
              "separator": separator}
    if columns is not None:
        output["columns"] = columns
    return JobResult(status="Completed", output=output)


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
def test_values_with_the_separator_quotes_and_line_ends_round_trip_through_read_output(
        tmp_path: Path, separator: str) -> None:
    results = [AWKWARD, pd.Series(AWKWARD[::-1]), np.array(AWKWARD, dtype=object), AWKWARD]

    frame = write_output(tmp_path, results, separator).read_output()

    expected = AWKWARD + AWKWARD[::-1] + AWKWARD + AWKWARD
    assert frame.columns.tolist() == [0]
    assert frame[0].tolist() == expected


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
def test_dataframe_results_round_trip_with_their_column_names(tmp_path: Path,
                                                              separator: str) -> None:
    first = pd.DataFrame({"id": range(len(AWKWARD)), "label": AWKWARD,
                          "score": [i / 4 for i in range(len(AWKWARD))]})
    second = first.iloc[::-1].reset_index(drop=True)

    frame = write_output(tmp_path, [first, second], separator,
                         columns=["id", "label", "score"]).read_output()

    pd.testing.assert_frame_equal(frame, pd.concat([first, second], ignore_index=True))


def test_plain_values_are_written_exactly_as_before(tmp_path: Path) -> None:
    assert append_row_bytes([1, 2.5, "abc", None, True], " ") == b"1\n2.5\nabc\nNone\nTrue\n"
    assert append_row_bytes(np.array([3, 4]), " ") == b"3\n4\n"
    assert append_row_bytes(pd.Series(["x", "y_z"]), ",") == b"x\ny_z\n"
    plain = pd.DataFrame({"id": [1, 2], "label": ["cat", "dog"], "p": [0.25, 0.5]})
    assert append_row_bytes(plain, " ") == b"1 cat 0.25\n2 dog 0.5\n"
    # what Azure users run on the file keeps working
    write_output(tmp_path, [plain], " ")
    read = pd.read_csv(tmp_path / "parallel_run_step.txt", sep=" ", header=None)
    assert read.values.tolist() == [[1, "cat", 0.25], [2, "dog", 0.5]]


def test_a_quoted_value_is_csv_that_pandas_reads_without_daskprs(tmp_path: Path) -> None:
    assert append_row_bytes(["two words", 'say "hi"', "", "x"], " ") == \
        b'"two words"\n"say ""hi"""\n""\nx\n'
    write_output(tmp_path, [AWKWARD], " ")
    read = pd.read_csv(tmp_path / "parallel_run_step.txt", sep=" ", header=None)
    assert read[0].tolist() == AWKWARD


def test_read_output_reads_an_output_written_before_column_names_were_kept(
        tmp_path: Path) -> None:
    (tmp_path / "parallel_run_step.txt").write_text("0 a 1.5\n1 b 2.5\n", encoding="utf-8")
    old = {"status": "Completed", "columns": ["x", "y"],  # the input's columns, not the file's
           "output": {"url": str(tmp_path), "action": "append_row",
                      "file": "parallel_run_step.txt", "separator": " "}}

    frame = JobResult.from_dict(old).read_output()

    assert frame.columns.tolist() == [0, 1, 2]
    assert frame.values.tolist() == [[0, "a", 1.5], [1, "b", 2.5]]


# --- whole jobs ------------------------------------------------------------------------

RETURN_FRAME = """
import pandas as pd

def run(mini_batch):
    return pd.DataFrame({"id": mini_batch["id"], "label": mini_batch["label"],
                         "double": mini_batch["id"] * 2})
"""

RETURN_LABELS = """
def run(mini_batch):
    return mini_batch["label"].tolist()
"""


def run_inline(tmp_path: Path, write_script: Any, body: str, separator: str) -> JobResult:
    labels = [AWKWARD[i % len(AWKWARD)] + f" {i}" for i in range(60)]
    data = tmp_path / "data.parquet"
    pd.DataFrame({"id": range(60), "label": labels}).to_parquet(data, index=False)
    config = ParallelRunConfig(source_directory=str(write_script(tmp_path, body)),
                               entry_script="score.py", mini_batch_size="7 rows",
                               append_row_separator=separator, compute_target="inline")
    step = ParallelRunStep(name="append-row", parallel_run_config=config,
                           inputs=[Dataset.Tabular.from_parquet_files(str(data))],
                           output=str(tmp_path / "out"))
    result = step.run(progress=False)
    assert result.status == "Completed", result.summary()
    return result


@pytest.mark.parametrize("separator", [" ", ","], ids=repr)
def test_a_job_returning_dataframes_reads_back_with_their_column_names(
        tmp_path: Path, write_script: Any, separator: str) -> None:
    result = run_inline(tmp_path, write_script, RETURN_FRAME, separator)

    frame = result.read_output()

    labels = [AWKWARD[i % len(AWKWARD)] + f" {i}" for i in range(60)]
    expected = pd.DataFrame({"id": range(60), "label": labels, "double": range(0, 120, 2)})
    pd.testing.assert_frame_equal(frame, expected)
    saved = json.loads((tmp_path / "out" / "logs" / "job_result.json").read_text())
    assert saved["output"]["columns"] == ["id", "label", "double"]
    assert saved["columns"] == ["id", "label", "double"]
    pd.testing.assert_frame_equal(JobResult.load(str(tmp_path / "out")).read_output(), expected)


def test_a_job_returning_strings_reads_back_every_string_in_one_column(
        tmp_path: Path, write_script: Any) -> None:
    result = run_inline(tmp_path, write_script, RETURN_LABELS, " ")

    frame = result.read_output()

    assert frame[0].tolist() == [AWKWARD[i % len(AWKWARD)] + f" {i}" for i in range(60)]
    assert frame.columns.tolist() == [0]
