"""daskprs: Azure ML ParallelRunStep's contract on Dask.

Names are imported lazily, so that ``from daskprs import EntryScript`` in an entry
script does not import Dask into the runner process.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("daskprs")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

_EXPORTS = {
    "Dataset": "daskprs.datasets",
    "ParallelRunConfig": "daskprs.config",
    "ParallelRunStep": "daskprs.step",
    "JobResult": "daskprs.result",
    "EntryScript": "daskprs.entry_script",
    "MiniBatchContext": "daskprs.entry_script",
    "DaskprsError": "daskprs.errors",
    "ConfigError": "daskprs.errors",
    "EntryScriptError": "daskprs.errors",
    "InputError": "daskprs.errors",
    "OutputError": "daskprs.errors",
    "ClusterError": "daskprs.errors",
    "InitFailedError": "daskprs.errors",
    "ClusterLostError": "daskprs.errors",
    "JobFailedError": "daskprs.errors",
    "Pipeline": "daskprs.pipeline",
    "PipelineData": "daskprs.pipeline",
    "OutputFileDatasetConfig": "daskprs.pipeline",
    "PythonScriptStep": "daskprs.pipeline",
    "PipelineResult": "daskprs.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'daskprs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
