"""Tabular formats: metadata read at planning, and the reading of one mini-batch on a worker.

A mini-batch is read from its descriptor alone (:class:`~daskprs.inputs.plan.MiniBatch`);
reading never raises: an error travels in the frame's ``attrs`` for the wrapper to record,
and the frame of a failed read has one (empty) row per item the mini-batch holds, so the
items still count (as failed).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from daskprs.datasets import TabularDataset
from daskprs.errors import InputError
from daskprs.inputs.plan import KeyedSource, MiniBatch, TabularSource
from daskprs.inputs.records import row_starts

READ_ERROR = "daskprs.read_error"
READ_ITEMS = "daskprs.read_items"
MINI_BATCH = "daskprs.mini_batch"
DTYPE_SAMPLE_ROWS = 10_000


def parquet_footer(url: str, storage_options: dict[str, Any]) -> tuple[Any, Any]:
    """``(metadata, arrow schema)`` of a Parquet file.

    Raises
    ------
    InputError
        When the file is not readable Parquet.
    """
    try:
        with fsspec.open(url, "rb", **storage_options) as handle:
            parquet = pq.ParquetFile(handle)
            return parquet.metadata, parquet.schema_arrow
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"{url}: not a readable Parquet file ({type(exc).__name__}: {exc}). "
                         f"Remove it from the input or rewrite it.") from exc


def delimited_source(dataset: TabularDataset, url: str) -> tuple[TabularSource, pd.DataFrame]:
    """Infer dtypes once (first file, first 10,000 rows) unless given; return the source
    every mini-batch is read with and an empty frame of the input's columns.

    Raises
    ------
    InputError
        When the file cannot be parsed with the dataset's separator and header.
    """
    compression = "gzip" if url.lower().endswith(".gz") else None
    try:
        with fsspec.open(url, "rb", compression=compression, **dataset.storage_options) as f:
            sample = pd.read_csv(f, sep=dataset.separator, nrows=DTYPE_SAMPLE_ROWS,
                                 header=0 if dataset.header else None, dtype=dataset.dtype)
    except Exception as exc:
        raise InputError(f"{url}: cannot be read as delimited text ({type(exc).__name__}: "
                         f"{exc}). Check separator= and header=.") from exc
    dtypes = dict(sample.dtypes.items())
    source = TabularSource("delimited", dataset.storage_options, dataset.separator,
                           dataset.header, tuple(sample.columns), dtypes)
    return source, sample.iloc[:0]


def read_mini_batch(mini_batch: MiniBatch, submission: str = "") -> pd.DataFrame:
    """Read one mini-batch; never raises (a read error travels in ``attrs``).

    A failed read gives a frame without columns and with one row per item of the
    mini-batch (the planned count, else the rows counted in its file, at least 1);
    ``attrs[READ_ERROR]`` holds the error and ``attrs[READ_ITEMS]`` the count.
    ``submission`` only makes the task's key unique per submission.
    """
    try:
        frame = _READERS[mini_batch.source.format](mini_batch)
    except Exception as exc:
        items = _failed_items(mini_batch)
        frame = pd.DataFrame(index=pd.RangeIndex(items))
        frame.attrs[READ_ERROR] = f"{type(exc).__name__}: {exc}"
        frame.attrs[READ_ITEMS] = items
    frame.attrs[MINI_BATCH] = mini_batch
    return frame


def _failed_items(mini_batch: MiniBatch) -> int:
    """The items of a mini-batch that failed to read: every planned mini-batch holds rows,
    so at least 1 (a ``.gz`` file's rows are counted here, as far as it decompresses)."""
    if mini_batch.items is not None:
        return max(mini_batch.items, 1)
    source = mini_batch.source
    if getattr(source, "format", None) != "delimited" or mini_batch.path is None:
        return 1
    compression = "gzip" if mini_batch.path.lower().endswith(".gz") else None
    rows = -1 if source.header else 0
    opened = fsspec.open(mini_batch.path, "rb", compression=compression,
                         **source.storage_options)
    with contextlib.suppress(Exception), opened as handle:  # damaged: the rows before it
        for starts in row_starts(handle, source.separator):
            rows += len(starts)
    return max(rows, 1)


def tag_partition(frame: pd.DataFrame, mini_batches: list[MiniBatch], submission: str = "",
                  partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
    """Attach its descriptor to a partition of a Dask DataFrame input."""
    number = partition_info["number"] if partition_info else 0
    frame = frame.copy(deep=False)
    frame.attrs[MINI_BATCH] = mini_batches[number]
    return frame


def read_columns(source: TabularSource, path: str, columns: list[Any]) -> pd.DataFrame:
    """Every row of some columns of one file, with the dtypes mini-batches get."""
    if source.format == "parquet":
        with fsspec.open(path, "rb", **source.storage_options) as handle:
            return pq.read_table(handle, columns=columns).to_pandas()
    return _read_whole_delimited(path, source, columns)


def _read_parquet(mb: MiniBatch) -> pd.DataFrame:
    return _parquet_rows(mb.path, mb.source.storage_options, mb.start, mb.stop)  # type: ignore


def _parquet_rows(path: str, storage_options: dict[str, Any], start: int, stop: int
                  ) -> pd.DataFrame:
    """Rows ``[start, stop)`` of a Parquet file, reading only the row groups that hold them."""
    with fsspec.open(path, "rb", **storage_options) as handle:
        parquet = pq.ParquetFile(handle)
        groups, first = [], None
        row = 0
        for index in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(index).num_rows
            if row < stop and row + rows > start:
                groups.append(index)
                first = row if first is None else first
            row += rows
        table = parquet.read_row_groups(groups)
    return table.slice(start - (first or 0), stop - start).to_pandas()


def _read_delimited(mb: MiniBatch) -> pd.DataFrame:
    source: TabularSource = mb.source
    assert mb.path is not None
    if mb.path.lower().endswith(".gz"):
        return _read_whole_delimited(mb.path, source)
    # planning cut the file where rows start: the byte range holds whole rows
    with fsspec.open(mb.path, "rb", **source.storage_options) as handle:
        handle.seek(mb.start)
        data = handle.read(max(mb.stop - mb.start, 0))
    frame = pd.read_csv(io.BytesIO(data), **_csv_options(source))
    if mb.items is not None and len(frame) != mb.items:
        raise ValueError(f"{mb.path}: bytes {mb.start}..{mb.stop} hold {mb.items} rows by "
                         f"the planning pass but parse as {len(frame)}; the file changed "
                         f"since planning, or its line ends or quotes are ambiguous")
    return frame


def _read_whole_delimited(path: str, source: TabularSource,
                          columns: list[Any] | None = None) -> pd.DataFrame:
    compression = "gzip" if path.lower().endswith(".gz") else None
    with fsspec.open(path, "rb", compression=compression, **source.storage_options) as f:
        return pd.read_csv(f, skiprows=1 if source.header else 0, usecols=columns,
                           **_csv_options(source))


def _csv_options(source: TabularSource) -> dict[str, Any]:
    return dict(sep=source.separator, header=None, names=list(source.columns),
                dtype=source.dtypes)


def _read_pandas(mb: MiniBatch) -> pd.DataFrame:
    # a new frame: its attrs will name the descriptor, and the descriptor holds the payload
    # (the same object would make a cycle that pandas' attrs deep copy never ends)
    return mb.payload.copy(deep=False)


def _read_keyed(mb: MiniBatch) -> pd.DataFrame:
    """The rows of one partition key value: each file's row range, filtered, concatenated."""
    source: KeyedSource = mb.source
    frames = []
    for path, start, stop in source.pieces:
        if source.base.format == "parquet":
            rows = _parquet_rows(path, source.storage_options, start, stop)
        else:
            rows = _read_whole_delimited(path, source.base).iloc[start:stop]
        frames.append(rows[key_mask(rows, source.columns, source.values)])
    return pd.concat(frames, ignore_index=True)


def key_mask(frame: pd.DataFrame, columns: tuple[Any, ...], values: tuple[Any, ...]
             ) -> np.ndarray:
    """Which rows of ``frame`` hold ``values`` in ``columns`` (None matches missing)."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in zip(columns, values, strict=True):
        data = frame[column]
        mask &= (data.isna() if value is None else (data == value)).to_numpy(dtype=bool,
                                                                              na_value=False)
    return mask


_READERS = {"parquet": _read_parquet, "delimited": _read_delimited, "pandas": _read_pandas,
            "keyed": _read_keyed}
