"""The data table: where Azure ML names (datastores, data assets) point on this machine.

Azure v2 YAML names data with ``azureml://datastores/<store>/paths/<path>``,
``azureml:<name>:<version>`` or ``azureml:<name>@latest``; pipelines bind a node's inputs
with ``${{parent.jobs.<job>.outputs.<output>}}``. None of these mean anything outside a
workspace, so a small YAML file kept next to the job YAML (``azureml_data.yaml``, or the
file given with ``--data-table``) maps them to fsspec URLs::

    default_datastore: workspaceblobstore      # what ${{default_datastore}} stands for
    datastores:
      workspaceblobstore:
        url: s3://bucket/prefix                # a local folder is fine too
        storage_options: {anon: false}
    data:
      iris:                                    # azureml:iris:1, azureml:iris@latest
        "1": {url: data/iris-v1}
        "2": data/iris-v2                      # a plain string is a URL
    bindings:
      parent.jobs.prepare_data.outputs.mnist_png: data/mnist

Relative local paths are relative to the data table's folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from daskprs.errors import ConfigError, Problem

DATA_TABLE_NAME = "azureml_data.yaml"
TABLE_KEYS = ("default_datastore", "datastores", "data", "bindings")
_DATASTORE = re.compile(r"^azureml://datastores/([^/]+)/paths/(.*)$")
_ASSET = re.compile(r"^azureml:(?!//)([^:@/]+)(?::([^:@/]+)|@([A-Za-z]+))?$")


@dataclass(frozen=True)
class Location:
    """An fsspec URL (or local path) with its storage options."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataTable:
    """The data table's entries; empty when there is no file.

    Parameters
    ----------
    path
        The file it was read from, or None.
    default_datastore
        The name ``${{default_datastore}}`` stands for.
    datastores, data, bindings
        Name (or binding expression) to :class:`Location`; ``data`` maps a name to its
        versions.
    """

    path: str | None = None
    default_datastore: str | None = None
    datastores: dict[str, Location] = field(default_factory=dict)
    data: dict[str, dict[str, Location]] = field(default_factory=dict)
    bindings: dict[str, Location] = field(default_factory=dict)

    def describe(self) -> str:
        """The file's name for messages."""
        return self.path or f"{DATA_TABLE_NAME} (no such file next to the YAML)"

    def resolve(self, text: str) -> Location | str | None:
        """The location an Azure reference stands for.

        Returns
        -------
        Location, str or None
            A Location; an error message (str) naming the missing entry and the known
            ones; None when ``text`` is not an Azure reference (a path or URL as it is).
        """
        match = _DATASTORE.match(text)
        if match:
            store, below = match.groups()
            if store not in self.datastores:
                return _missing("datastore", store, "datastores", self.datastores, self)
            base = self.datastores[store]
            return Location(_join(base.url, below), base.storage_options)
        match = _ASSET.match(text)
        if match:
            name, version, label = match.groups()
            if name not in self.data:
                return _missing("data asset", name, "data", self.data, self)
            versions = self.data[name]
            if version is None:
                version = "latest" if label is None else label
            if version in versions:
                return versions[version]
            if version == "latest":
                return versions[_latest(versions)]
            return (f"data asset {name!r} has no version {version!r} in {self.describe()}; "
                    f"known versions: {', '.join(sorted(versions))}")
        return None

    def binding(self, expression: str) -> Location | str:
        """The location of a ``${{parent....}}`` expression, or an error message."""
        if expression in self.bindings:
            return self.bindings[expression]
        return _missing("binding", expression, "bindings", self.bindings, self)


