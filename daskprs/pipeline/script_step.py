"""PythonScriptStep: a glue step of a pipeline, a Python script run as a subprocess."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from daskprs.datasets import DatasetBase
from daskprs.entry_script_source import resolve_script_path
from daskprs.pipeline.placeholders import PipelineData
from daskprs.validation import Checker

SCRIPT_STEP_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,63}$")


class PythonScriptStep:
    """Run a Python script between other steps, as ``azureml.pipeline.steps.PythonScriptStep``.

    The script runs on the machine that runs the pipeline, as ``python script_name
    *arguments`` in ``source_directory``, with every placeholder in ``arguments`` replaced
    by its folder (created before the script starts).

    Parameters
    ----------
    script_name
        The script, relative to ``source_directory``.
    name
        The step's name (default: the script's name without ``.py``); unique in the pipeline.
    arguments
        The script's ``sys.argv[1:]``: strings, numbers, placeholders and datasets (a
        dataset stands for its path).
    compute_target, runconfig
        Accepted for Azure code and ignored: the script runs where the pipeline runs.
    inputs
        Placeholders or datasets the script reads; a placeholder orders the steps.
    outputs
        Placeholders (``PipelineData``, ``OutputFileDatasetConfig``) the script writes.
    params
        Environment variables ``AML_PARAMETER_<name>``, as on Azure.
    source_directory
        The folder the script runs in (default: the current directory); its files are part
        of the step's fingerprint.
    allow_reuse
        Reuse the last run when the script, its arguments and params, the files of
        ``hash_paths`` and its inputs are unchanged and its outputs exist.
    version
        Accepted for Azure code and ignored.
    hash_paths
        Files or folders (relative to ``source_directory``) whose contents are part of the
        fingerprint besides the script: the modules it imports, say.
    """

    def __init__(self, script_name: str, name: str | None = None,
                 arguments: Sequence[Any] | None = None, compute_target: Any = None,
                 runconfig: Any = None, inputs: Sequence[Any] | None = None,
                 outputs: Sequence[PipelineData] | None = None,
                 params: dict[str, Any] | None = None, source_directory: str | None = None,
                 allow_reuse: bool = True, version: str | None = None,
                 hash_paths: Sequence[str] | None = None) -> None:
        checker = Checker()
        if not isinstance(script_name, (str, os.PathLike)) or not str(script_name).strip():
            checker.add("script_name", "must be a script file name", script_name,
                        "Use script_name='prepare.py'")
            script_name = "script.py"
        if name is None:
            name = os.path.splitext(os.path.basename(str(script_name)))[0]
        if not isinstance(name, str) or not SCRIPT_STEP_NAME.match(name):
            checker.add("name", "must be 1-64 characters of letters, digits, -, _ and . "
                        "starting with a letter or digit", name, "Use name='prepare-data'")
        folder = os.path.abspath(source_directory) if source_directory else os.getcwd()
        path = resolve_script_path(script_name, folder)
        if not os.path.isfile(path):
            checker.add("script_name", f"is not a file in source_directory {folder!r}",
                        str(script_name), "Give the script's path relative to "
                        "source_directory")
        outputs = list(outputs or [])
        for position, output in enumerate(outputs):
            if not isinstance(output, PipelineData):
                checker.add(f"outputs[{position}]", "must be a PipelineData or "
                            "OutputFileDatasetConfig", type(output).__name__,
                            "Use outputs=[PipelineData('prepared')]")
        names = [o.name for o in outputs if isinstance(o, PipelineData)]
        for duplicate in sorted({n for n in names if n is not None and names.count(n) > 1}):
            checker.add("outputs", "has two outputs with one name", duplicate,
                        "Give each output its own name")
        for position, item in enumerate(inputs or []):
            if not isinstance(item, (DatasetBase, str, os.PathLike)):
                checker.add(f"inputs[{position}]", "must be a placeholder or a dataset",
                            type(item).__name__, "Use inputs=[prepared] (a PipelineData)")
        for position, item in enumerate(arguments or []):
            if isinstance(item, bool) or item is None or \
                    not isinstance(item, (str, int, float, os.PathLike, DatasetBase)):
                checker.add(f"arguments[{position}]", "must be a string, number, placeholder "
                            "or dataset", item if item is None else type(item).__name__,
                            "Pass str(value)")
        hashed = [resolve_script_path(p, folder) for p in hash_paths or []]
        for position, hashed_path in enumerate(hashed):
            if not os.path.exists(hashed_path):
                checker.add(f"hash_paths[{position}]", f"does not exist in source_directory "
                            f"{folder!r}", (hash_paths or [])[position],
                            "Give a file or folder relative to source_directory")
        if not isinstance(params or {}, dict):
            checker.add("params", "must be a mapping", params, "Use params={'mode': 'full'}")
        if not isinstance(allow_reuse, bool):
            checker.add("allow_reuse", "must be true or false", allow_reuse, "Use True or False")
        checker.raise_if_any()
        self.name: str = name
        self.script_name = str(script_name)
        self.script_path: str = path
        self.source_directory: str = folder
        self.arguments: list[Any] = list(arguments or [])
        self.inputs: list[Any] = list(inputs or [])
        self.outputs: list[PipelineData] = outputs
        self.params: dict[str, Any] = dict(params or {})
        self.allow_reuse: bool = allow_reuse
        self.hash_paths: list[str] = hashed

    def __repr__(self) -> str:
        return f"PythonScriptStep(name={self.name!r}, script_name={self.script_name!r})"
