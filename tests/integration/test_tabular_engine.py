"""End-to-end tests of the tabular engine on a real (2-process) Dask cluster.

Each test builds its data in a temporary folder, runs a step on the shared ``client``
and checks what a user would look at: the output file or dataset, ``job_result.json``,
``logs/sys/mini_batches.csv`` and the entry script's own traces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from daskprs import Dataset, OutputError, ParallelRunConfig, ParallelRunStep

MIB = 1024 * 1024
ATTEMPT_HEADER = ("run_id,mini_batch_id,input,first_item,last_item,attempt,worker,pid,"
                  "start_utc,seconds,items,succeeded,failed,status,error,device,script")

RETURN_IDS = """
def run(mini_batch):
    return mini_batch["id"].tolist()
"""

RETURN_IDS_WITH_BATCH = """
import pandas as pd

def run(mini_batch, mini_batch_context):
    return pd.DataFrame({"mini_batch_id": mini_batch_context.mini_batch_id,
                         "id": mini_batch["id"]})
"""


# ---------------------------------------------------------------- helpers

def run_step(client: Any, source: Path, inputs: list[Any], output: Path,
             arguments: list[Any] | None = None, name: str = "score-test",
             **config: Any) -> Any:
    """Build and run a step on ``client``; return its JobResult."""
    config.setdefault("run_max_try", 3)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py", **config)
    step = ParallelRunStep(name=name, parallel_run_config=cfg, inputs=inputs,
                           output=str(output), arguments=arguments)
    return step.run(client=client, progress=False)


def output_ids(output: Path) -> np.ndarray:
    """The append_row file, one integer per line."""
    text = (output / "parallel_run_step.txt").read_text(encoding="utf-8")
    return np.array(text.split(), dtype=np.int64)


def attempts(output: Path) -> pd.DataFrame:
    """``logs/sys/mini_batches.csv``, one row per attempt, after checking its header."""
    path = output / "logs" / "sys" / "mini_batches.csv"
    with open(path, encoding="utf-8") as handle:
        assert handle.readline().rstrip("\n") == ATTEMPT_HEADER
    return pd.read_csv(path, dtype={"first_item": str, "last_item": str, "error": str},
                       keep_default_na=False)


def ordinal(mini_batch_id: str) -> int:
    return int(mini_batch_id.rsplit("-", 1)[1])


def by_ordinal(table: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by (mini-batch ordinal, attempt), the job's order."""
    keyed = table.assign(_ordinal=table["mini_batch_id"].map(ordinal))
    return keyed.sort_values(["_ordinal", "attempt"]).drop(columns="_ordinal") \
        .reset_index(drop=True)


def job_json(output: Path) -> dict[str, Any]:
    return json.loads((output / "logs" / "job_result.json").read_text(encoding="utf-8"))


def uncompressed_bytes_per_row(path: Path) -> float:
    """The planner's estimator: Parquet column chunks' total_uncompressed_size per row."""
    metadata = pq.ParquetFile(path).metadata
    total = sum(metadata.row_group(g).column(c).total_uncompressed_size
                for g in range(metadata.num_row_groups)
                for c in range(metadata.row_group(g).num_columns))
    return total / metadata.num_rows


def uncompressed_bytes(folder: Path) -> int:
    total = 0
    for path in sorted(folder.glob("*.parquet")):
        metadata = pq.ParquetFile(path).metadata
        total += sum(metadata.row_group(g).column(c).total_uncompressed_size
                     for g in range(metadata.num_row_groups)
                     for c in range(metadata.row_group(g).num_columns))
    return total


# ---------------------------------------------------------------- tests

def test_a_million_parquet_rows_in_1mb_mini_batches_come_out_once_each_in_order(
        client, tmp_path, million_parquet, write_script):
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(million_parquet))],
                      out, mini_batch_size="1MB")

    assert result.status == "Completed", result.summary()
    assert result.items == {"total": 1_000_000, "succeeded": 1_000_000, "failed": 0}
    # 1MB really split the 4 files: at least one mini-batch per MiB of uncompressed data
    assert result.mini_batches["total"] >= uncompressed_bytes(million_parquet) // MIB
    assert result.mini_batches["succeeded"] == result.mini_batches["total"]
    ids = output_ids(out)
    assert len(ids) == 1_000_000
    assert np.array_equal(ids, np.arange(1_000_000))


