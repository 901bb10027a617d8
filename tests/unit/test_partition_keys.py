"""``partition_keys`` and ``partition_format`` (no cluster): planning, reading, validation.

One mini-batch per distinct key value, ids ``<input>-<ordinal>`` in sorted key order, every
item in exactly one mini-batch, and clear errors before any cluster starts.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daskprs import ConfigError, Dataset, InputError, ParallelRunConfig, ParallelRunStep
from daskprs.inputs.formats import READ_ERROR, read_mini_batch
from daskprs.inputs.partition_format import parse_partition_format
from daskprs.job import prepare
from daskprs.yaml_config import load_step

REGIONS = ("north", "south", "west")
DAYS = ("2024-01-01", "2024-01-02")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "score.py").write_text("def run(mini_batch, context):\n    return mini_batch\n")
    return folder


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """``images/<region>/<day>/<n>.png``: 3 regions x 2 days x 3 files."""
    root = tmp_path / "images"
    for region in REGIONS:
        for day in DAYS:
            folder = root / region / day
            folder.mkdir(parents=True)
            for number in range(3):
                (folder / f"{number}.png").write_bytes(b"png")
    return root


def keyed_frame(rows: int, offset: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(offset, offset + rows, dtype=np.int64),
                         "region": rng.choice(np.array(["north", "south", None], dtype=object),
                                              rows),
                         "level": rng.choice([1.0, 2.0, np.nan], rows)})


@pytest.fixture
def table(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """3 Parquet and 3 CSV files with the same rows; every key value spans all files."""
    folder = tmp_path / "table"
    folder.mkdir()
    frames = [keyed_frame(120, 120 * n, seed=n) for n in range(3)]
    for number, frame in enumerate(frames):
        frame.to_parquet(folder / f"part-{number}.parquet", row_group_size=25, index=False)
        frame.to_csv(folder / f"part-{number}.csv", index=False)
    return folder, pd.concat(frames, ignore_index=True)


def step_for(source: Path, inputs: list, keys: list[str], **config) -> ParallelRunStep:
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                            partition_keys=keys, **config)
    return ParallelRunStep(name="keyed", parallel_run_config=cfg, inputs=inputs,
                           output=str(source.parent / "out"))


# ---------------------------------------------------------------- partition_format

def test_a_trailing_slash_format_takes_every_file_below_the_named_folders() -> None:
    layout = parse_partition_format("/{region}/{day}/")
    assert layout.fields == ("region", "day")
    assert layout.values("north/2024-01-01/a.png") == {"region": "north", "day": "2024-01-01"}
    assert layout.values("north/2024-01-01/deep/b.png") == {"region": "north",
                                                             "day": "2024-01-01"}
    assert layout.values("north/a.png") is None


def test_a_format_without_trailing_slash_must_describe_the_path_to_its_end() -> None:
    layout = parse_partition_format("{region}/{day}/*.png")
    assert layout.values("north/d1/a.png") == {"region": "north", "day": "d1"}
    assert layout.values("north/d1/a.jpg") is None
    assert layout.values("north/d1/deep/a.png") is None


def test_a_datetime_field_gives_a_datetime_as_in_azure() -> None:
    layout = parse_partition_format("/{Department}/{PartitionDate:yyyy/MM/dd}/data.jsonl")
    assert layout.values("Accounts/2019/01/02/data.jsonl") == {
        "Department": "Accounts", "PartitionDate": datetime(2019, 1, 2)}


@pytest.mark.parametrize(("text", "words"), [
    ("/data/", "has no field"),
    ("/{region}/{region}/", "names the field 'region' twice"),
    ("/{my-region}/", "not a name"),
    ("/{region/", "unmatched brace"),
    ("/{day:yyyy/QQ}/", "use yyyy, MM, dd"),
    ("", "must be a path pattern"),
])
def test_a_malformed_format_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_partition_format(text)


# ---------------------------------------------------------------- file inputs

def test_file_input_gives_one_mini_batch_per_key_value_in_sorted_order(
        source: Path, images: Path) -> None:
    dataset = Dataset.File.from_files(str(images), partition_format="/{region}/{day}/")
    plan = prepare(step_for(source, [dataset.as_named_input("images")], ["region"])).plan
    assert [mb.id for mb in plan.mini_batches] == ["images-0", "images-1", "images-2"]
    assert [mb.partition_key_value for mb in plan.mini_batches] == [
        {"region": r} for r in REGIONS]
    for mb, region in zip(plan.mini_batches, REGIONS, strict=True):
        assert mb.paths == tuple(sorted(str(p) for p in (images / region).rglob("*.png")))
    every = [p for mb in plan.mini_batches for p in mb.paths]
    assert sorted(every) == sorted(str(p) for p in images.rglob("*.png"))
    assert len(set(every)) == len(every) == 18


def test_two_file_keys_give_one_mini_batch_per_combination(source: Path, images: Path) -> None:
    dataset = Dataset.File.from_files(str(images / "*" / "*" / "*.png"),
                                      partition_format="{region}/{day}/{name}.png")
    plan = prepare(step_for(source, [dataset], ["day", "region"])).plan
    values = [mb.partition_key_value for mb in plan.mini_batches]
    assert values == [{"day": d, "region": r} for d in DAYS for r in REGIONS]
    assert [mb.items for mb in plan.mini_batches] == [3] * 6
    assert [mb.id for mb in plan.mini_batches] == [f"input0-{n}" for n in range(6)]


def test_mini_batch_size_is_ignored_with_a_warning(source: Path, images: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    dataset = Dataset.File.from_files(str(images), partition_format="/{region}/")
    with caplog.at_level(logging.WARNING):
        plan = prepare(step_for(source, [dataset], ["region"], mini_batch_size=2)).plan
    assert [mb.items for mb in plan.mini_batches] == [6, 6, 6]
    assert "mini_batch_size 2 is ignored: partition_keys ['region']" in caplog.text


def test_a_file_that_does_not_match_the_format_is_an_input_error(
        source: Path, images: Path) -> None:
    (images / "stray.png").write_bytes(b"png")
    dataset = Dataset.File.from_files(str(images), partition_format="/{region}/{day}/")
    with pytest.raises(InputError, match=r"1 of 19 files do not match it .*\['stray.png'\]"):
        prepare(step_for(source, [dataset], ["region"]))


def test_a_key_that_is_not_a_field_of_the_format_is_a_config_error(
        source: Path, images: Path) -> None:
    dataset = Dataset.File.from_files(str(images), partition_format="/{region}/{day}/")
    with pytest.raises(ConfigError) as info:
        step_for(source, [dataset], ["regoin"])
    text = str(info.value)
    assert "partition_keys (keyword argument): names 'regoin', which is not a field of " \
           "inputs[0].partition_format '/{region}/{day}/', got ['regoin']." in text
    assert "Did you mean 'region'?" in text


def test_a_file_input_without_partition_format_is_a_config_error(
        source: Path, images: Path) -> None:
    with pytest.raises(ConfigError) as info:
        step_for(source, [Dataset.File.from_files(str(images))], ["region", "day"])
    assert "inputs[0].partition_format (keyword argument): is required by partition_keys " \
           "for a file input" in str(info.value)
    assert "partition_format='/{region}/{day}/'" in str(info.value)


def test_a_bad_partition_format_is_a_config_error_naming_the_input(
        source: Path, images: Path) -> None:
    dataset = Dataset.File.from_files(str(images), partition_format="/{region/")
    with pytest.raises(ConfigError, match=r"inputs\[0\]\.partition_format .*unmatched brace"):
        step_for(source, [dataset], ["region"])


def test_yaml_partition_keys_and_partition_format_plan_by_key(
        tmp_path: Path, source: Path, images: Path) -> None:
    config = tmp_path / "conf.yaml"
    config.write_text(
        "name: keyed\n"
        "inputs:\n"
        "  - {name: images, type: file, path: images, partition_format: '/{region}/{day}/'}\n"
        "output: out\n"
        "parallel_run_config:\n"
        "  source_directory: src\n"
        "  entry_script: score.py\n"
        "  partition_keys: [region, day]\n")
    plan = prepare(load_step(str(config))).plan
    assert len(plan.mini_batches) == 6
    assert plan.mini_batches[0].partition_key_value == {"region": "north", "day": DAYS[0]}


# ---------------------------------------------------------------- tabular inputs

@pytest.mark.parametrize("kind", ["parquet", "delimited", "pandas"])
def test_each_tabular_key_value_is_one_mini_batch_with_exactly_its_rows(
        source: Path, table: tuple[Path, pd.DataFrame], kind: str) -> None:
    folder, rows = table
    dataset = {"parquet": lambda: Dataset.Tabular.from_parquet_files(str(folder / "*.parquet")),
               "delimited": lambda: Dataset.Tabular.from_delimited_files(str(folder / "*.csv")),
               "pandas": lambda: Dataset.Tabular.from_pandas_dataframe(rows)}[kind]()
    plan = prepare(step_for(source, [dataset], ["region", "level"])).plan
    expected = [{"region": r, "level": v} for r in ("north", "south", None)
                for v in (1.0, 2.0, None)]
    assert [mb.partition_key_value for mb in plan.mini_batches] == expected
    seen: list[int] = []
    for mb in plan.mini_batches:
        frame = read_mini_batch(mb)
        assert READ_ERROR not in frame.attrs
        value = mb.partition_key_value
        region = rows["region"].isna() if value["region"] is None \
            else rows["region"] == value["region"]
        level = rows["level"].isna() if value["level"] is None else rows["level"] == value["level"]
        assert frame["id"].tolist() == rows.loc[region & level, "id"].tolist()
        assert mb.items == len(frame)
        seen.extend(frame["id"])
    assert sorted(seen) == rows["id"].tolist()


def test_a_key_value_spanning_files_is_labelled_from_its_first_to_its_last_row(
        source: Path, table: tuple[Path, pd.DataFrame]) -> None:
    folder, rows = table
    dataset = Dataset.Tabular.from_parquet_files(str(folder / "*.parquet"))
    plan = prepare(step_for(source, [dataset], ["region"])).plan
    first = plan.mini_batches[0]
    north = rows.index[rows["region"] == "north"]
    assert first.item_labels() == (f"{folder / 'part-0.parquet'}#{north[0]}",
                                   f"{folder / 'part-2.parquet'}#{north[-1] - 240}")


def test_an_unknown_column_is_an_input_error_before_any_cluster(
        source: Path, table: tuple[Path, pd.DataFrame]) -> None:
    folder, _ = table
    dataset = Dataset.Tabular.from_parquet_files(str(folder / "*.parquet"))
    with pytest.raises(InputError) as info:
        prepare(step_for(source, [dataset.as_named_input("sales")], ["regoin"]))
    assert "partition_keys: 'regoin' is not a column of inputs[0] ('sales'" in str(info.value)
    assert "Use one of ['id', 'region', 'level']. Did you mean 'region'?" in str(info.value)


def test_a_dask_dataframe_input_cannot_be_split_by_key(source: Path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    frame = dd.from_pandas(keyed_frame(10, 0, 0), npartitions=2)
    with pytest.raises(ConfigError, match="cannot split a Dask DataFrame input"):
        step_for(source, [Dataset.Tabular.from_dask_dataframe(frame)], ["region"])


def test_partition_keys_named_twice_is_a_config_error(source: Path,
                                                      table: tuple[Path, pd.DataFrame]) -> None:
    dataset = Dataset.Tabular.from_parquet_files(str(table[0] / "*.parquet"))
    with pytest.raises(ConfigError, match="names a key twice"):
        step_for(source, [dataset], ["region", "region"])
