"""MLTable folders as inputs, read with pyyaml (no azureml-dataprep).

An MLTable folder holds a file named ``MLTable``::

    paths:
      - file: ./iris.csv            # one file
      - folder: ./more              # every file below a folder
      - pattern: ./**/*.csv         # a glob
    transformations:
      - read_delimited: {delimiter: ",", encoding: utf8, header: all_files_same_headers}
      # or: - read_parquet: {}

With ``read_delimited`` or ``read_parquet`` it is a tabular input; with no
transformations it is a file input (the files of its paths). Paths are relative to the
folder. After the read step, ``extract_columns_from_partition_format``, ``drop_columns`` and
``keep_columns`` are applied too; the table is then read whole into the client's memory
(a warning says so), as the column values come from the paths. Anything else daskprs
cannot honour is a ConfigError naming the key.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import fsspec
import pandas as pd
import yaml

from daskprs.datasets import Dataset, DatasetBase
from daskprs.errors import ConfigError, InputError, Problem
from daskprs.inputs.listing import DELIMITED_SUFFIXES, PARQUET_SUFFIXES, list_input
from daskprs.inputs.partition_format import parse_partition_format
from daskprs.storage.secrets import resolve_options

logger = logging.getLogger(__name__)

MLTABLE_FILE = "MLTable"
PATH_KINDS = ("file", "folder", "pattern")
HEADERS = {"no_header": False, "from_first_file": True, "all_files_same_headers": True,
           "all_files_different_headers": True}
ENCODINGS = ("utf8", "utf-8", "ascii", "utf8bom")
# read options that change nothing daskprs returns, or that it cannot honour: warned once
IGNORED_READ_OPTIONS = ("empty_as_string", "include_path_column", "infer_column_types",
                        "support_multi_line", "path_column")
READ_DELIMITED_KEYS = ("delimiter", "encoding", "header", *IGNORED_READ_OPTIONS)
READ_PARQUET_KEYS = ("include_path_column", "path_column")
COLUMN_STEPS = ("extract_columns_from_partition_format", "drop_columns", "keep_columns")
TOP_KEYS = ("type", "paths", "transformations", "metadata", "traits")

Resolve = Callable[[str], Any]


def read_mltable(url: str, storage_options: dict[str, Any] | None = None,
                 resolve: Resolve | None = None) -> DatasetBase:
    """The dataset an MLTable folder describes (a file ``MLTable`` in ``url``).

    Parameters
    ----------
    url
        The folder (local path or fsspec URL), or the ``MLTable`` file itself.
    storage_options
        fsspec options of the folder; paths below it use them too.
    resolve
        Maps an ``azureml://`` or ``azureml:`` path to ``(url, storage_options)``; returns
        None for other paths and raises ConfigError for unknown names.

    Raises
    ------
    ConfigError
        When the file is missing or holds keys or values daskprs cannot honour; each
        problem names ``<folder>/MLTable: <key>``.
    """
    options = dict(storage_options or {})
    folder = url[: -len(MLTABLE_FILE)].rstrip("/") if url.endswith("/" + MLTABLE_FILE) else url
    file = f"{folder.rstrip('/')}/{MLTABLE_FILE}"
    where = f"{file}: "
    try:
        with fsspec.open(file, "r", encoding="utf-8",
                         **resolve_options(options, f"{file}: storage_options")) as handle:
            spec = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError([Problem("MLTable", file, "does not exist", folder,
                                   "Point the mltable input at a folder holding a file "
                                   "named MLTable, or use type: uri_folder")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("MLTable", file, f"is not valid YAML ({exc})", file,
                                   "Fix the YAML syntax")]) from exc
    problems: list[Problem] = []

    def add(key: str, message: str, value: Any, fix: str) -> None:
        problems.append(Problem(key, f"{where}{key}", message, value, fix))

    if not isinstance(spec, dict):
        add("MLTable", "must hold a mapping (paths:, transformations:)", spec,
            "See the README's MLTable section")
        raise ConfigError(problems)
    for key in spec:
        if key not in TOP_KEYS:
            add(str(key), "is not an MLTable key daskprs reads", key,
                f"Remove it; daskprs reads {', '.join(TOP_KEYS)}")
    paths, path_options = _paths(spec.get("paths"), folder, options, resolve, add)
    read, columns = _read_transformation(spec.get("transformations"), add)
    if problems:
        raise ConfigError(problems)
    if read is None:
        return Dataset.File.from_files(paths, storage_options=path_options)
    kind, settings = read
    if kind == "read_parquet":
        dataset = Dataset.Tabular.from_parquet_files(paths, storage_options=path_options)
    else:
        dataset = Dataset.Tabular.from_delimited_files(
            paths, separator=settings.get("delimiter", ","),
            header=HEADERS[settings.get("header", "all_files_same_headers")],
            storage_options=path_options)
    if not columns:
        if settings.get("include_path_column"):
            logger.warning("MLTable %s include_path_column is ignored (no column "
                           "transformation uses it)", kind)
        return dataset
    return Dataset.Tabular.from_pandas_dataframe(
        _with_columns(dataset, settings, columns, f"{file}: transformations"))


def _paths(entries: Any, folder: str, options: dict[str, Any], resolve: Resolve | None,
           add: Callable[..., None]) -> tuple[list[str], dict[str, Any]]:
    if not isinstance(entries, list) or not entries:
        add("paths", "must be a non-empty list of {file|folder|pattern: path}", entries,
            "Use paths: [{file: ./data.csv}]")
        return [], options
    paths: list[str] = []
    path_options = options
    for position, entry in enumerate(entries):
        key = f"paths[{position}]"
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in PATH_KINDS:
            add(key, "must be one of file:, folder:, pattern: with a path", entry,
                "Use - file: ./data.csv")
            continue
        value = next(iter(entry.values()))
        if not isinstance(value, str) or not value.strip():
            add(key, "must be a path", value, "Use - file: ./data.csv")
            continue
        resolved = resolve(value) if resolve is not None else None
        if resolved is not None:
            value, path_options = resolved
        elif "://" not in value and not value.startswith("/"):
            value = _below(folder, value)
        paths.append(value)
    return paths, path_options


def _below(folder: str, relative: str) -> str:
    relative = relative[2:] if relative.startswith("./") else relative
    if "://" in folder:
        return posixpath.join(folder.rstrip("/"), relative)
    return posixpath.normpath(posixpath.join(folder, relative))


def _read_transformation(entries: Any, add: Callable[..., None]
                         ) -> tuple[tuple[str, dict[str, Any]] | None, list[tuple[str, Any]]]:
    """The read step, and the column steps after it."""
    columns: list[tuple[str, Any]] = []
    if entries is None:
        return None, columns
    if not isinstance(entries, list):
        add("transformations", "must be a list", entries,
            "Use transformations: [{read_delimited: {delimiter: ','}}]")
        return None, columns
    read: tuple[str, dict[str, Any]] | None = None
    for position, entry in enumerate(entries):
        key = f"transformations[{position}]"
        name, settings = _transformation(entry)
        if name in COLUMN_STEPS and read is not None:
            _check_column_step(name, settings, f"{key}.{name}", add)
            columns.append((name, settings))
            continue
        if name not in ("read_delimited", "read_parquet"):
            add(key, "is a transformation daskprs does not apply", name,
                "Remove it (apply it in run()); daskprs applies read_delimited, "
                f"read_parquet and after them {', '.join(COLUMN_STEPS)}")
            continue
        if read is not None:
            add(key, "is a second read transformation", name, "Keep one read_* step")
            continue
        if not isinstance(settings, dict):
            add(f"{key}.{name}", "must be a mapping", settings, "Use {delimiter: ','}")
            continue
        known = READ_DELIMITED_KEYS if name == "read_delimited" else READ_PARQUET_KEYS
        for option in settings:
            if option not in known:
                add(f"{key}.{name}.{option}", "is not an option daskprs reads", option,
                    f"Remove it; daskprs reads {', '.join(known)}")
        ignored = [o for o in settings if o in IGNORED_READ_OPTIONS
                   and o not in ("include_path_column", "path_column")]
        if ignored:
            logger.warning("MLTable %s options %s are ignored", name, ", ".join(ignored))
        if name == "read_delimited":
            _check_delimited(settings, f"{key}.{name}", add)
        read = (name, settings)
    return read, columns


def _check_column_step(name: str, settings: Any, key: str, add: Callable[..., None]) -> None:
    if name == "extract_columns_from_partition_format":
        text = settings.get("partition_format") if isinstance(settings, dict) else settings
        try:
            parse_partition_format(text)
        except (ValueError, TypeError) as exc:
            add(f"{key}.partition_format", f"is not a partition format ({exc})", text,
                "Use partition_format: '{region}/{file_name}.{extension}'")
    elif not isinstance(settings, (list, str)) or (
            isinstance(settings, list) and not all(isinstance(c, str) for c in settings)):
        add(key, "must be a column name or a list of them", settings, f"Use {name}: [Path]")


def _with_columns(dataset: Any, settings: dict[str, Any], steps: list[tuple[str, Any]],
                  where: str) -> pd.DataFrame:
    """Read the table whole, one file at a time, adding ``Path`` (``include_path_column``)
    and the partition-format columns from each file's path; then drop or keep columns."""
    logger.warning("%s: column transformations (%s) read the MLTable's files whole into the "
                   "client's memory", where, ", ".join(name for name, _ in steps))
    suffixes = PARQUET_SUFFIXES if dataset.format == "parquet" else DELIMITED_SUFFIXES
    options = resolve_options(dataset.storage_options, f"{where}: storage_options")
    dataset = replace(dataset, storage_options=options)
    files = list_input(dataset.paths, options, suffixes, where)
    formats = [parse_partition_format(s.get("partition_format") if isinstance(s, dict) else s)
               for name, s in steps if name == "extract_columns_from_partition_format"]
    frames = []
    for listed in files:
        frame = _read_file(dataset, listed.url)
        if settings.get("include_path_column"):
            frame[settings.get("path_column", "Path")] = listed.relative
        for partition_format in formats:
            values = partition_format.values(listed.relative)
            if values is None:
                raise InputError(f"{where}: {listed.relative!r} does not match the partition "
                                 f"format {partition_format.text!r}. Fix the format or the "
                                 f"MLTable's paths.")
            for column, value in values.items():
                frame[column] = value
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    for name, columns in steps:
        columns = [columns] if isinstance(columns, str) else columns
        if name == "drop_columns":
            table = table.drop(columns=list(columns), errors="ignore")
        elif name == "keep_columns":
            table = table[[c for c in columns if c in table.columns]]
    return table


