"""Issue 16 item 2: CSV rows are never lost or miscounted (no cluster: planning, reading and
``compute_target: inline`` jobs).

A quoted field may hold line ends (``\\n``, ``\\r\\n``): byte and row mini-batches cut only
where a row starts, so every row is read exactly once. A mini-batch that fails to read counts
its rows as failed items, so ``error_threshold`` sees them and the item totals are never
lower than the rows of the input.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from daskprs import Dataset, JobFailedError, ParallelRunConfig, ParallelRunStep
from daskprs.cli import main
from daskprs.inputs.tabular import READ_ERROR, plan_tabular, read_mini_batch
from daskprs.sizes import parse_tabular_size

RETURN_IDS = """
def run(mini_batch):
    return mini_batch["id"].tolist()
"""


def quoted_frame(rows: int) -> pd.DataFrame:
    """``id`` 0..rows-1 and a ``text`` that, on every third row, holds a line end (``\\n`` or
    ``\\r\\n``), a quote, a comma or several line ends."""
    texts = []
    for i in range(rows):
        kind = i % 6
        texts.append([f"plain {i}", f"two\nlines {i}", f"say \"hi\" {i}", f"a,b {i}",
                      f"windows\r\nline end {i}", f"many\n\n\nlines\n{i}"][kind])
    return pd.DataFrame({"id": range(rows), "text": texts, "value": [i * 0.5 for i in range(rows)]})


def write_quoted_csv(path: Path, data: pd.DataFrame) -> None:
    """As ``csv`` writes it (quotes only where needed), with ``\\n`` line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data.to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL),
                    encoding="utf-8", newline="")


def run_inline(source: Path, data: Path, out: Path, **config: Any) -> Any:
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                            compute_target="inline", **config)
    step = ParallelRunStep(name="csv-rows", parallel_run_config=cfg,
                           inputs=[Dataset.Tabular.from_delimited_files(str(data))],
                           output=str(out))
    return step.run(progress=False)


def output_ids(out: Path) -> list[int]:
    return [int(x) for x in (out / "parallel_run_step.txt").read_text().split()]


def attempts(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "logs" / "sys" / "mini_batches.csv", dtype=str,
                       keep_default_na=False)


# --- quoted line ends ------------------------------------------------------------------


@pytest.mark.parametrize("size", ["1KB", "100", "1MB", "100 rows", "7 rows"])
def test_quoted_line_ends_give_every_row_exactly_once_in_byte_and_rows_mode(
        tmp_path: Path, size: str) -> None:
    data = quoted_frame(2_000)
    path = tmp_path / "quoted.csv"
    write_quoted_csv(path, data)
    assert path.read_bytes().count(b"\n") > 2_500  # more physical lines than rows

    plan = plan_tabular([Dataset.Tabular.from_delimited_files(str(path))],  # type: ignore
                        parse_tabular_size(size))

    assert plan.total_items == 2_000
    parts = [read_mini_batch(mb) for mb in plan.mini_batches]
    assert [part.attrs.get(READ_ERROR) for part in parts] == [None] * len(parts)
    assert [len(part) for part in parts] == [mb.items for mb in plan.mini_batches]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), data)
    if size.endswith("rows"):
        count = int(size.split()[0])
        assert [mb.items for mb in plan.mini_batches[:-1]] == [count] * (len(parts) - 1)
        assert [mb.first_row for mb in plan.mini_batches] == list(range(0, 2_000, count))


@pytest.mark.parametrize("size", ["1KB", "100 rows"])
def test_a_job_over_quoted_line_ends_writes_every_row_once_and_counts_them(
        tmp_path: Path, write_script: Any, size: str) -> None:
    path = tmp_path / "data" / "quoted.csv"
    write_quoted_csv(path, quoted_frame(2_000))
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"

    result = run_inline(source, path, out, mini_batch_size=size)

    assert result.status == "Completed", result.summary()
    assert result.items == {"total": 2_000, "succeeded": 2_000, "failed": 0}
    assert result.mini_batches["failed"] == 0
    assert output_ids(out) == list(range(2_000))


def test_row_starts_follow_pandas_quotes_line_ends_and_blank_lines() -> None:
    from daskprs.inputs.records import row_starts

    text = (b"\xef\xbb\xbf\"h\nx\",y\r\n"          # a byte-order mark, a quoted header
            b"1,\"a\"\"\nb\"\r\n"                  # "" inside quotes, then a line end
            b"  \n\t\n\r\n"                         # blank lines are no rows
            b"2,x\"y\n"                             # a quote inside a field is data
            b"3,\"\"\r"                             # an empty quoted field; a lone \r
            b"4,\"unclosed\n5,z\n")                 # to the end of the file
    expected = [0, 12, 30, 36, 41]

    for chunk in (1, 2, 5, 1 << 20):
        starts = [int(s) for array in row_starts(io.BytesIO(text), ",", chunk) for s in array]
        assert starts == expected, chunk
    parsed = pd.read_csv(io.BytesIO(text[:41]), header=None, keep_default_na=False)
    assert len(parsed) == len(expected) - 1  # pandas agrees up to the unclosed quote


