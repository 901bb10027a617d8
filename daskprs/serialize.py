"""How many items a ``run()`` result covers, and how it is written.

``append_row`` lines are CSV with ``csv.QUOTE_MINIMAL`` semantics: a value is written as
``str(value)`` (so plain numbers and words look as Azure writes them) and quoted only when it
holds the separator, a quote or a line end (``"`` doubled inside), so ``pd.read_csv(path,
sep=separator, header=None)`` and :meth:`JobResult.read_output` give every value back. The
column names of DataFrame results are not in the file; they travel in the commit record
(:func:`result_columns`) and ``job_result.json`` (:class:`OutputColumns`).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa


def result_length(result: Any) -> int:
    """Items covered by a result (its first axis)."""
    return int(result.shape[0]) if isinstance(result, np.ndarray) else len(result)


def append_row_bytes(result: Any, separator: str) -> bytes:
    """Format a result as ``append_row`` lines: ``str(x)`` per element, CSV rows for
    frames, quoted where a value holds the separator, a quote or a line end."""
    if isinstance(result, pd.DataFrame):
        return _frame_lines(result, separator).encode("utf-8")
    values = result.tolist() if isinstance(result, (np.ndarray, pd.Series)) else result
    special = re.compile(f'[{re.escape(separator)}"\r\n]')
    return "".join(f"{_field(str(value), special)}\n" for value in values).encode("utf-8")


def _field(text: str, special: re.Pattern[str]) -> str:
    """One value as a CSV field; an empty string is quoted so its line is not blank."""
    if text and special.search(text) is None:
        return text
    return '"' + text.replace('"', '""') + '"'


def _frame_lines(frame: pd.DataFrame, separator: str) -> str:
    options = dict(sep=separator, header=False, index=False, lineterminator="\n")
    text = frame.to_csv(**options)
    if "\r" in text:  # csv quotes only the line terminator's characters: not a lone \r
        text = frame.to_csv(quoting=csv.QUOTE_NONNUMERIC, **options)
    return text


def result_columns(result: Any) -> list[Any] | None:
    """The column names of a DataFrame result (str or int, as JSON keeps them), else None."""
    if not isinstance(result, pd.DataFrame):
        return None
    return [name if isinstance(name, (str, int)) and not isinstance(name, bool) else str(name)
            for name in result.columns]


class OutputColumns:
    """The column names of an ``append_row`` file, from the results written to it.

    Known when every result written is a DataFrame and all have the same names; else None
    (the file's columns are then numbered, as ``pd.read_csv(header=None)`` numbers them).
    """

    def __init__(self) -> None:
        self.names: list[Any] | None = None
        self._agreed = True

    def add(self, names: list[Any] | None) -> None:
        """Take the column names of the next result written (None: not a DataFrame)."""
        if not self._agreed:
            return
        if names is None or (self.names is not None and list(names) != self.names):
            self.names, self._agreed = None, False
        else:
            self.names = list(names)


def result_table(result: Any) -> pa.Table:
    """A result as an Arrow table: frames as they are, anything else as column ``result``."""
    if isinstance(result, pd.DataFrame):
        return pa.Table.from_pandas(result, preserve_index=False)
    values = result.tolist() if isinstance(result, (np.ndarray, pd.Series)) else list(result)
    return pa.table({"result": pa.array(values)})


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as Parquet file bytes."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
