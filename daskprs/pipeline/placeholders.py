"""Placeholders for data one pipeline step writes and a later step reads.

``PipelineData("scores")`` and ``OutputFileDatasetConfig("scores")`` stand for a folder that
does not exist yet. Each carries a marker URL, ``pipelinedata://<name>/<token>``; it passes
wherever a step takes a path (``output=``, an input's path, an argument), and the pipeline
replaces it with the folder (or, for a tabular input, the table in it) when the step runs.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import Any

from daskprs.datasets import INPUT_NAME, FileDataset, TabularDataset
from daskprs.errors import ConfigError, Problem

SCHEME = "pipelinedata://"
MARKER = re.compile(r"pipelinedata://([A-Za-z_][A-Za-z0-9_]*)/([0-9a-f]{12})")
# destinations of OutputFileDatasetConfig(destination=...), by marker: a step keeps only
# the marker text of its output, so the destination is looked up here
_DESTINATIONS: dict[str, str] = {}


def new_marker(name: str) -> str:
    """A fresh marker URL for a placeholder called ``name``."""
    return f"{SCHEME}{name}/{uuid.uuid4().hex[:12]}"


def markers_in(value: Any) -> list[str]:
    """Every marker in ``value`` (a string, path-like, dataset, or a list of them)."""
    if isinstance(value, (list, tuple)):
        return [m for item in value for m in markers_in(item)]
    if isinstance(value, (TabularDataset, FileDataset)):
        return [m for path in value.paths for m in markers_in(path)]
    if value is None or isinstance(value, (bool, int, float)):
        return []
    return [match.group(0) for match in MARKER.finditer(str(value))]


def marker_name(marker: str) -> str:
    """The placeholder name in a marker (``scores`` in ``pipelinedata://scores/...``)."""
    match = MARKER.fullmatch(marker)
    return match.group(1) if match else marker


def destination_of(marker: str) -> str | None:
    """The ``destination`` given to the OutputFileDatasetConfig of ``marker``, if any."""
    return _DESTINATIONS.get(marker)


def _checked_name(name: Any, cls: str) -> str:
    if not isinstance(name, str) or not INPUT_NAME.match(name):
        raise ConfigError([Problem(
            f"{cls}(name)", "keyword argument", "must be letters, digits and _, not starting "
            "with a digit", name, f"Use {cls}('scores')")])
    return name


class PipelineData(FileDataset):
    """A folder one step writes and later steps read, as ``azureml.pipeline.core.PipelineData``.

    Give it as a step's ``output`` (ParallelRunStep) or in ``outputs`` (PythonScriptStep),
    then as an input or an argument of later steps: the pipeline orders the steps by it and
    passes ``<output_root>/<step>/<name>``.

    Parameters
    ----------
    name
        Letters, digits and ``_``; also the input name where it is read.
    datastore, output_name, output_mode, output_path_on_compute, output_overwrite,
    data_type, is_directory, pipeline_output_name, training_output
        Accepted for Azure code and ignored: the folder is under the pipeline's
        ``output_root``.
    """

    def __init__(self, name: str, datastore: Any = None, output_name: str | None = None,
                 output_mode: str = "mount", output_path_on_compute: str | None = None,
                 output_overwrite: bool | None = None, data_type: str | None = None,
                 is_directory: bool | None = None, pipeline_output_name: str | None = None,
                 training_output: Any = None) -> None:
        name = _checked_name(name, type(self).__name__)
        FileDataset.__init__(self, name=name, paths=(new_marker(name),))

    @property
    def marker(self) -> str:
        """The marker URL the pipeline replaces with the folder."""
        return self.paths[0]

    def __fspath__(self) -> str:
        return self.marker

    def __str__(self) -> str:
        return self.marker

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def as_named_input(self, name: str) -> FileDataset:
        """The folder as a file input named ``name``."""
        return FileDataset(name=name, paths=self.paths).as_named_input(name)  # type: ignore

    def as_dataset(self) -> FileDataset:
        """The folder as a file input (every file below it)."""
        return FileDataset(name=self.name, paths=self.paths)

    def as_input(self, input_name: str | None = None) -> FileDataset:
        """The folder as a file input named ``input_name`` (default: the name)."""
        return FileDataset(name=input_name or self.name, paths=self.paths)

    def as_download(self, input_name: str | None = None, path_on_compute: str | None = None,
                    overwrite: bool | None = None) -> FileDataset:
        """As :meth:`as_input` (daskprs downloads remote files by default)."""
        return self.as_input(input_name)

    def as_mount(self, input_name: str | None = None) -> FileDataset:
        """As :meth:`as_input`."""
        return self.as_input(input_name)

    def parse_parquet_files(self, file_extension: str = ".parquet") -> TabularDataset:
        """The folder as a tabular input of Parquet files.

        When a ParallelRunStep wrote it, the table is its output whatever the format
        asked: the ``append_row`` file, or its Parquet data.
        """
        return TabularDataset(name=self.name, format="parquet", paths=self.paths)

    def parse_delimited_files(self, separator: str = ",", header: bool = True,
                              file_extension: str = "") -> TabularDataset:
        """The folder as a tabular input of delimited files (see :meth:`parse_parquet_files`)."""
        return TabularDataset(name=self.name, format="delimited", paths=self.paths,
                              separator=separator, header=header)


class OutputFileDatasetConfig(PipelineData):
    """An output folder, as ``azureml.data.OutputFileDatasetConfig``.

    Parameters
    ----------
    name
        Letters, digits and ``_``; default ``output``.
    destination
        A folder or fsspec URL to write to instead of ``<output_root>/<step>/<name>``
        (Azure takes a ``(datastore, path)`` tuple).
    source, partition_format
        Accepted for Azure code and ignored.
    """

    def __init__(self, name: str | None = None, destination: Any = None,
                 source: str | None = None, partition_format: str | None = None) -> None:
        PipelineData.__init__(self, name or "output")
        if destination is not None:
            if isinstance(destination, tuple):
                destination = destination[-1]
            if not isinstance(destination, str) or not destination.strip():
                raise ConfigError([Problem(
                    "OutputFileDatasetConfig(destination)", "keyword argument",
                    "must be a folder path or URL", destination,
                    "Use destination='out/scores' or 's3://bucket/scores'")])
            _DESTINATIONS[self.marker] = destination

    def read_parquet_files(self, include_path: bool = False, partition_format: str | None = None,
                           path_glob: str | None = None, set_column_types: Any = None
                           ) -> TabularDataset:
        """The folder as a tabular input of Parquet files (``.as_input()`` is implied)."""
        return self.parse_parquet_files()

    def read_delimited_files(self, include_path: bool = False, separator: str = ",",
                             header: Any = True, partition_format: str | None = None,
                             path_glob: str | None = None, set_column_types: Any = None
                             ) -> TabularDataset:
        """The folder as a tabular input of delimited files."""
        return self.parse_delimited_files(separator=separator, header=bool(header))

    def as_upload(self, overwrite: bool = False, source_globs: Any = None
                  ) -> OutputFileDatasetConfig:
        """This output (the script writes to the folder it is given)."""
        return self

    def as_mount(self, input_name: str | None = None) -> Any:  # type: ignore[override]
        """This output (as an output); Azure mounts it, daskprs passes the folder."""
        return self

    def register_on_complete(self, name: str, description: str | None = None,
                             tags: Any = None) -> OutputFileDatasetConfig:
        """This output: there is no dataset registry; the folder is the dataset."""
        return self


def renamed(dataset: FileDataset | TabularDataset, name: str) -> Any:
    """``dataset`` under another input name, keeping its markers."""
    return replace(dataset, name=name)