def load_data_table(path: str | None, yaml_folder: str) -> DataTable:
    """Read the data table: ``path``, else ``azureml_data.yaml`` in ``yaml_folder`` if it
    exists, else an empty table.

    Raises
    ------
    ConfigError
        When the file named by ``path`` does not exist or its entries are malformed.
    """
    if path is None:
        candidate = os.path.join(yaml_folder, DATA_TABLE_NAME)
        if not os.path.exists(candidate):
            return DataTable()
        path = candidate
    problems: list[Problem] = []
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError([Problem("--data-table", "command line", "does not exist", path,
                                   f"Give the path of a data table such as {DATA_TABLE_NAME}")
                           ]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("--data-table", path, f"is not valid YAML ({exc})", path,
                                   "Fix the YAML syntax")]) from exc
    if not isinstance(raw, dict):
        raise ConfigError([Problem("--data-table", path, "must hold a mapping", raw,
                                   "Use datastores:, data:, bindings: (see the README)")])
    folder = os.path.dirname(os.path.abspath(path))
    table = DataTable(path=path)

    def add(key: str, message: str, value: Any, fix: str) -> None:
        problems.append(Problem(key, f"{path}: {key}", message, value, fix))

    for key in raw:
        if key not in TABLE_KEYS:
            add(str(key), "is not a known key", key, f"Use one of {', '.join(TABLE_KEYS)}")
    default = raw.get("default_datastore")
    if default is not None and not isinstance(default, str):
        add("default_datastore", "must be a datastore name", default,
            "Use default_datastore: workspaceblobstore")
    table.default_datastore = default if isinstance(default, str) else None
    for section in ("datastores", "bindings"):
        entries = _section(raw, section, add)
        target = getattr(table, section)
        for name, entry in entries.items():
            location = _location(entry, f"{section}.{name}", folder, add)
            if location is not None:
                target[str(name)] = location
    for name, versions in _section(raw, "data", add).items():
        if isinstance(versions, dict) and "url" not in versions:
            table.data[str(name)] = {
                str(version): location for version, entry in versions.items()
                if (location := _location(entry, f"data.{name}.{version}", folder, add))}
        else:
            location = _location(versions, f"data.{name}", folder, add)
            if location is not None:
                table.data[str(name)] = {"latest": location}
    if problems:
        raise ConfigError(problems)
    return table


def _section(raw: dict[str, Any], key: str, add: Any) -> dict[Any, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        add(key, "must be a mapping of names to URLs", value,
            f"Use {key}: {{name: {{url: s3://bucket/prefix}}}}")
        return {}
    return value


def _location(entry: Any, key: str, folder: str, add: Any) -> Location | None:
    if isinstance(entry, str):
        return Location(_local(entry, folder))
    if isinstance(entry, dict) and isinstance(entry.get("url"), str):
        for extra in entry:
            if extra not in ("url", "storage_options"):
                add(f"{key}.{extra}", "is not a known key", extra,
                    "Use url: and storage_options: only")
        options = entry.get("storage_options") or {}
        if not isinstance(options, dict):
            add(f"{key}.storage_options", "must be a mapping", options,
                "Use storage_options: {key: ..., secret: ...}")
            options = {}
        return Location(_local(entry["url"], folder), dict(options))
    add(key, "must be a URL or {url: ..., storage_options: ...}", entry,
        "Use url: s3://bucket/prefix or a local folder")
    return None


def _local(url: str, folder: str) -> str:
    if "://" in url or os.path.isabs(url):
        return url
    return os.path.normpath(os.path.join(folder, url))


def _join(base: str, below: str) -> str:
    below = below.lstrip("/")
    if not below:
        return base
    return f"{base.rstrip('/')}/{below}" if "://" in base else os.path.join(base, below)


def _latest(versions: dict[str, Location]) -> str:
    def order(version: str) -> tuple[int, Any]:
        return (1, int(version)) if version.isdigit() else (0, version)

    return max(versions, key=order)


def _missing(kind: str, name: str, section: str, known: dict[str, Any],
             table: DataTable) -> str:
    names = ", ".join(sorted(known)) or "none"
    return (f"{kind} {name!r} is not in the data table {table.describe()}; known {section}: "
            f"{names}. Add it under {section}: with a url (and storage_options)")
