"""How many items a ``run()`` result covers, and how it is written."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa


def result_length(result: Any) -> int:
    """Items covered by a result (its first axis)."""
    return int(result.shape[0]) if isinstance(result, np.ndarray) else len(result)


def append_row_bytes(result: Any, separator: str) -> bytes:
    """Format a result as ``append_row`` lines (``str(x)`` per element, CSV rows for frames)."""
    if isinstance(result, pd.DataFrame):
        buffer = io.StringIO()
        result.to_csv(buffer, sep=separator, header=False, index=False, lineterminator="\n")
        return buffer.getvalue().encode("utf-8")
    values = result.tolist() if isinstance(result, (np.ndarray, pd.Series)) else result
    return "".join(f"{value}\n" for value in values).encode("utf-8")


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
