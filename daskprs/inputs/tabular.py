"""Tabular inputs: plan mini-batches from metadata, and read one mini-batch on a worker.

Bytes are estimated, never measured by reading the data: Parquet column chunks'
``total_uncompressed_size`` from the footer, CSV file bytes, pandas
``memory_usage(deep=True)``. CSV files (not ``.gz``) are cut only where a row starts, found
by one quote-aware pass over each file, which also counts every mini-batch's rows (so a
quoted field holding a line end stays whole, and a mini-batch that fails to read still
counts its rows as failed items). A mini-batch never spans two files, except with
``partition_keys`` (one mini-batch per key value: :mod:`daskprs.inputs.partitions`). The
readers are in :mod:`daskprs.inputs.formats`.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from daskprs.datasets import TabularDataset
from daskprs.errors import InputError
from daskprs.inputs.formats import (
    MINI_BATCH,
    READ_ERROR,
    READ_ITEMS,
    delimited_source,
    parquet_footer,
    read_mini_batch,
    tag_partition,
)
from daskprs.inputs.listing import DELIMITED_SUFFIXES, PARQUET_SUFFIXES, ListedFile, list_input
from daskprs.inputs.partitions import PartitionKeys, plan_keyed_tabular
from daskprs.inputs.plan import MiniBatch, Plan, TabularSource, add_pieces
from daskprs.inputs.records import row_starts
from daskprs.sizes import MiniBatchSize

__all__ = ["MINI_BATCH", "READ_ERROR", "READ_ITEMS", "TabularSource", "plan_tabular",
           "read_mini_batch", "tag_partition"]

logger = logging.getLogger(__name__)


def plan_tabular(datasets: list[TabularDataset], size: MiniBatchSize) -> Plan:
    """Plan the mini-batches of tabular inputs (in input order, ordinals from 0).

    Raises
    ------
    InputError
        When an input matches no files or no rows, or its files cannot be read, or a
        partition key is not one of its columns.
    """
    if isinstance(size, PartitionKeys):
        return plan_keyed_tabular(datasets, size)
    batches: list[MiniBatch] = []
    listing: list[tuple[str, int, str]] = []
    meta = None
    for dataset in datasets:
        planner = _PLANNERS[dataset.format]
        pieces, input_meta, files = planner(dataset, size)
        add_pieces(batches, dataset, pieces)
        listing.extend((f.url, f.size, f.version) for f in files)
        meta = input_meta if meta is None else meta
    return Plan(kind="tabular", mini_batches=batches, meta=meta, listing=listing)


def _plan_parquet(dataset: TabularDataset, size: MiniBatchSize
                  ) -> tuple[list[dict[str, Any]], pd.DataFrame, list[ListedFile]]:
    files = list_input(dataset.paths, dataset.storage_options, PARQUET_SUFFIXES,
                       f"input {dataset.name!r}")
    source = TabularSource("parquet", dataset.storage_options)
    pieces: list[dict[str, Any]] = []
    schemas: dict[str, Any] = {}
    for listed in files:
        metadata, schema = parquet_footer(listed.url, dataset.storage_options)
        schemas[listed.url] = schema
        for start, stop in _parquet_ranges(metadata, size, listed.url):
            pieces.append(dict(source=source, path=listed.url, start=start, stop=stop,
                               first_row=start, items=stop - start))
    meta = _common_schema(dataset, schemas).empty_table().to_pandas()
    return pieces, meta, files


def _common_schema(dataset: TabularDataset, schemas: dict[str, Any]) -> Any:
    """One schema for an input's Parquet files: their own when all agree; else the files'
    schemas unified (a warning: each mini-batch keeps its file's columns); files whose
    columns conflict are an InputError naming both."""
    import pyarrow as pa

    first_url, first = next(iter(schemas.items()))
    differing = [(url, schema) for url, schema in schemas.items()
                 if not schema.remove_metadata().equals(first.remove_metadata())]
    if not differing:
        return first
    url, other = differing[0]
    try:
        unified = pa.unify_schemas([first, *(s for _, s in differing)],
                                   promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(
            f"input {dataset.name!r}: its Parquet files have conflicting schemas ({exc}), got "
            f"{first_url} ({_fields(first)}) and {url} ({_fields(other)}). Give the files "
            f"one schema, or make them separate inputs.") from exc
    logger.warning("input %r: %d of %d Parquet files have another schema than %s (%s), e.g. "
                   "%s (%s); each mini-batch has its own file's columns, the job lists them "
                   "all", dataset.name, len(differing), len(schemas), first_url,
                   _fields(first), url, _fields(other))
    return unified


def _fields(schema: Any) -> str:
    return ", ".join(f"{field.name}: {field.type}" for field in schema)


def _parquet_ranges(metadata: Any, size: MiniBatchSize, url: str) -> list[tuple[int, int]]:
    total = metadata.num_rows
    if size.unit == "rows":
        return [(start, min(start + size.count, total)) for start in range(0, total, size.count)]
    ranges: list[tuple[int, int]] = []
    row = 0
    group_start, group_bytes = 0, 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        nbytes = sum(group.column(c).total_uncompressed_size for c in range(group.num_columns))
        if nbytes > size.count:
            if group_start < row:
                ranges.append((group_start, row))
            if nbytes > 4 * size.count:
                logger.warning("%s: row group %d holds %d bytes, over 4x mini_batch_size "
                               "(%d); each slice of it reads the whole group", url, index,
                               nbytes, size.count)
            slices = math.ceil(nbytes / size.count)
            step = math.ceil(group.num_rows / slices)
            end = row + group.num_rows
            ranges.extend((s, min(s + step, end)) for s in range(row, end, step))
            row, group_start, group_bytes = end, end, 0
            continue
        if group_bytes + nbytes > size.count and group_start < row:
            ranges.append((group_start, row))
            group_start, group_bytes = row, 0
        group_bytes += nbytes
        row += group.num_rows
    if group_start < row:
        ranges.append((group_start, row))
    return [r for r in ranges if r[1] > r[0]]


def _plan_delimited(dataset: TabularDataset, size: MiniBatchSize
                    ) -> tuple[list[dict[str, Any]], pd.DataFrame, list[ListedFile]]:
    files = list_input(dataset.paths, dataset.storage_options, DELIMITED_SUFFIXES,
                       f"input {dataset.name!r}")
    empty = [listed.url for listed in files if listed.size == 0]
    if empty:  # one rule wherever they sort: a 0-byte file holds no rows
        logger.warning("input %r: skipping %d empty (0-byte) file(s): %s", dataset.name,
                       len(empty), ", ".join(empty[:5]))
        files = [listed for listed in files if listed.size > 0]
    if not files:
        raise InputError(f"input {dataset.name!r} ({dataset.describe()}) has no rows: its "
                         f"files are empty. Point it at data that has rows.")
    source, meta = delimited_source(dataset, files[0].url)
    pieces: list[dict[str, Any]] = []
    for listed in files:
        if listed.url.lower().endswith(".gz"):
            pieces.append(dict(source=source, path=listed.url, start=0, stop=listed.size,
                               first_row=0))
        else:
            pieces.extend(_csv_pieces(source, listed, size))
    return pieces, meta, files


def _csv_pieces(source: TabularSource, listed: ListedFile, size: MiniBatchSize
                ) -> list[dict[str, Any]]:
    """Cut a file where rows start (one quote-aware pass, :mod:`daskprs.inputs.records`):
    every ``N`` rows, or at the first row starting in each block of ``N`` bytes."""
    cuts: list[tuple[int, int]] = []  # (byte offset, row number) where a piece starts
    rows, block, header = 0, -1, source.header
    with fsspec.open(listed.url, "rb", **source.storage_options) as handle:
        for starts in row_starts(handle, source.separator):
            if header:
                starts, header = starts[1:], False
            numbers = rows + np.arange(len(starts))
            if size.unit == "rows":
                first = numbers % size.count == 0
            else:
                blocks = starts // size.count
                first = blocks != np.concatenate([[block], blocks[:-1]])
                block = int(blocks[-1]) if len(blocks) else block
            cuts.extend(zip(starts[first].tolist(), numbers[first].tolist(), strict=True))
            rows += len(starts)
    bounds = [*cuts, (listed.size, rows)]
    return [dict(source=source, path=listed.url, start=start, stop=stop, first_row=first,
                 items=end - first)
            for (start, first), (stop, end) in itertools.pairwise(bounds)]


def _plan_pandas(dataset: TabularDataset, size: MiniBatchSize
                 ) -> tuple[list[dict[str, Any]], pd.DataFrame, list[ListedFile]]:
    frame: pd.DataFrame = dataset.frame
    if size.unit == "rows":
        step = size.count
    else:
        per_row = frame.memory_usage(deep=True, index=False).sum() / max(len(frame), 1)
        step = max(1, int(size.count // max(per_row, 1)))
    source = TabularSource("pandas")
    pieces = [dict(source=source, start=start, stop=min(start + step, len(frame)),
                   first_row=start, items=min(start + step, len(frame)) - start,
                   payload=frame.iloc[start:start + step])
              for start in range(0, len(frame), step)]
    return pieces, frame.iloc[:0], []


def _plan_dask(dataset: TabularDataset, size: MiniBatchSize
               ) -> tuple[list[dict[str, Any]], pd.DataFrame, list[ListedFile]]:
    logger.warning("mini_batch_size is ignored for a Dask DataFrame input: one mini-batch per "
                   "partition (%d)", dataset.frame.npartitions)
    source = TabularSource("dask")
    pieces = [dict(source=source, start=i, stop=i + 1) for i in range(dataset.frame.npartitions)]
    return pieces, dataset.frame._meta, []


_PLANNERS = {"parquet": _plan_parquet, "delimited": _plan_delimited, "pandas": _plan_pandas,
             "dask": _plan_dask}