@pytest.mark.parametrize("mini_batch_size", ["1MB", "50000 rows"])
def test_a_million_csv_rows_come_out_once_each_in_order(
        client, tmp_path, million_csv, write_script, mini_batch_size):
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_delimited_files(str(million_csv))],
                      out, mini_batch_size=mini_batch_size)

    assert result.status == "Completed", result.summary()
    assert result.items == {"total": 1_000_000, "succeeded": 1_000_000, "failed": 0}
    table = attempts(out)
    assert len(table) == result.mini_batches["total"]
    if mini_batch_size == "1MB":
        csv_bytes = sum(p.stat().st_size for p in million_csv.glob("*.csv"))
        assert result.mini_batches["total"] >= csv_bytes // MIB
    else:  # 400,000 + 350,000 + 250,000 rows: 8 + 7 + 5 mini-batches of exactly 50,000
        assert result.mini_batches["total"] == 20
        assert set(table["items"]) == {50_000}
    ids = output_ids(out)
    assert len(ids) == 1_000_000
    assert np.array_equal(ids, np.arange(1_000_000))


@pytest.mark.parametrize("mini_batch_size", ["16KB", "500 rows"])
def test_csv_quoted_line_ends_and_a_bad_value_on_a_cluster_count_every_row_once(
        client, tmp_path, write_script, mini_batch_size):
    rows, bad_row = 12_000, 11_000  # dtypes are inferred from the first 10,000 rows
    texts = ["plain", "two\nlines", 'say "hi"', "a,b", "windows\r\nline end", "x\n\n\ny"]
    data = pd.DataFrame({"id": range(rows), "text": [f"{texts[i % 6]} {i}" for i in range(rows)],
                         "value": [str(i) for i in range(rows)]})
    data.loc[bad_row, "value"] = "oops"
    path = tmp_path / "data" / "quoted.csv"
    path.parent.mkdir()
    path.write_text(data.to_csv(index=False, lineterminator="\n"), encoding="utf-8",
                    newline="")
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_delimited_files(str(path))], out,
                      mini_batch_size=mini_batch_size, run_max_try=1)

    assert result.status == "Completed", result.summary()
    table = attempts(out)
    failed = table[table["status"] == "failed"]
    assert len(failed) == 1 and "oops" in failed["error"].iloc[0]
    first, last = (int(failed[c].iloc[0].rsplit("#", 1)[1]) for c in ("first_item",
                                                                        "last_item"))
    assert first <= bad_row <= last
    bad = last - first + 1
    assert result.items == {"total": rows, "succeeded": rows - bad, "failed": bad}
    assert list(output_ids(out)) == [i for i in range(rows) if not first <= i <= last]


def test_n_rows_gives_exactly_n_rows_per_mini_batch_except_each_files_last(
        client, tmp_path, make_parquet, write_script):
    rows_per_file, rows = [10_001, 7_777, 12_345], 2_500
    paths = make_parquet(tmp_path / "data", files=3, rows_per_file=rows_per_file,
                         row_group_size=1_500)
    source = write_script(tmp_path, RETURN_IDS_WITH_BATCH)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                      out, mini_batch_size=f"{rows} rows")

    assert result.status == "Completed", result.summary()
    expected = []  # (path, first row in file, rows, first global id)
    first_id = 0
    for path, total in zip(paths, rows_per_file, strict=True):
        for start in range(0, total, rows):
            expected.append((str(path), start, min(rows, total - start), first_id + start))
        first_id += total
    table = by_ordinal(attempts(out))
    assert list(table["mini_batch_id"]) == [f"input0-{i}" for i in range(len(expected))]
    assert list(table["items"]) == [count for _, _, count, _ in expected]
    assert list(table["first_item"]) == [f"{p}#{start}" for p, start, _, _ in expected]
    assert list(table["last_item"]) == [f"{p}#{start + count - 1}"
                                        for p, start, count, _ in expected]
    written = pd.read_csv(out / "parallel_run_step.txt", sep=" ", header=None,
                          names=["mini_batch_id", "id"])
    for number, (_, _, count, first) in enumerate(expected):
        got = written.loc[written["mini_batch_id"] == f"input0-{number}", "id"].to_numpy()
        assert np.array_equal(got, np.arange(first, first + count)), f"input0-{number}"
    assert np.array_equal(written["id"].to_numpy(), np.arange(sum(rows_per_file)))