# --- a mini-batch that fails to read ---------------------------------------------------


def write_ids_with_one_bad_value(path: Path, rows: int, bad_row: int) -> None:
    """``id``, ``value`` (int); ``value`` of ``bad_row`` is ``oops``, after the 10,000 rows
    dtypes are inferred from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["id,value"] + [f"{i},{'oops' if i == bad_row else i * 2}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def failed_rows(out: Path) -> pd.DataFrame:
    table = attempts(out)
    return table[table["status"] == "failed"]


def test_a_mini_batch_that_fails_to_read_counts_its_rows_so_error_threshold_0_fails(
        tmp_path: Path, write_script: Any) -> None:
    path = tmp_path / "data" / "ids.csv"
    write_ids_with_one_bad_value(path, 20_000, bad_row=15_000)
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"

    result = run_inline(source, path, out, mini_batch_size="16KB", error_threshold=0,
                        run_max_try=1)

    assert result.status == "Failed"
    assert result.reason.startswith("error_threshold exceeded")
    failed = failed_rows(out)
    assert len(failed) == 1
    first, last = (int(failed[c].iloc[0].rsplit("#", 1)[1]) for c in ("first_item",
                                                                        "last_item"))
    assert first <= 15_000 <= last
    assert result.items["failed"] == int(failed["items"].iloc[0]) == last - first + 1 > 0
    with pytest.raises(JobFailedError):
        result.raise_for_status()


def test_item_totals_count_the_rows_of_a_mini_batch_that_fails_to_read(
        tmp_path: Path, write_script: Any) -> None:
    path = tmp_path / "data" / "ids.csv"
    write_ids_with_one_bad_value(path, 20_000, bad_row=15_000)
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"

    result = run_inline(source, path, out, mini_batch_size="16KB", run_max_try=1)

    assert result.status == "Completed", result.summary()
    failed = int(failed_rows(out)["items"].iloc[0])
    assert result.items == {"total": 20_000, "succeeded": 20_000 - failed, "failed": failed}
    assert len(output_ids(out)) == 20_000 - failed


def test_the_cli_exits_1_when_a_failed_read_exceeds_error_threshold_0(
        tmp_path: Path, write_script: Any) -> None:
    path = tmp_path / "data" / "ids.csv"
    write_ids_with_one_bad_value(path, 20_000, bad_row=15_000)
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "name": "csv-rows",
        "inputs": [{"name": "ids", "type": "tabular", "format": "delimited",
                    "path": str(path)}],
        "output": str(out),
        "parallel_run_config": {"source_directory": str(source), "entry_script": "score.py",
                                "mini_batch_size": "16KB", "error_threshold": 0,
                                "run_max_try": 1, "compute_target": "inline"}}))

    result = CliRunner().invoke(main, ["run", str(config)])

    assert result.exit_code == 1, result.output
    summary = json.loads((out / "logs" / "job_result.json").read_text())
    assert summary["status"] == "Failed"
    assert summary["items"]["failed"] > 0


def write_gzipped_ids_with_one_bad_value(folder: Path, rows: int, bad_row: int) -> Path:
    plain = folder / "plain" / "ids.csv"
    write_ids_with_one_bad_value(plain, rows, bad_row)
    path = folder / "data" / "ids.csv.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(plain.read_bytes()))
    return path


def test_a_gzipped_csv_that_fails_to_read_counts_its_rows(tmp_path: Path,
                                                          write_script: Any) -> None:
    path = write_gzipped_ids_with_one_bad_value(tmp_path, 12_000, bad_row=11_000)
    source = write_script(tmp_path, RETURN_IDS)

    result = run_inline(source, path, tmp_path / "out", run_max_try=1, error_threshold=0)

    assert result.status == "Failed"
    assert result.items == {"total": 12_000, "succeeded": 0, "failed": 12_000}


def test_a_failed_read_holds_one_empty_row_per_item_and_says_how_many(tmp_path: Path) -> None:
    from daskprs.inputs.tabular import READ_ITEMS

    path = write_gzipped_ids_with_one_bad_value(tmp_path, 12_000, bad_row=11_000)
    plan = plan_tabular([Dataset.Tabular.from_delimited_files(str(path))],  # type: ignore
                        parse_tabular_size("1MB"))
    assert [mb.items for mb in plan.mini_batches] == [None]  # .gz: not counted at planning

    frame = read_mini_batch(plan.mini_batches[0])

    assert "oops" in frame.attrs[READ_ERROR]
    assert frame.attrs[READ_ITEMS] == len(frame) == 12_000
    assert frame.columns.tolist() == []
