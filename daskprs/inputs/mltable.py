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
folder. Anything else daskprs cannot honour is a ConfigError naming the key.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from typing import Any

import fsspec
import yaml

from daskprs.datasets import Dataset, DatasetBase
from daskprs.errors import ConfigError, Problem

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
        with fsspec.open(file, "r", encoding="utf-8", **options) as handle:
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
    read = _read_transformation(spec.get("transformations"), add)
    if problems:
        raise ConfigError(problems)
    if read is None:
        return Dataset.File.from_files(paths, storage_options=path_options)
    kind, settings = read
    if kind == "read_parquet":
        return Dataset.Tabular.from_parquet_files(paths, storage_options=path_options)
    return Dataset.Tabular.from_delimited_files(
        paths, separator=settings.get("delimiter", ","),
        header=HEADERS[settings.get("header", "all_files_same_headers")],
        storage_options=path_options)


def is_mltable_folder(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether ``url`` is a folder holding an ``MLTable`` file."""
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        return bool(fs.exists(posixpath.join(path, MLTABLE_FILE)))
    except Exception:  # an unreachable store: the input's listing reports it
        return False


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
                         ) -> tuple[str, dict[str, Any]] | None:
    if entries is None:
        return None
    if not isinstance(entries, list):
        add("transformations", "must be a list", entries,
            "Use transformations: [{read_delimited: {delimiter: ','}}]")
        return None
    read: tuple[str, dict[str, Any]] | None = None
    for position, entry in enumerate(entries):
        key = f"transformations[{position}]"
        name, settings = _transformation(entry)
        if name not in ("read_delimited", "read_parquet"):
            add(key, "is a transformation daskprs does not apply", name,
                "Remove it (apply it in run()); daskprs applies read_delimited and "
                "read_parquet only")
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
        ignored = [o for o in settings if o in IGNORED_READ_OPTIONS]
        if ignored:
            logger.warning("MLTable %s options %s are ignored", name, ", ".join(ignored))
        if name == "read_delimited":
            _check_delimited(settings, f"{key}.{name}", add)
        read = (name, settings)
    return read


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