def test_1mb_gives_mini_batches_within_half_of_the_target_except_file_tails(
        client, tmp_path, make_parquet, write_script):
    # 9 columns of 8 bytes (~90 bytes a row with Parquet's encoding overhead); row groups
    # of 5,000 rows (~0.43 MiB), so a mini-batch gathers several whole row groups
    paths = make_parquet(tmp_path / "data", files=3, rows_per_file=62_000,
                         row_group_size=5_000, float_columns=8)
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                      out, mini_batch_size="1MB")

    assert result.status == "Completed", result.summary()
    per_row = {str(p): uncompressed_bytes_per_row(p) for p in paths}
    assert all(80 <= value <= 130 for value in per_row.values()), per_row
    table = by_ordinal(attempts(out))
    table["file"] = table["first_item"].str.rsplit("#", n=1).str[0]
    assert (table["file"] == table["last_item"].str.rsplit("#", n=1).str[0]).all(), \
        "a mini-batch spans two files"
    table["estimate"] = table["file"].map(per_row) * table["items"]
    last_of_file = table["file"] != table["file"].shift(-1)
    inner = table.loc[~last_of_file]
    assert len(inner) >= 12
    assert (inner["estimate"] >= 0.5 * MIB).all(), inner[["mini_batch_id", "estimate"]]
    assert (table["estimate"] <= 1.5 * MIB).all(), table[["mini_batch_id", "estimate"]]
    assert table.groupby("file")["items"].sum().to_dict() == {str(p): 62_000 for p in paths}
    assert np.array_equal(output_ids(out), np.arange(3 * 62_000))


def test_init_runs_exactly_once_per_worker_process(
        client, tmp_path, make_parquet, write_script):
    make_parquet(tmp_path / "data", files=2, rows_per_file=10_000, row_group_size=2_000)
    pids = tmp_path / "init_pids.txt"
    source = write_script(tmp_path, """
        import argparse
        import os

        def init():
            parser = argparse.ArgumentParser()
            parser.add_argument("--pids")
            args, _ = parser.parse_known_args()
            with open(args.pids, "a") as handle:
                handle.write(f"{os.getpid()}\\n")
            print(f"init in pid {os.getpid()}")

        def run(mini_batch):
            return mini_batch["id"].tolist()
        """)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                      out, arguments=["--pids", str(pids)], mini_batch_size="500 rows")

    assert result.status == "Completed", result.summary()
    table = attempts(out)
    assert len(table) == 40
    assert (table["status"] == "succeeded").all()
    init_pids = [int(line) for line in pids.read_text().split()]
    run_pids = set(table["pid"].astype(int))
    workers = len(client.scheduler_info()["workers"])
    assert workers == 2
    assert len(init_pids) == len(set(init_pids)) == workers
    assert run_pids == set(init_pids)
    stdout = "".join(p.read_text() for p in (out / "logs" / "user" / "stdout").glob("*.txt"))
    assert stdout.count("init in pid") == workers
    assert np.array_equal(output_ids(out), np.arange(20_000))


