"""Dataset: the inputs of a step, named as in Azure ML's SDK."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pandas as pd

from daskprs.errors import ConfigError, Problem

INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TabularFormat = Literal["parquet", "delimited", "pandas", "dask"]


@dataclass(frozen=True)
class DatasetBase:
    """What every dataset has: a name (None until named or numbered) and storage options."""

    name: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    kind = "base"

    def as_named_input(self, name: str) -> DatasetBase:
        """Return this dataset under ``name`` (``^[A-Za-z_][A-Za-z0-9_]*$``)."""
        if not isinstance(name, str) or not INPUT_NAME.match(name):
            fix = "Use letters, digits and _, not starting with a digit, e.g. 'iris'"
            raise ConfigError([Problem("as_named_input", "keyword argument",
                                       "is not a valid input name", name, fix)])
        return replace(self, name=name)


@dataclass(frozen=True)
class TabularDataset(DatasetBase):
    """A table: Parquet or delimited files, or a pandas or Dask DataFrame."""

    format: TabularFormat = "parquet"
    paths: tuple[str, ...] = ()
    separator: str = ","
    header: bool = True
    dtype: dict[str, Any] | None = None
    frame: Any = field(default=None, repr=False, compare=False)

    kind = "tabular"

    def describe(self) -> str:
        """A short description for messages."""
        if self.format in ("pandas", "dask"):
            return f"a {self.format} DataFrame"
        return ", ".join(self.paths)


@dataclass(frozen=True)
class FileDataset(DatasetBase):
    """A set of files: a glob, a folder, or a list of them."""

    paths: tuple[str, ...] = ()
    partition_format: str | None = None
    mode: Literal["download", "uri"] = "download"

    kind = "file"

    def as_uri(self) -> FileDataset:
        """Pass URLs to ``run()`` instead of downloading the files first."""
        return replace(self, mode="uri")

    def as_download(self) -> FileDataset:
        """Download remote files before ``run()`` (the default)."""
        return replace(self, mode="download")

    def describe(self) -> str:
        """A short description for messages."""
        return ", ".join(self.paths)


def _paths(path: str | os.PathLike[str] | list[Any] | tuple[Any, ...]) -> tuple[str, ...]:
    items = path if isinstance(path, (list, tuple)) else [path]
    return tuple(os.fspath(p) for p in items)


class _Tabular:
    """Factories of tabular datasets, as ``Dataset.Tabular``."""

    @staticmethod
    def from_parquet_files(path: str | list[str], storage_options: dict[str, Any] | None = None
                           ) -> TabularDataset:
        """Parquet files: a path, glob, folder, URL or a list of them."""
        return TabularDataset(format="parquet", paths=_paths(path),
                              storage_options=dict(storage_options or {}))

    @staticmethod
    def from_delimited_files(path: str | list[str], separator: str = ",", header: bool = True,
                             dtype: dict[str, Any] | None = None,
                             storage_options: dict[str, Any] | None = None) -> TabularDataset:
        """CSV or other delimited files; dtypes are inferred once unless given."""
        return TabularDataset(format="delimited", paths=_paths(path), separator=separator,
                              header=header, dtype=dtype,
                              storage_options=dict(storage_options or {}))

    @staticmethod
    def from_pandas_dataframe(df: pd.DataFrame) -> TabularDataset:
        """An in-memory pandas DataFrame, split by ``mini_batch_size``."""
        if not isinstance(df, pd.DataFrame):
            raise ConfigError([Problem("from_pandas_dataframe", "keyword argument",
                                       "needs a pandas DataFrame", type(df).__name__,
                                       "Pass a pandas.DataFrame")])
        return TabularDataset(format="pandas", frame=df)

    @staticmethod
    def from_dask_dataframe(ddf: Any) -> TabularDataset:
        """A Dask DataFrame: one mini-batch per existing partition."""
        if not hasattr(ddf, "npartitions") or not hasattr(ddf, "to_delayed"):
            raise ConfigError([Problem("from_dask_dataframe", "keyword argument",
                                       "needs a dask DataFrame", type(ddf).__name__,
                                       "Pass a dask.dataframe.DataFrame")])
        return TabularDataset(format="dask", frame=ddf)


class _File:
    """Factories of file datasets, as ``Dataset.File``."""

    @staticmethod
    def from_files(path: str | list[str], partition_format: str | None = None,
                   storage_options: dict[str, Any] | None = None) -> FileDataset:
        """Files: a glob, a folder (every file below it), a URL or a list of them."""
        return FileDataset(paths=_paths(path), partition_format=partition_format,
                           storage_options=dict(storage_options or {}))

    @staticmethod
    def from_file_list(path: str, storage_options: dict[str, Any] | None = None
                       ) -> FileDataset:
        """The files a text file lists, one path a line (e.g. ``logs/failed_items.txt``);
        ``storage_options`` serve the list and the files."""
        options = dict(storage_options or {})
        return FileDataset(paths=read_file_list(path, options), storage_options=options)


def read_file_list(path: str, storage_options: dict[str, Any] | None = None
                   ) -> tuple[str, ...]:
    """The paths a text file lists, one a line (blank lines and ``#`` lines skipped);
    relative local paths are taken from the list's folder.

    Raises
    ------
    ConfigError
        When the list cannot be read or names no file.
    """
    import fsspec

    try:
        with fsspec.open(path, "rt", encoding="utf-8", **(storage_options or {})) as handle:
            lines = [line.strip() for line in handle]
    except (OSError, ValueError) as exc:
        raise ConfigError([Problem("from_file_list", "keyword argument",
                                   f"cannot be read ({type(exc).__name__}: {exc})", path,
                                   "Give a text file of paths, one a line, e.g. "
                                   "out/logs/failed_items.txt")]) from exc
    paths = [line for line in lines if line and not line.startswith("#")]
    if not paths:
        raise ConfigError([Problem("from_file_list", "keyword argument", "lists no file", path,
                                   "Give a text file of paths, one a line")])
    folder = os.path.dirname(os.path.abspath(path)) if "://" not in path else None
    return tuple(os.path.join(folder, p) if folder and "://" not in p and not os.path.isabs(p)
                 else p for p in paths)


class Dataset:
    """Entry point to the dataset factories: ``Dataset.Tabular`` and ``Dataset.File``."""

    Tabular = _Tabular
    File = _File
