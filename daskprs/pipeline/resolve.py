"""Replace a step's placeholders with folders: ``<output_root>/<step>/<name>`` (or the
destination given), or the table in it when a tabular input reads what a ParallelRunStep
wrote (its ``append_row`` file, or its Parquet data)."""

from __future__ import annotations

import os
import posixpath
from dataclasses import replace
from typing import Any

from daskprs.datasets import DatasetBase, FileDataset, TabularDataset
from daskprs.pipeline.graph import Graph
from daskprs.pipeline.placeholders import MARKER, destination_of, marker_name, markers_in
from daskprs.pipeline.script_step import PythonScriptStep
from daskprs.step import ParallelRunStep
from daskprs.storage import normalize_url


class Folders:
    """Where every placeholder of a pipeline lives, below ``root``."""

    def __init__(self, graph: Graph, root: str) -> None:
        self.graph = graph
        self.root = normalize_url(root)

    def of(self, marker: str) -> str:
        """The folder of ``marker``."""
        destination = destination_of(marker)
        if destination is not None:
            return normalize_url(destination)
        return self.step_home(self.graph.producer[marker]) + "/" + marker_name(marker)

    def step_home(self, name: str) -> str:
        """``<root>/<step>``: a script step's logs and state, and its outputs' parent."""
        return posixpath.join(self.root, name) if "://" in self.root else \
            os.path.join(self.root, name)

    def under_root(self, folder: str) -> bool:
        """Whether ``folder`` is below the output root (so the pipeline may clear it)."""
        return folder.startswith(self.root.rstrip("/") + "/")

    def text(self, value: Any) -> str:
        """``value`` as an argument: a dataset stands for its (first) path, every marker
        for its folder."""
        if isinstance(value, DatasetBase):
            value = getattr(value, "paths", ("",))[0]
        return MARKER.sub(lambda match: self.of(match.group(0)), os.fspath(value)
                          if isinstance(value, os.PathLike) else str(value))

    def dataset(self, dataset: Any) -> Any:
        """``dataset`` with its placeholders replaced (a plain TabularDataset or FileDataset)."""
        markers = markers_in(dataset)
        if not markers:
            return dataset
        writer = self.graph.nodes[self.graph.producer[markers[0]]].step
        folder = self.of(markers[0])
        if isinstance(dataset, TabularDataset):
            if isinstance(writer, ParallelRunStep):
                return replace(dataset, **table_of(writer, folder))
            return replace(dataset, paths=(folder,))
        return FileDataset(name=dataset.name, storage_options=dict(dataset.storage_options),
                           paths=(folder,), partition_format=dataset.partition_format,
                           mode=dataset.mode)

    def parallel_step(self, step: ParallelRunStep, allow_reuse: bool = True
                      ) -> ParallelRunStep:
        """A copy of ``step`` with every placeholder replaced; ``allow_reuse=False`` turns
        its reuse off (a step it reads from ran again)."""
        return ParallelRunStep(
            name=step.name, parallel_run_config=step.parallel_run_config,
            inputs=[self.dataset(d) for d in step.inputs],
            output=self.text(step.output), output_storage_options=step.output_storage_options,
            side_inputs=[self.dataset(d) for d in step.side_inputs],
            arguments=[self.text(a) if markers_in(a) else a for a in step.arguments],
            allow_reuse=step.allow_reuse and allow_reuse)

    def script_arguments(self, step: PythonScriptStep) -> list[str]:
        """The script's command-line arguments, every placeholder a folder."""
        return [self.text(a) for a in step.arguments]

    def script_outputs(self, step: PythonScriptStep) -> dict[str, str]:
        """Output name -> folder."""
        return {str(o.name): self.of(o.marker) for o in step.outputs}


def table_of(step: ParallelRunStep, folder: str) -> dict[str, Any]:
    """How a tabular input reads the output of ParallelRunStep ``step`` written to
    ``folder``: its append_row file (no header) or its Parquet data."""
    config = step.parallel_run_config
    if config.output_action == "parquet":
        return {"format": "parquet", "paths": (f"{folder}/data",)}
    return {"format": "delimited", "paths": (f"{folder}/{config.append_row_file_name}",),
            "separator": config.append_row_separator, "header": False}
