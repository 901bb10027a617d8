"""Tabular formats: metadata read at planning, and the reading of one mini-batch on a worker.

A mini-batch is read from its descriptor alone (:class:`~daskprs.inputs.plan.MiniBatch`);
reading never raises: an error travels in the frame's ``attrs`` for the wrapper to record.
"""

from __future__ import annotations

import io
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from daskprs.datasets import TabularDataset
from daskprs.errors import InputError
from daskprs.inputs.plan import KeyedSource, MiniBatch, TabularSource

READ_ERROR = "daskprs.read_error"
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

    ``submission`` only makes the task's key unique per submission.
    """
    try:
        frame = _READERS[mini_batch.source.format](mini_batch)
    except Exception as exc:
        frame = pd.DataFrame()
        frame.attrs[READ_ERROR] = f"{type(exc).__name__}: {exc}"
    frame.attrs[MINI_BATCH] = mini_batch
    return frame


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
    with fsspec.open(mb.path, "rb", **source.storage_options) as handle:
        begin = _line_start_at(handle, mb.start)
        if mb.start == 0 and source.header:
            handle.seek(0)
            handle.readline()
            begin = handle.tell()
        end = _line_start_at(handle, mb.stop)
        handle.seek(begin)
        data = handle.read(max(end - begin, 0))
    if not data.strip():
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (source.dtypes or {}).items()})
    return pd.read_csv(io.BytesIO(data), **_csv_options(source))


def _read_whole_delimited(path: str, source: TabularSource,
                          columns: list[Any] | None = None) -> pd.DataFrame:
    compression = "gzip" if path.lower().endswith(".gz") else None
    with fsspec.open(path, "rb", compression=compression, **source.storage_options) as f:
        return pd.read_csv(f, skiprows=1 if source.header else 0, usecols=columns,
                           **_csv_options(source))


def _csv_options(source: TabularSource) -> dict[str, Any]:
    return dict(sep=source.separator, header=None, names=list(source.columns),
                dtype=source.dtypes)


def _line_start_at(handle: Any, offset: int) -> int:
    """The first line start at or after ``offset``."""
    if offset == 0:
        return 0
    handle.seek(offset - 1)
    handle.readline()
    return handle.tell()


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
