"""Planning tabular mini-batches from Parquet and CSV files (no cluster, no job).

Every row is in exactly one mini-batch, mini-batches never span files, ids are
``<input>-<ordinal>``, and reading every planned mini-batch back gives the input again.
"""

from __future__ import annotations

import gzip
import itertools
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskprs import Dataset, InputError, ParallelRunConfig, ParallelRunStep
from daskprs.datasets import TabularDataset
from daskprs.inputs.plan import MiniBatch, Plan
from daskprs.inputs.tabular import MINI_BATCH, READ_ERROR, plan_tabular, read_mini_batch
from daskprs.sizes import MiniBatchSize, parse_tabular_size


def frame(rows: int, offset: int = 0, label: str = "r") -> pd.DataFrame:
    return pd.DataFrame({"x": range(offset, offset + rows),
                         "y": [f"{label}{i:05d}" for i in range(offset, offset + rows)]})


def write_parquet(path: Path, rows: int, row_group_size: int, offset: int = 0) -> pd.DataFrame:
    data = frame(rows, offset)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path,
                   row_group_size=row_group_size)
    return data


def write_csv(path: Path, data: pd.DataFrame, header: bool = True,
              trailing_newline: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = data.to_csv(index=False, header=header, lineterminator="\n")
    path.write_text(text if trailing_newline else text.rstrip("\n"), encoding="utf-8")


def parquet(path: Path | list[Path] | str, name: str = "input0") -> TabularDataset:
    paths = [str(p) for p in path] if isinstance(path, list) else str(path)
    return Dataset.Tabular.from_parquet_files(paths).as_named_input(name)  # type: ignore


def csv(path: Path | str, name: str = "input0", header: bool = True) -> TabularDataset:
    dataset = Dataset.Tabular.from_delimited_files(str(path), header=header)
    return dataset.as_named_input(name)  # type: ignore[return-value]


def ranges_by_file(plan: Plan) -> dict[str, list[tuple[int, int]]]:
    ranges: dict[str, list[tuple[int, int]]] = {}
    for mb in plan.mini_batches:
        assert mb.path is not None
        ranges.setdefault(mb.path, []).append((mb.start, mb.stop))
    return ranges


def assert_contiguous(ranges: list[tuple[int, int]], total: int, first: int = 0) -> None:
    """The ranges, in plan order, cover first..total without gaps or overlaps."""
    assert ranges[0][0] == first
    for (_, stop), (start, _) in itertools.pairwise(ranges):
        assert start == stop, ranges
    assert ranges[-1][1] == total
    assert all(stop > start for start, stop in ranges), ranges


def read_all(plan: Plan) -> pd.DataFrame:
    parts = []
    for mb in plan.mini_batches:
        part = read_mini_batch(mb)
        assert READ_ERROR not in part.attrs, part.attrs.get(READ_ERROR)
        assert part.attrs[MINI_BATCH] is mb
        if mb.items is not None:
            assert len(part) == mb.items, mb
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def group_bytes(path: Path) -> list[int]:
    """The planner's estimator: uncompressed column chunk sizes of each row group."""
    metadata = pq.ParquetFile(path).metadata
    return [sum(metadata.row_group(g).column(c).total_uncompressed_size
                for c in range(metadata.row_group(g).num_columns))
            for g in range(metadata.num_row_groups)]


# --- Parquet ---------------------------------------------------------------------------


def test_parquet_mini_batches_cover_every_row_of_every_file_exactly_once(tmp_path: Path) -> None:
    write_parquet(tmp_path / "t" / "a.parquet", 100, 10)
    write_parquet(tmp_path / "t" / "b.parquet", 35, 10, offset=100)

    plan = plan_tabular([parquet(tmp_path / "t")], parse_tabular_size(1000))

    ranges = ranges_by_file(plan)
    assert list(ranges) == [str(tmp_path / "t" / "a.parquet"), str(tmp_path / "t" / "b.parquet")]
    assert_contiguous(ranges[str(tmp_path / "t" / "a.parquet")], 100)
    assert_contiguous(ranges[str(tmp_path / "t" / "b.parquet")], 35)
    assert [mb.items for mb in plan.mini_batches] == [mb.stop - mb.start
                                                       for mb in plan.mini_batches]
    assert [mb.first_row for mb in plan.mini_batches] == [mb.start for mb in plan.mini_batches]
    assert plan.total_items == 135
    assert plan.kind == "tabular"
    assert list(plan.meta.columns) == ["x", "y"] and len(plan.meta) == 0


def test_mini_batch_ids_are_the_input_name_and_an_ordinal_from_0(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet", 30, 10)
    write_parquet(tmp_path / "b.parquet", 20, 10)

    plan = plan_tabular([parquet([tmp_path / "a.parquet", tmp_path / "b.parquet"])],
                        MiniBatchSize(10, "rows"))

    assert [mb.id for mb in plan.mini_batches] == [f"input0-{i}" for i in range(5)]
    assert [mb.index for mb in plan.mini_batches] == list(range(5))
    assert {mb.input_name for mb in plan.mini_batches} == {"input0"}


def test_unnamed_inputs_of_a_step_are_numbered_and_ordinals_restart_per_input(
        tmp_path: Path) -> None:
    write_parquet(tmp_path / "one.parquet", 25, 10)
    write_parquet(tmp_path / "two.parquet", 12, 10)
    (tmp_path / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    step = ParallelRunStep(
        name="plan-test",
        parallel_run_config=ParallelRunConfig(entry_script=str(tmp_path / "score.py"),
                                              mini_batch_size="10 rows"),
        inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "one.parquet")),
                Dataset.Tabular.from_parquet_files(str(tmp_path / "two.parquet"))],
        output=str(tmp_path / "out"))

    plan = plan_tabular(step.inputs, step.mini_batch_size)  # type: ignore[arg-type]

    assert [mb.id for mb in plan.mini_batches] == [
        "input0-0", "input0-1", "input0-2", "input1-0", "input1-1"]
    assert [mb.index for mb in plan.mini_batches] == [0, 1, 2, 3, 4]
    assert [mb.items for mb in plan.mini_batches] == [10, 10, 5, 10, 2]


