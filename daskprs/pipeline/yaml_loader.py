"""Read a daskprs pipeline file: a list of steps, each a step of today's YAML
(``type: parallel``, the default) or a script step (``type: script``), joined by
``${{steps.<name>.outputs.<output>}}`` references; ``${{outputs.<output>}}`` names the
step's own output."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Any

import yaml

from daskprs.errors import ConfigError, Problem
from daskprs.pipeline.azure_pipeline import is_azure_pipeline, load_azure_pipeline
from daskprs.pipeline.graph import choice_fix
from daskprs.pipeline.pipeline import Pipeline
from daskprs.pipeline.placeholders import OutputFileDatasetConfig, PipelineData
from daskprs.pipeline.script_step import PythonScriptStep
from daskprs.validation import Checker

PIPELINE_KEYS = ("steps", "output_root", "description")
SCRIPT_KEYS = ("name", "type", "script", "source_directory", "arguments", "outputs", "params",
               "allow_reuse", "hash_paths")
STEP_TYPES = ("parallel", "script")
PARALLEL_OUTPUT = "output"
REFERENCE = re.compile(r"\$\{\{\s*(steps\.([^.}\s]+)\.outputs|outputs)\.([^.}\s]+)\s*\}\}")


def is_pipeline_file(path: str) -> bool:
    """Whether the YAML file at ``path`` holds a daskprs pipeline (a ``steps:`` list) or an
    Azure v2 pipeline job (``type: pipeline``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return False  # load_step reports it
    return (isinstance(data, dict) and isinstance(data.get("steps"), list)) or \
        is_azure_pipeline(data)


def load_any_pipeline(path: str, overrides: list[str] | tuple[str, ...] = (),
                      data_table: str | None = None) -> Pipeline:
    """The pipeline of a daskprs pipeline file or an Azure v2 pipeline job file."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if is_azure_pipeline(data):
        return load_azure_pipeline(path, data, tuple(overrides), data_table)
    if data_table is not None:
        raise ConfigError([Problem("--data-table", "command line", "applies to Azure v2 "
                                   "YAML only", data_table, "Leave it out for a daskprs "
                                   "pipeline file")])
    return load_pipeline(path, overrides)


def load_pipeline(path: str, overrides: list[str] | tuple[str, ...] = ()) -> Pipeline:
    """Build the :class:`Pipeline` of a pipeline file; ``--set <step>.<key>=<value>``
    overrides a key of one step.

    Raises
    ------
    ConfigError
        Listing every problem, each with its step, key and the file.
    """
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or \
            not data["steps"]:
        raise ConfigError([Problem("steps", path, "must be a non-empty list of steps",
                                   data.get("steps") if isinstance(data, dict) else data,
                                   "Use steps: [{name: prepare, type: script, ...}, ...]")])
    folder = os.path.dirname(os.path.abspath(path))
    checker = Checker(lambda key: path)
    checker.unknown_keys("", [k for k in data if isinstance(k, str)], PIPELINE_KEYS)
    entries = data["steps"]
    names = [e.get("name") if isinstance(e, dict) else None for e in entries]
    outputs = [_declared(checker, e, i, folder) for i, e in enumerate(entries)]
    by_name = {n: o for n, o in zip(names, outputs, strict=True) if isinstance(n, str)}
    per_step = _split_overrides(checker, overrides, names)
    steps = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            checker.add(f"steps[{position}]", "must be a mapping", entry,
                        "Use - {name: prepare, type: script, script: prepare.py}")
            continue
        label = str(entry.get("name", f"steps[{position}]"))
        entry = _substitute(checker, entry, label, outputs[position], by_name, "")
        kind = entry.get("type", "parallel")
        if not checker.choice(f"{label}.type", kind, STEP_TYPES):
            continue
        try:
            if kind == "script":
                steps.append(_script_step(checker, entry, label, outputs[position], folder))
            else:
                steps.append(_parallel_step(entry, path, position, per_step.get(label, []),
                                            outputs[position]))
        except ConfigError as exc:
            checker.extend(exc.problems)
    checker.raise_if_any()
    root = data.get("output_root") or os.path.join(
        "daskprs-runs", os.path.splitext(os.path.basename(path))[0])
    if "://" not in root and not os.path.isabs(root):
        root = os.path.normpath(os.path.join(folder, root))
    return Pipeline(steps=steps, output_root=root, description=data.get("description"),
                    source=path)


def _declared(checker: Checker, entry: Any, position: int, folder: str
              ) -> dict[str, PipelineData]:
    """The outputs a step declares, by name: a script step's ``outputs`` (a list of names,
    or a mapping of name to destination folder), a parallel step's ``output``."""
    if not isinstance(entry, dict):
        return {}
    label = str(entry.get("name", f"steps[{position}]"))
    if entry.get("type", "parallel") != "script":
        output = entry.get("output")
        if output is None:
            return {PARALLEL_OUTPUT: PipelineData(PARALLEL_OUTPUT)}
        match = REFERENCE.fullmatch(output.strip()) if isinstance(output, str) else None
        if match and match.group(1) == "outputs":
            return {match.group(3): PipelineData(match.group(3))}
        path = output.get("path") if isinstance(output, dict) else output
        if isinstance(path, str) and "${{" not in path:
            path = path if "://" in path or os.path.isabs(path) else \
                os.path.normpath(os.path.join(folder, path))
            return {PARALLEL_OUTPUT: OutputFileDatasetConfig(PARALLEL_OUTPUT, destination=path)}
        return {}
    given = entry.get("outputs") or []
    if isinstance(given, list):
        given = {name: None for name in given}
    if not isinstance(given, dict):
        checker.add(f"{label}.outputs", "must be a list of output names", given,
                    "Use outputs: [prepared]")
        return {}
    declared: dict[str, PipelineData] = {}
    for name, destination in given.items():
        try:
            if destination is None:
                declared[str(name)] = PipelineData(name)
            else:
                path = destination if "://" in str(destination) or os.path.isabs(
                    str(destination)) else os.path.join(folder, str(destination))
                declared[str(name)] = OutputFileDatasetConfig(name, destination=path)
        except ConfigError as exc:
            for problem in exc.problems:
                checker.add(f"{label}.outputs", problem.message, problem.value, problem.fix)
    return declared