def test_a_run_that_fails_its_first_attempt_is_retried_and_its_rows_appear_once(
        client, tmp_path, make_parquet, write_script):
    make_parquet(tmp_path / "data", files=2, rows_per_file=3_000, row_group_size=700)
    markers = tmp_path / "markers"
    markers.mkdir()
    source = write_script(tmp_path, """
        import argparse
        import os

        def init():
            global markers
            parser = argparse.ArgumentParser()
            parser.add_argument("--markers")
            markers = parser.parse_known_args()[0].markers

        def run(mini_batch, mini_batch_context):
            marker = os.path.join(markers, mini_batch_context.mini_batch_id)
            if not os.path.exists(marker):
                with open(marker, "w") as handle:
                    handle.write(str(mini_batch_context.attempt))
                raise RuntimeError(f"first try of {mini_batch_context.mini_batch_id}")
            return mini_batch["id"].tolist()
        """)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                      out, arguments=["--markers", str(markers)], mini_batch_size="1000 rows",
                      run_max_try=3)

    assert result.status == "Completed", result.summary()
    assert np.array_equal(output_ids(out), np.arange(6_000))
    summary = job_json(out)
    assert summary["mini_batches"]["total"] == 6
    assert summary["mini_batches"]["succeeded"] == 6
    assert summary["mini_batches"]["failed"] == 0
    assert summary["attempts"]["total"] == 12
    assert summary["attempts"]["failed"] == 6
    assert summary["items"] == {"total": 6_000, "succeeded": 6_000, "failed": 0}
    assert sorted(p.read_text() for p in markers.iterdir()) == ["1"] * 6
    table = by_ordinal(attempts(out))
    for mini_batch_id, rows in table.groupby("mini_batch_id"):
        assert list(rows["attempt"]) == [1, 2], mini_batch_id
        assert list(rows["status"]) == ["failed", "succeeded"], mini_batch_id
        assert list(rows["succeeded"]) == [0, 1_000], mini_batch_id
        assert list(rows["failed"]) == [1_000, 0], mini_batch_id
        assert rows["error"].iloc[0] == f"RuntimeError: first try of {mini_batch_id}"


def test_parquet_output_round_trips_in_mini_batch_order(
        client, tmp_path, make_parquet, write_script):
    paths = make_parquet(tmp_path / "data", files=2, rows_per_file=5_000, row_group_size=1_200)
    source = write_script(tmp_path, """
        import pandas as pd

        def run(mini_batch):
            return pd.DataFrame({"id": mini_batch["id"], "score": mini_batch["f0"] * 2.0})
        """)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                      out, mini_batch_size="2000 rows", output_action="parquet")

    assert result.status == "Completed", result.summary()
    source_rows = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    expected = pd.DataFrame({"id": source_rows["id"], "score": source_rows["f0"] * 2.0})
    parts = sorted((out / "data").glob("part-*.parquet"))
    # one part per mini-batch, numbered by mini-batch, named by run (issue 17: old or new)
    assert [p.name for p in parts] == [f"part-{i:05d}-{result.run_id}.parquet"
                                       for i in range(6)]
    assert sorted(p.name for p in (out / "data").iterdir() if p not in parts) == [
        f"_manifest-{result.run_id}.json"]
    assert [pq.ParquetFile(p).metadata.num_rows for p in parts] == [2_000, 2_000, 1_000] * 2
    by_part = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(by_part, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "data").reset_index(drop=True),
                                  expected)
    pd.testing.assert_frame_equal(result.read_output().reset_index(drop=True), expected)
    assert not (out / "parallel_run_step.txt").exists()


def test_summary_only_writes_counts_and_logs_only(
        client, tmp_path, make_parquet, write_script):
    make_parquet(tmp_path / "data", files=2, rows_per_file=4_000, row_group_size=1_000)
    source = write_script(tmp_path, RETURN_IDS)
    out = tmp_path / "out"

    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                      out, mini_batch_size="1500 rows", output_action="summary_only")

    assert result.status == "Completed", result.summary()
    assert not (out / "parallel_run_step.txt").exists()
    assert not (out / "data").exists()
    summary = job_json(out)
    assert summary["items"] == {"total": 8_000, "succeeded": 8_000, "failed": 0}
    assert summary["mini_batches"]["succeeded"] == 6
    first_line = (out / "logs" / "job_result.txt").read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "Completed"
    assert len(attempts(out)) == 6
    with pytest.raises(OutputError):
        result.read_output()