def test_parquet_byte_mini_batches_take_whole_row_groups_while_they_fit(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    write_parquet(path, 100, 10)
    sizes = group_bytes(path)
    target = int(3.5 * max(sizes))

    plan = plan_tabular([parquet(path)], MiniBatchSize(target, "bytes"))

    ranges = ranges_by_file(plan)[str(path)]
    assert_contiguous(ranges, 100)
    for position, (start, stop) in enumerate(ranges):
        assert start % 10 == 0 and (stop % 10 == 0 or stop == 100), ranges
        assert sum(sizes[start // 10:stop // 10]) <= target
        if position + 1 < len(ranges):  # greedy: the next group would not have fitted
            assert sum(sizes[start // 10:stop // 10 + 1]) > target
    assert [stop - start for start, stop in ranges] == [30, 30, 30, 10]


def test_a_row_group_bigger_than_the_target_is_cut_into_slices(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    data = write_parquet(path, 100, 100)
    (nbytes,) = group_bytes(path)
    target = nbytes // 3 - 1

    plan = plan_tabular([parquet(path)], MiniBatchSize(target, "bytes"))

    ranges = ranges_by_file(plan)[str(path)]
    assert_contiguous(ranges, 100)
    assert len(ranges) == math.ceil(nbytes / target) == 4
    pd.testing.assert_frame_equal(read_all(plan), data)


def test_rows_mode_cuts_every_n_rows_whatever_the_row_groups(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet", 100, 30)
    write_parquet(tmp_path / "b.parquet", 9, 4)

    plan = plan_tabular([parquet(tmp_path)], MiniBatchSize(7, "rows"))

    ranges = ranges_by_file(plan)
    assert ranges[str(tmp_path / "a.parquet")] == [(s, min(s + 7, 100)) for s in range(0, 100, 7)]
    assert ranges[str(tmp_path / "b.parquet")] == [(0, 7), (7, 9)]
    assert [mb.items for mb in plan.mini_batches] == [7] * 14 + [2, 7, 2]


def test_parquet_mini_batches_read_back_give_every_row_exactly_once(tmp_path: Path) -> None:
    first = write_parquet(tmp_path / "a.parquet", 100, 10)
    second = write_parquet(tmp_path / "b.parquet", 37, 37, offset=100)
    expected = pd.concat([first, second], ignore_index=True)

    for size in (MiniBatchSize(7, "rows"), MiniBatchSize(700, "bytes"),
                 MiniBatchSize(1, "bytes"), parse_tabular_size("1GB")):
        plan = plan_tabular([parquet(tmp_path)], size)
        pd.testing.assert_frame_equal(read_all(plan), expected, obj=str(size))


def test_mini_batches_never_span_two_files(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write_parquet(tmp_path / f"{name}.parquet", 5, 5)

    plan = plan_tabular([parquet(tmp_path)], parse_tabular_size("1GB"))

    assert [(Path(mb.path).name, mb.start, mb.stop) for mb in plan.mini_batches] == [
        ("a.parquet", 0, 5), ("b.parquet", 0, 5), ("c.parquet", 0, 5)]


def test_an_input_without_rows_is_refused_before_any_work(tmp_path: Path) -> None:
    write_parquet(tmp_path / "empty.parquet", 0, 10)

    with pytest.raises(InputError) as caught:
        plan_tabular([parquet(tmp_path / "empty.parquet", "empty")], MiniBatchSize(10, "rows"))

    assert str(caught.value) == (f"input 'empty' ({tmp_path / 'empty.parquet'}) has no rows. "
                                 f"Point it at data that has rows.")


# --- CSV -------------------------------------------------------------------------------


def test_csv_byte_blocks_read_back_give_every_row_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    data = pd.DataFrame({"x": range(200),
                         "y": [f"value-{'z' * (i % 17)}-{i}" for i in range(200)]})
    write_csv(path, data)

    text = path.read_bytes()
    row_offsets = [i + 1 for i, byte in enumerate(text[:-1]) if byte == ord("\n")]

    for block in (29, 64, 256, 4096, 10**9):
        plan = plan_tabular([csv(path)], MiniBatchSize(block, "bytes"))
        size = path.stat().st_size
        # cut where a row starts (the header is no mini-batch's): at the first row starting
        # in each block, so at most ceil(size / block) mini-batches
        assert_contiguous(ranges_by_file(plan)[str(path)], size, first=row_offsets[0])
        assert len(plan.mini_batches) == len({start // block for start in row_offsets})
        assert len(plan.mini_batches) <= math.ceil(size / block)
        assert plan.total_items == 200
        pd.testing.assert_frame_equal(read_all(plan), data, obj=f"blocks of {block} bytes")


def test_csv_blocks_of_one_byte_still_give_every_row_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    data = frame(4)
    write_csv(path, data)

    plan = plan_tabular([csv(path)], MiniBatchSize(1, "bytes"))

    assert [mb.items for mb in plan.mini_batches] == [1, 1, 1, 1]  # no empty mini-batches
    pd.testing.assert_frame_equal(read_all(plan), data)


def test_a_csv_header_longer_than_a_byte_block_is_read_once_as_header(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    data = pd.DataFrame({f"a_rather_long_column_name_number_{i}": range(i, i + 30)
                         for i in range(8)})
    write_csv(path, data)
    header_length = len(path.read_text().splitlines()[0])
    assert header_length > 64

    plan = plan_tabular([csv(path)], MiniBatchSize(64, "bytes"))

    pd.testing.assert_frame_equal(read_all(plan), data)


def test_csv_rows_mode_gives_exact_counts_and_first_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    data = frame(53)
    write_csv(path, data)

    plan = plan_tabular([csv(path)], MiniBatchSize(10, "rows"))

    assert [mb.items for mb in plan.mini_batches] == [10, 10, 10, 10, 10, 3]
    assert [mb.first_row for mb in plan.mini_batches] == [0, 10, 20, 30, 40, 50]
    assert [mb.id for mb in plan.mini_batches] == [f"input0-{i}" for i in range(6)]
    assert plan.total_items == 53
    parts = [read_mini_batch(mb) for mb in plan.mini_batches]
    assert [part["x"].tolist() for part in parts] == [
        list(range(s, min(s + 10, 53))) for s in range(0, 53, 10)]
    assert plan.mini_batches[1].item_labels() == (f"{path}#10", f"{path}#19")


@pytest.mark.parametrize("header", [True, False], ids=["with header", "without header"])
@pytest.mark.parametrize("trailing_newline", [True, False],
                         ids=["ending in a newline", "without a final newline"])
@pytest.mark.parametrize("size", [MiniBatchSize(4, "rows"), MiniBatchSize(30, "bytes")],
                         ids=["rows", "bytes"])
def test_csv_mini_batches_read_back_give_every_row_exactly_once(
        tmp_path: Path, header: bool, trailing_newline: bool, size: MiniBatchSize) -> None:
    path = tmp_path / "data.csv"
    data = frame(23)
    write_csv(path, data, header=header, trailing_newline=trailing_newline)
    expected = data if header else data.set_axis([0, 1], axis=1)

    plan = plan_tabular([csv(path, header=header)], size)

    pd.testing.assert_frame_equal(read_all(plan), expected)
    if size.unit == "rows":
        assert plan.total_items == 23


@pytest.mark.parametrize("size", [MiniBatchSize(2, "rows"), MiniBatchSize(6, "bytes")],
                         ids=["rows", "bytes"])
def test_csv_with_windows_line_ends_reads_back_every_row_once(tmp_path: Path,
                                                              size: MiniBatchSize) -> None:
    path = tmp_path / "windows.csv"
    path.write_bytes(b"x,y\r\n1,a\r\n2,b\r\n3,c\r\n")

    plan = plan_tabular([csv(path)], size)

    result = read_all(plan)
    assert result["x"].tolist() == [1, 2, 3]
    assert result["y"].tolist() == ["a", "b", "c"]


def test_a_blank_last_line_of_a_csv_is_not_counted_as_a_row(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("x,y\n1,a\n2,b\n\n", encoding="utf-8")

    plan = plan_tabular([csv(path)], MiniBatchSize(2, "rows"))

    assert plan.total_items == 2
    assert [mb.items for mb in plan.mini_batches] == [2]
    assert read_all(plan)["x"].tolist() == [1, 2]

def test_gzipped_csv_is_one_mini_batch_per_file(tmp_path: Path) -> None:
    first, second = frame(40), frame(25, offset=40)
    for name, data in (("a.csv.gz", first), ("b.csv.gz", second)):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as handle:
            handle.write(data.to_csv(index=False, lineterminator="\n"))

    for size in (MiniBatchSize(5, "rows"), MiniBatchSize(10, "bytes")):
        plan = plan_tabular([csv(tmp_path)], size)

        assert [(Path(mb.path).name, mb.start, mb.stop) for mb in plan.mini_batches] == [
            ("a.csv.gz", 0, (tmp_path / "a.csv.gz").stat().st_size),
            ("b.csv.gz", 0, (tmp_path / "b.csv.gz").stat().st_size)]
        assert [mb.id for mb in plan.mini_batches] == ["input0-0", "input0-1"]
        pd.testing.assert_frame_equal(read_all(plan),
                                      pd.concat([first, second], ignore_index=True))


# --- listing ---------------------------------------------------------------------------


def test_a_folder_input_skips_underscore_and_dot_files(tmp_path: Path) -> None:
    folder = tmp_path / "table"
    write_parquet(folder / "part-0.parquet", 3, 3)
    write_parquet(folder / "nested" / "part-1.parq", 4, 4)
    write_parquet(folder / ".hidden.parquet", 5, 5)
    write_parquet(folder / "_temporary" / "part-9.parquet", 6, 6)
    write_parquet(folder / ".cache" / "part-8.parquet", 7, 7)
    (folder / "_SUCCESS").write_text("")
    (folder / ".hidden").write_text("x")
    (folder / "notes.txt").write_text("not parquet")

    plan = plan_tabular([parquet(folder)], parse_tabular_size("1GB"))

    assert [mb.path for mb in plan.mini_batches] == [
        str(folder / "nested" / "part-1.parq"), str(folder / "part-0.parquet")]
    assert [url for url, _, _ in plan.listing] == [
        str(folder / "nested" / "part-1.parq"), str(folder / "part-0.parquet")]
    assert plan.total_items == 7


def test_a_csv_folder_input_takes_delimited_files_only(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", frame(3))
    write_csv(tmp_path / "b.txt", frame(2, offset=3))
    write_csv(tmp_path / "_c.csv", frame(9, offset=100))
    write_parquet(tmp_path / "d.parquet", 4, 4)
    (tmp_path / "_SUCCESS").write_text("")

    plan = plan_tabular([csv(tmp_path)], MiniBatchSize(10, "rows"))

    assert [Path(mb.path).name for mb in plan.mini_batches] == ["a.csv", "b.txt"]
    pd.testing.assert_frame_equal(read_all(plan), frame(5))


def test_a_list_input_is_de_duplicated_and_sorted_by_path(tmp_path: Path) -> None:
    for name in ("b", "a", "C"):
        write_parquet(tmp_path / f"{name}.parquet", 2, 2)

    dataset = parquet([tmp_path / "b.parquet", tmp_path / "a.parquet", tmp_path / "b.parquet",
                       tmp_path / "*.parquet", tmp_path])  # type: ignore[list-item]
    plan = plan_tabular([dataset], MiniBatchSize(10, "rows"))

    assert [Path(mb.path).name for mb in plan.mini_batches] == [
        "C.parquet", "a.parquet", "b.parquet"]  # code-point order: upper case first
    assert [mb.id for mb in plan.mini_batches] == ["input0-0", "input0-1", "input0-2"]
    assert len(plan.listing) == 3


def test_a_list_element_that_matches_nothing_is_an_input_error(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet", 2, 2)
    missing = str(tmp_path / "nope-*.parquet")

    with pytest.raises(InputError) as caught:
        plan_tabular([parquet([tmp_path / "a.parquet", missing], "scores")],  # type: ignore
                     MiniBatchSize(10, "rows"))

    assert str(caught.value).startswith(f"input 'scores': {missing!r} matches no files")


def test_mini_batch_descriptors_name_their_file_and_rows(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet", 12, 12)

    plan = plan_tabular([parquet(tmp_path / "a.parquet", "iris")], MiniBatchSize(5, "rows"))

    assert plan.mini_batches[2] == MiniBatch(
        index=2, id="iris-2", input_name="iris", source=plan.mini_batches[2].source,
        path=str(tmp_path / "a.parquet"), start=10, stop=12, first_row=10, items=2)
    assert plan.mini_batches[2].item_labels() == (f"{tmp_path / 'a.parquet'}#10",
                                                  f"{tmp_path / 'a.parquet'}#11")