def _read_file(dataset: Any, url: str) -> pd.DataFrame:
    with fsspec.open(url, "rb", compression="infer", **dataset.storage_options) as handle:
        if dataset.format == "parquet":
            return pd.read_parquet(handle)
        return pd.read_csv(handle, sep=dataset.separator,
                           header=0 if dataset.header else None)


def _transformation(entry: Any) -> tuple[str, Any]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1:
        name, settings = next(iter(entry.items()))
        return str(name), settings if settings is not None else {}
    return repr(entry), None


def _check_delimited(settings: dict[str, Any], key: str, add: Callable[..., None]) -> None:
    delimiter = settings.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        add(f"{key}.delimiter", "must be one character", delimiter, "Use delimiter: ','")
    encoding = settings.get("encoding", "utf8")
    if encoding not in ENCODINGS:
        add(f"{key}.encoding", "is an encoding daskprs does not read (it reads UTF-8)",
            encoding, "Convert the files to UTF-8 and use encoding: utf8")
    header = settings.get("header", "all_files_same_headers")
    if header not in HEADERS:
        add(f"{key}.header", f"must be one of {', '.join(HEADERS)}", header,
            "Use header: all_files_same_headers")
    elif header == "all_files_different_headers":
        logger.warning("MLTable header all_files_different_headers: daskprs reads every "
                       "file with the first file's columns")