@pytest.mark.parametrize(("error_threshold", "status"), [(9, "Failed"), (10, "Completed")])
def test_a_run_that_returns_fewer_elements_is_finished_and_its_missing_items_count(
        client, tmp_path, make_parquet, write_script, error_threshold, status):
    make_parquet(tmp_path / "data", files=1, rows_per_file=4_000, row_group_size=1_000)
    source = write_script(tmp_path, """
        def run(mini_batch):
            return mini_batch["id"].tolist()[:-1]
        """)
    out = tmp_path / "out"

    # 10 mini-batches, each missing 1 item: 10 failed items
    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                      out, mini_batch_size="400 rows", error_threshold=error_threshold)

    assert result.status == status, result.summary()
    summary = job_json(out)
    assert summary["status"] == status
    assert summary["items"] == {"total": 4_000, "succeeded": 3_990, "failed": 10}
    assert summary["mini_batches"]["failed"] == 0
    assert summary["attempts"]["total"] == 10
    assert summary["attempts"]["failed"] == 0
    table = attempts(out)
    assert table.groupby("mini_batch_id").size().to_dict() == {f"input0-{i}": 1
                                                               for i in range(10)}
    assert (table["status"] == "succeeded").all()
    assert (table["attempt"] == 1).all()
    assert list(table["succeeded"]) == [399] * 10
    assert list(table["failed"]) == [1] * 10
    first_line = (out / "logs" / "job_result.txt").read_text(encoding="utf-8").splitlines()[0]
    assert first_line == status
    if status == "Failed":
        assert "error_threshold" in result.reason
        assert not (out / "parallel_run_step.txt").exists()
        with pytest.raises(OutputError):
            result.read_output()
    else:
        kept = np.concatenate([np.arange(start, start + 399) for start in range(0, 4_000, 400)])
        assert np.array_equal(output_ids(out), kept)


def test_rerunning_the_same_step_reuses_the_completed_job_without_running_anything(
        client, tmp_path, make_parquet, write_script):
    make_parquet(tmp_path / "data", files=2, rows_per_file=3_000, row_group_size=1_000)
    pids = tmp_path / "init_pids.txt"
    source = write_script(tmp_path, """
        import argparse
        import os

        def init():
            parser = argparse.ArgumentParser()
            parser.add_argument("--pids")
            with open(parser.parse_known_args()[0].pids, "a") as handle:
                handle.write(f"{os.getpid()}\\n")

        def run(mini_batch):
            return mini_batch["id"].tolist()
        """)
    out = tmp_path / "out"
    inputs = [Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))]
    arguments = ["--pids", str(pids)]

    first = run_step(client, source, inputs, out, arguments=arguments,
                     mini_batch_size="1000 rows")
    assert first.status == "Completed", first.summary()
    assert first.reused is False
    table_before = (out / "logs" / "sys" / "mini_batches.csv").read_bytes()
    output_before = (out / "parallel_run_step.txt").read_bytes()
    inits_before = pids.read_text()
    assert len(inits_before.split()) == 2

    second = run_step(client, source, inputs, out, arguments=arguments,
                      mini_batch_size="1000 rows")

    assert second.reused is True
    assert second.status == "Completed"
    assert second.run_id == first.run_id
    assert second.items == first.items == {"total": 6_000, "succeeded": 6_000, "failed": 0}
    assert (out / "logs" / "sys" / "mini_batches.csv").read_bytes() == table_before
    assert pids.read_text() == inits_before, "init() ran again: something was executed"
    assert (out / "parallel_run_step.txt").read_bytes() == output_before
    assert np.array_equal(second.read_output()[0].to_numpy(), np.arange(6_000))


def test_pandas_and_dask_dataframe_inputs_give_every_row_once_in_order(tmp_path, write_script,
                                                                      client):
    import dask.dataframe as dd

    frame = pd.DataFrame({"id": range(5000), "x": [float(i) for i in range(5000)]})
    source = write_script(tmp_path, """
def run(mini_batch):
    return mini_batch["id"].tolist()
""")
    for name, dataset, batches in (
            ("pandas", Dataset.Tabular.from_pandas_dataframe(frame), 10),
            ("dask", Dataset.Tabular.from_dask_dataframe(dd.from_pandas(frame, npartitions=7)),
             7)):
        cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                                mini_batch_size="500 rows")
        step = ParallelRunStep(name=f"frame-{name}", parallel_run_config=cfg,
                               inputs=[dataset], output=str(tmp_path / f"out-{name}"))
        result = step.run(client=client, progress=False)

        assert result.mini_batches["total"] == batches, name
        assert result.read_output()[0].tolist() == list(range(5000)), name
