"""MLTable folders read with pyyaml: paths, read_delimited, read_parquet, column steps; and
the planner never makes an empty mini-batch of one (issue 11 item 6)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daskprs.datasets import FileDataset, TabularDataset
from daskprs.errors import ConfigError
from daskprs.inputs.mltable import read_mltable
from daskprs.inputs.tabular import plan_tabular
from daskprs.sizes import parse_tabular_size


def mltable(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLTable").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def test_read_delimited_is_a_table_of_the_listed_paths(tmp_path: Path) -> None:
    folder = mltable(tmp_path / "t", """\
        paths:
          - file: ./a.csv
          - folder: ./more
          - pattern: ./parts/*.csv
        transformations:
          - read_delimited:
              delimiter: ";"
              encoding: utf8
              header: no_header
        """)

    dataset = read_mltable(str(folder))

    assert isinstance(dataset, TabularDataset)
    assert (dataset.format, dataset.separator, dataset.header) == ("delimited", ";", False)
    assert dataset.paths == (str(folder / "a.csv"), str(folder / "more"),
                             str(folder / "parts" / "*.csv"))


def test_read_parquet_is_a_parquet_table(tmp_path: Path) -> None:
    folder = mltable(tmp_path / "t", "paths:\n  - pattern: ./*.parquet\n"
                                     "transformations:\n  - read_parquet: {}\n")

    dataset = read_mltable(str(folder / "MLTable"))

    assert isinstance(dataset, TabularDataset)
    assert dataset.format == "parquet"
    assert dataset.paths == (str(folder / "*.parquet"),)


def test_an_mltable_without_transformations_is_a_file_input(tmp_path: Path) -> None:
    folder = mltable(tmp_path / "t", "paths:\n  - file: ./0.png\n  - file: ./1.png\n")

    dataset = read_mltable(str(folder))

    assert isinstance(dataset, FileDataset)
    assert dataset.paths == (str(folder / "0.png"), str(folder / "1.png"))


def test_what_daskprs_cannot_honour_is_refused_naming_the_key(tmp_path: Path) -> None:
    folder = mltable(tmp_path / "t", """\
        paths:
          - file: ./a.csv
          - url: ./b.csv
        transformations:
          - read_delimited: {encoding: latin1, header: maybe, quoting: yes}
          - take: 10
        """)

    with pytest.raises(ConfigError) as caught:
        read_mltable(str(folder))

    where = f"{folder / 'MLTable'}: "
    found = {p.source: (p.message, p.value) for p in caught.value.problems}
    assert found[f"{where}paths[1]"][0] == "must be one of file:, folder:, pattern: with a path"
    assert found[f"{where}transformations[0].read_delimited.encoding"] == (
        "is an encoding daskprs does not read (it reads UTF-8)", "latin1")
    assert found[f"{where}transformations[0].read_delimited.header"][1] == "maybe"
    assert found[f"{where}transformations[0].read_delimited.quoting"][0] == (
        "is not an option daskprs reads")
    assert found[f"{where}transformations[1]"] == (
        "is a transformation daskprs does not apply", "take")


def test_a_missing_mltable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_mltable(str(tmp_path))


def test_partition_format_columns_come_from_each_path_then_columns_drop(
        tmp_path: Path) -> None:
    """The MLTable Azure's own partition_data.py (1a_oj_sales_prediction) writes."""
    folder = tmp_path / "t"
    for store, brand, rows in ((1000, "tropicana", 2), (1001, "dominicks", 3)):
        (folder / str(store) / brand).mkdir(parents=True)
        pd.DataFrame({"Quantity": range(rows)}).to_csv(
            folder / str(store) / brand / "partitioned_data.csv", index=False)
    mltable(folder, """\
        type: mltable
        paths:
          - pattern: ./**/*.csv
        transformations:
          - read_delimited:
              delimiter: ','
              empty_as_string: false
              encoding: ascii
              header: all_files_same_headers
              include_path_column: true
          - extract_columns_from_partition_format:
              partition_format: '{Store}/{Brand}/{file_name}.{extension}'
          - drop_columns: [Path, file_name, extension]
        """)

    dataset = read_mltable(str(folder))

    assert isinstance(dataset, TabularDataset) and dataset.format == "pandas"
    frame = dataset.frame.sort_values(["Store", "Quantity"]).reset_index(drop=True)
    assert list(frame.columns) == ["Quantity", "Store", "Brand"]
    assert frame.to_dict("list") == {
        "Quantity": [0, 1, 0, 1, 2], "Store": ["1000", "1000", "1001", "1001", "1001"],
        "Brand": ["tropicana", "tropicana", "dominicks", "dominicks", "dominicks"]}


def test_a_small_byte_size_never_plans_an_empty_mini_batch(tmp_path: Path) -> None:
    """Azure's iris MLTable with ``mini_batch_size: "100"``: rows of ~1 KB, 100-byte blocks.
    Every mini-batch holds one row; none is empty (before: 829 mini-batches, 756 empty)."""
    folder = mltable(tmp_path / "iris", "paths:\n  - file: ./iris.csv\ntransformations:\n"
                     "  - read_delimited: {delimiter: ',', encoding: utf8, "
                     "header: all_files_same_headers}\n")
    values = np.random.default_rng(0).normal(size=(150, 44))
    np.savetxt(folder / "iris.csv", values, delimiter=",", fmt="%.18e")
    dataset = read_mltable(str(folder)).as_named_input("iris")

    plan = plan_tabular([dataset], parse_tabular_size("100"))

    assert len(plan.mini_batches) == 149  # the first line is the header
    assert [mb.items for mb in plan.mini_batches] == [1] * 149
    assert plan.total_items == 149


def test_a_piece_known_to_hold_no_rows_is_never_a_mini_batch() -> None:
    from daskprs.datasets import Dataset
    from daskprs.inputs.plan import MiniBatch, add_pieces

    dataset = Dataset.Tabular.from_parquet_files("x.parquet").as_named_input("t")
    batches: list[MiniBatch] = []

    add_pieces(batches, dataset, [dict(start=0, stop=5, items=5), dict(start=5, stop=5, items=0),
                                  dict(start=5, stop=7, items=2)])

    assert [(mb.id, mb.index, mb.items) for mb in batches] == [("t-0", 0, 5), ("t-1", 1, 2)]
