"""Azure ML compatibility for entry scripts: a small ``azureml.core`` where the real one is
absent, and what it reads from the runner's environment.

This folder goes on ``sys.path`` of the runner (and of an inline run) when, and only when,
``azureml.core`` cannot be imported there: ``from azureml.core import Model, Run`` then
finds ``azureml/core`` here (``azureml`` is a namespace package, so other ``azureml.*``
distributions stay importable). A real ``azureml-core`` is never shadowed. This folder holds
nothing else importable, since its modules would become top-level names.

In a job the runner's environment has:

- ``AZUREML_BI_OUTPUT_PATH``: the folder Azure's ``EntryScript().output_dir`` names, where
  the script may write its own files (daskprs' ``EntryScript().output_dir``);
- ``DASKPRS_MODELS``: JSON ``{name: local path}`` of the step's ``models`` (remote ones
  downloaded once per worker), read by ``Model.get_model_path``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any

COMPAT_DIR = os.path.dirname(os.path.abspath(__file__))
ENV_MODELS = "DASKPRS_MODELS"
ENV_BI_OUTPUT = "AZUREML_BI_OUTPUT_PATH"


def azureml_core_installed() -> bool:
    """Whether a real ``azureml.core`` (not this shim) can be imported here."""
    try:
        spec = importlib.util.find_spec("azureml.core")
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = [spec.origin or "", *(spec.submodule_search_locations or [])]
    return not any(os.path.abspath(p).startswith(COMPAT_DIR + os.sep) for p in places if p)


def add_shim_to_path() -> bool:
    """Append this folder to ``sys.path`` unless a real ``azureml.core`` is importable;
    return whether it is on the path now."""
    if COMPAT_DIR in sys.path:
        return True
    if azureml_core_installed():
        return False
    sys.path.append(COMPAT_DIR)
    return True


def model_variables(models: tuple[tuple[str, str, dict[str, Any]], ...], folder: str,
                    output_dir: str) -> dict[str, str]:
    """The runner's variables: ``AZUREML_BI_OUTPUT_PATH`` and ``DASKPRS_MODELS``.

    ``models``: ``(name, url, storage_options)``; a remote model is copied below
    ``folder`` the first time (once per worker: ``folder`` is the worker's own).
    """
    from daskprs.worker.downloads import download_side_input, is_remote

    paths: dict[str, str] = {}
    for name, url, options in models:
        if not is_remote(url, options):
            paths[name] = url
            continue
        target = os.path.join(folder, _safe(name))
        existing = os.listdir(target) if os.path.isdir(target) else []
        paths[name] = os.path.join(target, existing[0]) if existing else \
            download_side_input(url, options, target)
    return {ENV_BI_OUTPUT: output_dir, ENV_MODELS: json.dumps(paths)}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def mini_batch_dataset(mini_batch: Any) -> Any:
    """``mini_batch_context.dataset``: a Dataset of the mini-batch's own data, named as its
    input (Azure passes "the dataset object that corresponds to the mini_batch, a subset of
    the input dataset"): for a file input the mini-batch's files, for a tabular input the
    file its rows come from (None for an in-memory DataFrame input)."""
    from daskprs.datasets import FileDataset, TabularDataset

    source = mini_batch.source
    options = dict(getattr(source, "storage_options", None) or {})
    if mini_batch.paths:
        return FileDataset(name=mini_batch.input_name, storage_options=options,
                           paths=tuple(mini_batch.paths),
                           mode=getattr(source, "mode", "download"))
    base = getattr(source, "base", source)
    paths = tuple(dict.fromkeys(p[0] for p in getattr(source, "pieces", ()))) or (
        (mini_batch.path,) if mini_batch.path else ())
    if not paths or getattr(base, "format", None) not in ("parquet", "delimited"):
        return None
    return TabularDataset(name=mini_batch.input_name, storage_options=options,
                          format=base.format, paths=paths, separator=base.separator,
                          header=base.header)
