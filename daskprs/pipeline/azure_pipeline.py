"""Azure ML v2 ``type: pipeline`` files: ``command`` jobs become script steps, ``parallel``
jobs ParallelRunSteps (mapped by :mod:`daskprs.azure.job`), ``${{parent.jobs.<job>.outputs.
<output>}}`` placeholders between them and ``${{parent.inputs.<name>}}`` the pipeline's
inputs. Azure ML names (``azureml://``, ``azureml:<asset>``) go through the data table."""

from __future__ import annotations

import copy
import os
import re
import shlex
from typing import Any

import yaml

from daskprs.azure.data_table import DataTable, load_data_table
from daskprs.azure.job import _step_name, load_azure_step
from daskprs.datasets import Dataset
from daskprs.errors import ConfigError, Problem
from daskprs.pipeline.deferred import DeferredStep
from daskprs.pipeline.graph import choice_fix
from daskprs.pipeline.pipeline import Pipeline
from daskprs.pipeline.placeholders import OutputFileDatasetConfig, PipelineData, markers_in
from daskprs.pipeline.script_step import PythonScriptStep
from daskprs.step import ParallelRunStep
from daskprs.validation import Checker, did_you_mean

JOB_TYPES = ("command", "parallel")
_PARENT = re.compile(r"\$\{\{\s*parent\.(jobs\.([^.\s}]+)\.outputs\.([^.\s}]+)|inputs\.([^.\s}]+))"
                     r"\s*\}\}")
_OWN = re.compile(r"\$\{\{\s*(inputs|outputs)\.([^.\s}]+)\s*\}\}")
_OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.S)
DATA_TYPES = ("uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model")


def is_azure_pipeline(data: Any) -> bool:
    """Whether ``data`` is an Azure v2 pipeline job (``type: pipeline`` with ``jobs:``)."""
    return isinstance(data, dict) and data.get("type") == "pipeline" and \
        isinstance(data.get("jobs"), dict)


def load_azure_pipeline(path: str, data: dict[str, Any], overrides: tuple[str, ...] = (),
                        data_table: str | None = None) -> Pipeline:
    """Build the :class:`Pipeline` of an Azure v2 pipeline file.

    ``--set <job>.<key>=<value>`` sets a key of one parallel job (Azure's keys); outputs
    without a path go to ``daskprs-runs/<file name>/<job>/<output>`` beside the file.

    Raises
    ------
    ConfigError
        Every wrong job type, reference or command, with its job and key.
    """
    folder = os.path.dirname(os.path.abspath(path))
    table = load_data_table(data_table, folder)
    root = os.path.join(folder, "daskprs-runs", os.path.splitext(os.path.basename(path))[0])
    checker = Checker(lambda key: path)
    jobs: dict[str, Any] = data["jobs"]
    nodes = {name: _merged(checker, name, node, folder) for name, node in jobs.items()}
    outputs = {name: _outputs(name, node, root, table, folder)
               for name, node in nodes.items() if node is not None}
    parent_inputs = _parent_inputs(data.get("inputs") or {}, table, folder)
    per_job: dict[str, list[str]] = {}
    for override in overrides:
        job, _, rest = override.partition(".")
        per_job.setdefault(job, []).append(rest)
    steps: list[Any] = []
    for name, node in nodes.items():
        if node is None:
            continue
        known = len(checker.problems)
        node = _parents(checker, name, node, outputs, parent_inputs)
        if len(checker.problems) > known:
            continue  # a wrong reference: the job cannot be built
        try:
            if node.get("type") == "command":
                steps.append(_command(checker, name, node, outputs[name], table))
            else:
                steps.append(_parallel(path, data, name, node, outputs[name], root,
                                       data_table, per_job.get(name, [])))
        except ConfigError as exc:
            checker.extend(exc.problems)
    checker.raise_if_any()
    return Pipeline(steps=steps, output_root=root, description=data.get("description"),
                    source=path)


def _merged(checker: Checker, name: str, node: Any, folder: str) -> dict[str, Any] | None:
    """The job with its component file under it; ``_folder`` is where the component's
    relative paths start."""
    if not isinstance(node, dict) or node.get("type") not in JOB_TYPES:
        checker.add(f"jobs.{name}.type", "must be one of 'command', 'parallel'",
                    node.get("type") if isinstance(node, dict) else node,
                    "daskprs runs command and parallel jobs; run other jobs on Azure")
        return None
    merged = copy.deepcopy(node)
    merged["_folder"] = folder
    component = node.get("component")
    if node.get("type") == "command" and isinstance(component, str) and \
            not component.startswith("azureml:"):
        file = os.path.normpath(os.path.join(folder, component))
        try:
            with open(file, encoding="utf-8") as handle:
                base = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as exc:
            checker.add(f"jobs.{name}.component", f"cannot be read ({exc})", component,
                        "Point it at a command component YAML")
            return None
        merged = {**base, **{k: v for k, v in merged.items() if k != "component"}}
        for section in ("inputs", "outputs"):
            merged[section] = {**(base.get(section) or {}), **(node.get(section) or {})}
        merged["_component_folder"] = os.path.dirname(file)
    return merged