def _substitute(checker: Checker, value: Any, label: str, own: dict[str, PipelineData],
                steps: dict[str, dict[str, PipelineData]], where: str) -> Any:
    """``value`` with every reference replaced by its placeholder's marker."""
    if isinstance(value, dict):
        return {k: _substitute(checker, v, label, own, steps, f"{where}.{k}" if where else k)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(checker, v, label, own, steps, f"{where}[{i}]")
                for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def marker(match: re.Match[str]) -> str:
        step, output = match.group(2), match.group(3)
        if step is None:
            if output in own:
                return own[output].marker
            checker.add(f"{label}.{where}", f"refers to an output the step {label!r} does not "
                        f"declare", match.group(0), choice_fix("output", output, list(own)))
            return match.group(0)
        if step not in steps:
            checker.add(f"{label}.{where}", "refers to a step the pipeline does not have",
                        match.group(0), choice_fix("step", step, list(steps)))
            return match.group(0)
        if output not in steps[step]:
            checker.add(f"{label}.{where}", f"refers to an output step {step!r} does not "
                        f"declare", match.group(0), choice_fix("output", output, list(steps[step])))
            return match.group(0)
        return steps[step][output].marker

    return REFERENCE.sub(marker, value)


def _script_step(checker: Checker, entry: dict[str, Any], label: str,
                 outputs: dict[str, PipelineData], folder: str) -> PythonScriptStep:
    checker.unknown_keys(f"{label}.", [k for k in entry if isinstance(k, str)], SCRIPT_KEYS)
    source = entry.get("source_directory") or "."
    if isinstance(source, str) and not os.path.isabs(source):
        source = os.path.normpath(os.path.join(folder, source))
    try:
        return PythonScriptStep(
            script_name=entry.get("script"), name=entry.get("name"),
            arguments=entry.get("arguments"), outputs=list(outputs.values()),
            params=entry.get("params"), source_directory=source,
            allow_reuse=entry.get("allow_reuse", True), hash_paths=entry.get("hash_paths"))
    except ConfigError as exc:
        raise ConfigError([replace(p, parameter=f"{label}.{p.parameter}".replace(
            f"{label}.script_name", f"{label}.script")) for p in exc.problems]) from None


def _parallel_step(entry: dict[str, Any], path: str, position: int, overrides: list[str],
                   outputs: dict[str, PipelineData]) -> Any:
    from daskprs.yaml_config import load_step

    step = {k: v for k, v in entry.items() if k != "type"}
    if len(outputs) == 1:  # the output is a placeholder: under output_root or a destination
        marker = next(iter(outputs.values())).marker
        given = step.get("output")
        step["output"] = {**given, "path": marker} if isinstance(given, dict) else marker
    label = str(entry.get("name", f"steps[{position}]"))
    try:
        return load_step(path, overrides, data=step)
    except ConfigError as exc:
        raise ConfigError([replace(p, parameter=f"{label}.{p.parameter}",
                                   source=p.source.replace(f"{path}: ", f"{path}: steps"
                                                           f"[{position}].").replace(
                                       "--set ", f"--set {label}.")) for p in
                           exc.problems]) from None


def _split_overrides(checker: Checker, overrides: list[str] | tuple[str, ...],
                     names: list[Any]) -> dict[str, list[str]]:
    """``--set score.parallel_run_config.mini_batch_size=2MB`` -> {score: [...]}"""
    per_step: dict[str, list[str]] = {}
    known = [str(n) for n in names]
    for override in overrides:
        step, _, rest = override.partition(".")
        if step not in known or not rest:
            checker.extend([Problem(f"--set {override.split('=')[0]}", "command line",
                                    "must start with a step name", step,
                                    f"Use --set <step>.<key>=<value>. "
                                    f"{choice_fix('step', step, known)}")])
            continue
        per_step.setdefault(step, []).append(rest)
    return per_step
