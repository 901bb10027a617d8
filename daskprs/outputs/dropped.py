"""Which items ``run()`` dropped, when its results say so.

A mini-batch that succeeded with fewer results than items dropped some; a result carries
no item, but it often carries the item's identity: a DataFrame with the input's ``id``
column, a list of the input's ids, the file names or paths of a file mini-batch. Its
committed result is read back and matched against the mini-batch's items; the match is
trusted only when one result column holds values of one input column whose values are
unique, and exactly the dropped count of items is left over. Otherwise nothing is
identified and the mini-batch alone is named.
"""

from __future__ import annotations

import io
import os
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from daskprs.commit import BundleReader


def read_result(bundles: BundleReader, record: dict[str, Any], action: str,
                separator: str) -> pd.DataFrame | None:
    """A committed result as text columns (as written), or None when there is none."""
    if not record.get("payload") or not record.get("bundle"):
        return None
    data = bundles.payload(record)
    if action == "parquet":
        return pq.read_table(io.BytesIO(data)).to_pandas().astype(str)
    if action != "append_row":
        return None
    frame = pd.read_csv(io.BytesIO(data), sep=separator, header=None, dtype=str,
                        keep_default_na=False)
    names = record.get("columns")
    if names and len(names) == frame.shape[1]:
        frame.columns = names
    return frame


def dropped_rows(result: pd.DataFrame, items: pd.DataFrame, dropped: int) -> list[int] | None:
    """Positions (from 0 in the mini-batch) of the rows missing from ``result``: a result
    column is matched with the input column of its name, else with each input column
    (results that are lists, or Parquet's ``result`` column)."""
    for column in result.columns:
        candidates = [column] if column in items.columns else list(items.columns)
        for source in candidates:
            missing = _missing(result[column], items[source].astype(str).tolist(), dropped)
            if missing is not None:
                return missing
    return None


def dropped_files(result: pd.DataFrame, paths: list[str], dropped: int) -> list[int] | None:
    """Positions of the files of a mini-batch missing from ``result`` (by path or name)."""
    names = [os.path.basename(p.rstrip("/")) for p in paths]
    for column in result.columns:
        for keys in (paths, names):
            missing = _missing(result[column], keys, dropped)
            if missing is not None:
                return missing
    return None


def _missing(values: pd.Series, keys: list[str], dropped: int) -> list[int] | None:
    if len(set(keys)) != len(keys):
        return None
    found = set(values.tolist())
    if not found <= set(keys):
        return None
    missing = [position for position, key in enumerate(keys) if key not in found]
    return missing if len(missing) == dropped else None


__all__ = ["dropped_files", "dropped_rows", "read_result"]