def _outputs(name: str, node: dict[str, Any], root: str, table: DataTable,
             folder: str) -> dict[str, PipelineData]:
    """Each output of a job as a placeholder: below ``root`` unless it has a path."""
    placeholders: dict[str, PipelineData] = {}
    for output, spec in (node.get("outputs") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        path = spec.get("path")
        if node.get("type") == "parallel" and path is None:
            path = os.path.join(root, _step_name(name), str(output))
            node["outputs"][output] = {**spec, "path": path}
        location = _location(path, table, folder) if isinstance(path, str) else None
        placeholders[str(output)] = OutputFileDatasetConfig(str(output), destination=location) \
            if location else PipelineData(str(output))
    return placeholders


def _location(path: str, table: DataTable, folder: str) -> str | None:
    """A path as a URL or absolute path; None when only the parallel job mapper can place
    it (it names ``${{default_datastore}}`` or ``${{name}}``)."""
    if "${{" in path:
        return None
    found = table.resolve(path)
    if isinstance(found, str):
        raise ConfigError([Problem("path", table.describe(), "names an Azure ML location the "
                                   "data table does not hold", path, found)])
    if found is not None:
        return found.url
    return path if "://" in path or os.path.isabs(path) else \
        os.path.normpath(os.path.join(folder, path))


def _parent_inputs(inputs: dict[str, Any], table: DataTable, folder: str) -> dict[str, Any]:
    values = {}
    for name, value in inputs.items():
        if isinstance(value, dict) and "path" in value:
            value = {**value, "path": _location(str(value["path"]), table, folder)}
        elif isinstance(value, dict) and "default" in value:
            value = value["default"]
        values[str(name)] = value
    return values


def _parents(checker: Checker, name: str, node: Any, outputs: dict[str, dict[str, PipelineData]],
             parent_inputs: dict[str, Any], where: str = "") -> Any:
    """``node`` with ``${{parent....}}`` replaced: an output of another job by its marker,
    a pipeline input by its value (a whole ``{type, path}`` where it is the whole value)."""
    if isinstance(node, dict):
        return {k: _parents(checker, name, v, outputs, parent_inputs, f"{where}.{k}")
                for k, v in node.items()}
    if isinstance(node, list):
        return [_parents(checker, name, v, outputs, parent_inputs, f"{where}[{i}]")
                for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    whole = _PARENT.fullmatch(node.strip())
    if whole and whole.group(4) in parent_inputs and \
            isinstance(parent_inputs[whole.group(4)], dict):
        return parent_inputs[whole.group(4)]

    def value(match: re.Match[str]) -> str:
        job, output, given = match.group(2), match.group(3), match.group(4)
        key = f"jobs.{name}{where}"
        if given is not None:
            if given not in parent_inputs:
                checker.add(key, "refers to a pipeline input that is not defined",
                            match.group(0), f"Define inputs.{given} at the top of the file"
                            f"{did_you_mean(given, list(parent_inputs))}")
                return match.group(0)
            found = parent_inputs[given]
            return str(found["path"] if isinstance(found, dict) else found)
        if job not in outputs:
            checker.add(key, "refers to a job the pipeline does not have", match.group(0),
                        choice_fix("job", job, list(outputs)))
            return match.group(0)
        if output not in outputs[job]:
            checker.add(key, f"refers to an output job {job!r} does not declare",
                        match.group(0), choice_fix("output", output, list(outputs[job])))
            return match.group(0)
        return outputs[job][output].marker

    return _PARENT.sub(value, node)


def _command(checker: Checker, name: str, node: dict[str, Any],
             outputs: dict[str, PipelineData], table: DataTable) -> PythonScriptStep:
    """A command job as a script step: ``python <script> <arguments>`` in its ``code``."""
    base = node.get("_component_folder", node["_folder"])
    code = node.get("code") or "."
    code = code if os.path.isabs(code) else os.path.normpath(os.path.join(base, code))
    inputs, datasets = {}, []
    for key, given in (node.get("inputs") or {}).items():
        if isinstance(given, dict) and "path" in given:
            path = str(given["path"])
            located = path if markers_in(path) else _location(path, table, node["_folder"])
            inputs[str(key)] = located
            if located and not markers_in(located):
                datasets.append(Dataset.File.from_files(located).as_named_input(str(key)))
        elif isinstance(given, dict) and "default" in given:
            inputs[str(key)] = given["default"]
        elif isinstance(given, dict):
            continue  # declared in the component, not given: optional
        else:
            inputs[str(key)] = given
    command = node.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ConfigError([Problem(f"jobs.{name}.command", checker.source_of(name),
                                   "is required", command, "Give command: python script.py")])

    def optional(match: re.Match[str]) -> str:
        needed = [m.group(2) for m in _OWN.finditer(match.group(1)) if m.group(1) == "inputs"]
        return match.group(1) if all(n in inputs for n in needed) else ""

    def value(match: re.Match[str]) -> str:
        kind, key = match.groups()
        group: dict[str, Any] = inputs if kind == "inputs" else \
            {k: v.marker for k, v in outputs.items()}
        if key not in group:
            checker.add(f"jobs.{name}.command", f"refers to {kind[:-1]} {key!r}, which the "
                        f"job does not define", match.group(0), f"Define {kind}.{key}"
                        f"{did_you_mean(key, list(group))}")
            return match.group(0)
        return shlex.quote(str(group[key]))

    tokens = shlex.split(_OWN.sub(value, _OPTIONAL.sub(optional, command)))
    if len(tokens) < 2 or os.path.basename(tokens[0]) not in ("python", "python3") or \
            tokens[1].startswith("-"):
        raise ConfigError([Problem(f"jobs.{name}.command", checker.source_of(name),
                                   "must run a Python script (python <script> ...)", command,
                                   "Run other programs from a Python script")])
    return PythonScriptStep(tokens[1], name=name, arguments=tokens[2:], inputs=datasets,
                            outputs=list(outputs.values()), source_directory=code)


def _parallel(path: str, data: dict[str, Any], name: str, node: dict[str, Any],
              outputs: dict[str, PipelineData], root: str, data_table: str | None,
              overrides: list[str]) -> DeferredStep:
    """A parallel job: built now unless an MLTable input is written by another job (the
    MLTable file is read when the job is built)."""
    clean = {k: v for k, v in node.items() if not k.startswith("_")}
    reads = [(f"inputs.{key}", m) for key, given in (clean.get("inputs") or {}).items()
             for m in markers_in(given.get("path") if isinstance(given, dict) else given)]

    def load(node: dict[str, Any]) -> ParallelRunStep:
        document = {**data, "jobs": {**data["jobs"], name: node}}
        return _job_folder_below(load_azure_step(path, document, tuple(overrides), data_table,
                                                 name), root)

    def build(folder_of: Any) -> ParallelRunStep:
        return load(_replaced(clean, {m: folder_of(m) for _, m in reads}))

    later = any(isinstance(g, dict) and g.get("type") == "mltable" and markers_in(g.get("path"))
                for g in (clean.get("inputs") or {}).values())
    prebuilt = None if later else load(clean)
    resources = clean.get("resources") if isinstance(clean.get("resources"), dict) else {}
    processes = clean.get("max_concurrency_per_instance") or os.cpu_count() or 1
    produced = {o.marker: o.name for o in outputs.values() if o.name}
    return DeferredStep(_step_name(name), reads, produced,
                        (lambda folder_of: prebuilt) if prebuilt is not None else build,
                        prebuilt, int(processes), int(resources.get("instance_count") or 1))


def _job_folder_below(step: ParallelRunStep, root: str) -> ParallelRunStep:
    """A job without an ``append_row_to`` output (``summary_only``) keeps its logs in
    ``<root>/<job>/job`` rather than ``./daskprs-runs/<job>``."""
    if step.parallel_run_config.output_action != "summary_only":
        return step
    return ParallelRunStep(name=step.name, parallel_run_config=step.parallel_run_config,
                           inputs=step.inputs, output=os.path.join(root, step.name, "job"),
                           side_inputs=step.side_inputs, arguments=step.arguments,
                           allow_reuse=step.allow_reuse)


def _replaced(value: Any, folders: dict[str, str]) -> Any:
    """``value`` with every marker in ``folders`` replaced by its folder."""
    if isinstance(value, dict):
        return {k: _replaced(v, folders) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, folders) for v in value]
    if isinstance(value, str):
        for marker, folder in folders.items():
            value = value.replace(marker, folder)
    return value
