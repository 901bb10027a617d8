"""``partition_keys``: one mini-batch per distinct key value, instead of ``mini_batch_size``.

File inputs: the keys are fields of the input's ``partition_format``, parsed from each path
(:mod:`daskprs.inputs.partition_format`); a mini-batch holds the files of one combination,
in path order, and its ``partition_key_value`` maps each key to a string (a datetime for a
``{name:yyyy/MM/dd}`` field).

Tabular inputs: the keys are columns. One pass reads only the key columns of every file and
finds each value's rows. A value whose rows lie in several files is still one mini-batch: its
descriptor lists, per file, the row range that holds the value's rows, and the reader keeps
the rows of that value from each range and concatenates them in file order (so a keyed
mini-batch is the one kind that spans files). Missing values (NaN, None, NaT) form one value
of their own, given as None. Values are sorted (missing last); ordinals follow that order.

Cost: planning reads the key columns of every file once. A Parquet mini-batch reads the row
groups of its row ranges, so data sorted or clustered by key reads little; a CSV mini-batch
parses each file that holds its value in full. With many key values over large CSV files,
write the data to Parquet sorted by key first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from daskprs.datasets import FileDataset, TabularDataset
from daskprs.errors import InputError
from daskprs.inputs.formats import delimited_source, parquet_footer, read_columns
from daskprs.inputs.listing import DELIMITED_SUFFIXES, PARQUET_SUFFIXES, ListedFile, list_input
from daskprs.inputs.partition_format import parse_partition_format
from daskprs.inputs.plan import FileSource, KeyedSource, MiniBatch, Plan, TabularSource, add_pieces
from daskprs.sizes import MiniBatchSize
from daskprs.validation import Checker, did_you_mean

logger = logging.getLogger(__name__)
KeyValue = tuple[Any, ...]


@dataclass(frozen=True)
class PartitionKeys(MiniBatchSize):
    """How a step with ``partition_keys`` is split: one mini-batch per distinct key value.

    It stands where a parsed ``mini_batch_size`` stands, so the planners see it.

    Parameters
    ----------
    keys
        Column names (tabular) or ``partition_format`` fields (files).
    ignored
        The ``mini_batch_size`` the user gave, if any: ignored, with a warning at planning.
    """

    keys: tuple[str, ...] = ()
    ignored: Any = None

    def __str__(self) -> str:
        return f"partition_keys {list(self.keys)} (one per distinct value)"


def partition_split(keys: Iterable[str], kind: str, mini_batch_size: Any) -> PartitionKeys:
    """The split of a step whose config has ``partition_keys``."""
    return PartitionKeys(1, "files" if kind == "file" else "rows", tuple(keys), mini_batch_size)


def check_partition_keys(checker: Checker, keys: list[str], inputs: list[Any], kind: str,
                         mini_batch_size: Any, prefix: str = "") -> PartitionKeys | None:
    """Check ``partition_keys`` against the inputs without reading data; return the split.

    File inputs need a ``partition_format`` naming every key; a Dask DataFrame input
    cannot be split by key. Columns of tabular files are checked at planning.
    """
    parameter = f"{prefix}partition_keys"
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        checker.add(parameter, "names a key twice", keys,
                    f"Give each key once: {list(dict.fromkeys(keys))!r}")
    example = "/" + "/".join(f"{{{k}}}" for k in dict.fromkeys(keys)) + "/"
    problems = len(checker.problems)
    for position, dataset in enumerate(inputs):
        if isinstance(dataset, TabularDataset) and dataset.format == "dask":
            checker.add(parameter, f"cannot split a Dask DataFrame input (inputs[{position}]) "
                        "by key", keys, "Write it to Parquet (ddf.to_parquet('data/')) and use "
                        "Dataset.Tabular.from_parquet_files('data/'), or pass "
                        "Dataset.Tabular.from_pandas_dataframe(ddf.compute())")
        if not isinstance(dataset, FileDataset):
            continue
        where = f"inputs[{position}].partition_format"
        if dataset.partition_format is None:
            checker.add(where, "is required by partition_keys for a file input (the keys are "
                        "its fields)", None, f"Give Dataset.File.from_files(..., "
                        f"partition_format={example!r}) or, in YAML, partition_format: "
                        f"{example!r}")
            continue
        try:
            fields = parse_partition_format(dataset.partition_format).fields
        except ValueError as exc:
            checker.add(where, str(exc), dataset.partition_format,
                        f"Write fields as in {example!r}")
            continue
        for key in keys:
            if key not in fields:
                checker.add(parameter, f"names {key!r}, which is not a field of "
                            f"{where} {dataset.partition_format!r}", keys,
                            f"Use fields of the format {list(fields)!r}, or add "
                            f"{{{key}}} to it.{did_you_mean(key, fields)}")
    if len(checker.problems) > problems or duplicates:
        return None
    return partition_split(keys, kind, mini_batch_size)


def plan_keyed_files(datasets: list[FileDataset], split: PartitionKeys) -> Plan:
    """One mini-batch per distinct combination of the key fields, per input.

    Raises
    ------
    InputError
        When an input matches no files, or a file does not match its ``partition_format``.
    """
    _warn_ignored(split)
    batches: list[MiniBatch] = []
    listing: list[tuple[str, int, str]] = []
    for position, dataset in enumerate(datasets):
        where = f"inputs[{position}] ({dataset.name!r}) partition_format"
        try:
            layout = parse_partition_format(dataset.partition_format)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InputError(f"{where}: {exc}, got {dataset.partition_format!r}. Write fields "
                             f"as in '/{{region}}/{{day}}/'.") from exc
        files = list_input(dataset.paths, dataset.storage_options, None,
                           f"input {dataset.name!r}")
        groups: dict[KeyValue, list[ListedFile]] = {}
        unmatched = []
        for listed in files:
            try:
                fields = layout.values(listed.relative, listed.url)
            except ValueError as exc:
                raise InputError(f"{where}: {listed.url} holds an impossible date ({exc}), "
                                 f"got {layout.text!r}. Fix the folder name or the format."
                                 ) from exc
            if fields is None:
                unmatched.append(listed.relative)
                continue
            groups.setdefault(tuple(fields[k] for k in split.keys), []).append(listed)
        if unmatched:
            raise InputError(
                f"{where}: {len(unmatched)} of {len(files)} files do not match it (paths are "
                f"relative to the input root), got {layout.text!r} for {unmatched[:3]!r}. "
                f"Describe the path to its end (a trailing / takes every file below, as in "
                f"'/{{region}}/{{day}}/'), or narrow the input's path to the files that match.")
        source = FileSource(dataset.storage_options, dataset.mode)
        for ordinal, key in enumerate(sort_key_values(groups)):
            members = groups[key]
            batches.append(MiniBatch(index=len(batches), id=f"{dataset.name}-{ordinal}",
                                     input_name=str(dataset.name), source=source,
                                     paths=tuple(f.url for f in members),
                                     relatives=tuple(f.relative for f in members),
                                     items=len(members),
                                     partition_key_value=dict(zip(split.keys, key,
                                                                  strict=True))))
        listing.extend((f.url, f.size, f.version) for f in files)
    return Plan(kind="file", mini_batches=batches, listing=listing)


def plan_keyed_tabular(datasets: list[TabularDataset], split: PartitionKeys) -> Plan:
    """One mini-batch per distinct value of the key columns, per input.

    Raises
    ------
    InputError
        When an input matches no rows, or a key is not one of its columns.
    """
    _warn_ignored(split)
    batches: list[MiniBatch] = []
    listing: list[tuple[str, int, str]] = []
    meta = None
    for position, dataset in enumerate(datasets):
        if dataset.format == "pandas":
            pieces, input_meta = _keyed_pandas(dataset, split, position)
        else:
            pieces, input_meta, files = _keyed_files(dataset, split, position)
            listing.extend((f.url, f.size, f.version) for f in files)
        add_pieces(batches, dataset, pieces)
        meta = input_meta if meta is None else meta
    return Plan(kind="tabular", mini_batches=batches, meta=meta, listing=listing)


def _keyed_files(dataset: TabularDataset, split: PartitionKeys, position: int
                 ) -> tuple[list[dict[str, Any]], pd.DataFrame, list[Any]]:
    if dataset.format == "parquet":
        files = list_input(dataset.paths, dataset.storage_options, PARQUET_SUFFIXES,
                           f"input {dataset.name!r}")
        meta = parquet_footer(files[0].url, dataset.storage_options)[1].empty_table().to_pandas()
        source = TabularSource("parquet", dataset.storage_options)
    else:
        files = list_input(dataset.paths, dataset.storage_options, DELIMITED_SUFFIXES,
                           f"input {dataset.name!r}")
        source, meta = delimited_source(dataset, files[0].url)
    columns = _key_columns(meta, split.keys, dataset, position)
    where: dict[KeyValue, list[tuple[str, np.ndarray]]] = {}
    for listed in files:
        try:
            keys = read_columns(source, listed.url, list(columns))
        except Exception as exc:
            raise InputError(f"{listed.url}: the key columns {list(columns)} cannot be read "
                             f"({type(exc).__name__}: {exc}). Check that every file of input "
                             f"{dataset.name!r} has them.") from exc
        for value, rows in group_rows(keys, columns):
            where.setdefault(value, []).append((listed.url, rows))
    pieces = []
    for value in sort_key_values(where):
        parts = where[value]
        ranges = tuple((url, int(rows[0]), int(rows[-1]) + 1) for url, rows in parts)
        labels = (f"{ranges[0][0]}#{ranges[0][1]}", f"{ranges[-1][0]}#{ranges[-1][2] - 1}")
        pieces.append(dict(source=KeyedSource(source, ranges, columns, value),
                           path=ranges[0][0], start=ranges[0][1], stop=ranges[0][2],
                           first_row=ranges[0][1], items=sum(len(rows) for _, rows in parts),
                           labels=labels,
                           partition_key_value=dict(zip(split.keys, value, strict=True))))
    return pieces, meta, files


def _keyed_pandas(dataset: TabularDataset, split: PartitionKeys, position: int
                  ) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    frame: pd.DataFrame = dataset.frame
    columns = _key_columns(frame, split.keys, dataset, position)
    groups = dict(group_rows(frame[list(columns)], columns))
    source = TabularSource("pandas")
    pieces = []
    for value in sort_key_values(groups):
        rows = groups[value]
        pieces.append(dict(source=source, start=int(rows[0]), stop=int(rows[-1]) + 1,
                           first_row=int(rows[0]), items=len(rows), payload=frame.iloc[rows],
                           labels=(f"{dataset.name}#{int(rows[0])}",
                                   f"{dataset.name}#{int(rows[-1])}"),
                           partition_key_value=dict(zip(split.keys, value, strict=True))))
    return pieces, frame.iloc[:0]


def _key_columns(meta: pd.DataFrame, keys: tuple[str, ...], dataset: TabularDataset,
                 position: int) -> tuple[Any, ...]:
    """The input's column for each key (matched by name); InputError for an unknown key."""
    names = {str(column): column for column in meta.columns}
    for key in keys:
        if key not in names:
            raise InputError(
                f"partition_keys: {key!r} is not a column of inputs[{position}] "
                f"({dataset.name!r}: {dataset.describe()}), got {key!r}. Use one of "
                f"{list(names)}.{did_you_mean(key, names)}")
    return tuple(names[key] for key in keys)


def group_rows(frame: pd.DataFrame, columns: tuple[Any, ...]
               ) -> list[tuple[KeyValue, np.ndarray]]:
    """Each distinct value of ``columns`` with the (sorted) positions of its rows; a missing
    value is one value of its own, given as None."""
    if frame.empty:
        return []
    grouped = frame.groupby(list(columns), dropna=False, sort=False, observed=True)
    found = []
    for rows in grouped.indices.values():
        first = int(rows[0])
        found.append((tuple(plain_value(frame[c].iloc[first]) for c in columns),
                      np.sort(rows)))
    return found


def plain_value(value: Any) -> Any:
    """A key value as ``partition_key_value`` gives it: None if missing, numpy scalars as
    Python scalars."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def sort_key_values(values: Iterable[KeyValue]) -> list[KeyValue]:
    """Key values sorted element by element, missing (None) last; values of mixed types
    fall back to sorting by type name and text."""
    values = list(values)
    try:
        return sorted(values, key=lambda v: tuple((x is None, 0 if x is None else x) for x in v))
    except TypeError:
        return sorted(values, key=lambda v: tuple((x is None, type(x).__name__, str(x))
                                                  for x in v))


def _warn_ignored(split: PartitionKeys) -> None:
    if split.ignored is not None:
        logger.warning("mini_batch_size %r is ignored: partition_keys %s make one mini-batch "
                       "per distinct key value", split.ignored, list(split.keys))
