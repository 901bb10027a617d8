"""Map an Azure v2 parallel job (or parallel component) onto a ParallelRunStep.

The README's "Azure v2 YAML and MLTable" section is the field table. Every problem is
reported at once, each with the file and the Azure key it came from.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from dataclasses import replace
from typing import Any

import yaml

from daskprs.azure.data_table import DataTable, Location, load_data_table
from daskprs.config import config_from_mapping
from daskprs.datasets import Dataset, DatasetBase
from daskprs.errors import ConfigError, Problem
from daskprs.inputs.mltable import read_mltable
from daskprs.step import ParallelRunStep, check_step
from daskprs.validation import Checker, did_you_mean

logger = logging.getLogger(__name__)

JOB_KEYS = ("$schema", "type", "name", "display_name", "description", "tags", "properties",
            "experiment_name", "compute", "inputs", "outputs", "input_data", "mini_batch_size",
            "partition_keys", "resources", "max_concurrency_per_instance",
            "mini_batch_error_threshold", "error_threshold", "logging_level", "retry_settings",
            "environment_variables", "task", "version", "is_deterministic", "identity",
            "services", "component", "settings")
IGNORED_KEYS = ("$schema", "display_name", "tags", "properties", "experiment_name", "version",
                "is_deterministic", "identity", "services", "settings", "component")
TASK_KEYS = ("type", "code", "entry_script", "program_arguments", "args", "append_row_to",
             "environment")
TASK_TYPES = ("run_function", "function")
DATA_TYPES = ("uri_folder", "uri_file", "mltable", "custom_model", "mlflow_model",
              "triton_model")
MODES = ("ro_mount", "rw_mount", "download", "direct", "eval_mount", "eval_download", "upload")
# daskprs parameter -> the Azure key it came from (for messages)
AZURE_KEYS = {"entry_script": "task.entry_script", "source_directory": "task.code",
              "node_count": "resources.instance_count",
              "process_count_per_node": "max_concurrency_per_instance",
              "allowed_failed_count": "mini_batch_error_threshold",
              "run_max_try": "retry_settings.max_retries",
              "run_invocation_timeout": "retry_settings.timeout",
              "append_row_file_name": "task.append_row_to",
              "arguments": "task.program_arguments", "inputs": "input_data",
              "side_inputs": "inputs", "output": "task.append_row_to"}
_EXPRESSION = re.compile(r"\$\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_SIZE = re.compile(r"(?i)^\s*(\d+)\s*([kmg]b)?\s*$")


def load_azure_step(path: str, data: dict[str, Any], overrides: tuple[str, ...] | list[str] = (),
                    data_table: str | None = None, job: str | None = None) -> ParallelRunStep:
    """Build a ParallelRunStep from an Azure v2 parallel job or component.

    Parameters
    ----------
    path
        The YAML file (for messages and relative paths).
    data
        Its content.
    overrides
        ``--set KEY=VALUE`` with Azure's keys (``resources.instance_count=3``).
    data_table
        The data table file; None: ``azureml_data.yaml`` next to ``path``, if any.
    job
        For a ``type: pipeline`` file: the parallel node to run.

    Raises
    ------
    ConfigError
        Listing every problem with its file and key.
    """
    folder = os.path.dirname(os.path.abspath(path))
    prefix = ""
    if data.get("type") == "pipeline":
        data, prefix = _pipeline_node(path, data, job)
        data["name"] = job  # a node is named by its key in jobs:
    elif job is not None:
        raise ConfigError([Problem("--job", "command line", "applies to a type: pipeline file "
                                   "only", job, "Leave --job out for a parallel job")])
    data = _with_component(data, folder, path, prefix)
    declared = {k: v for k, v in (data.get("inputs") or {}).items() if isinstance(v, dict)}
    set_keys: set[str] = set()
    problems = [p for o in overrides if (p := _set(data, o, set_keys))]
    table = load_data_table(data_table, folder)

    def source_of(key: str) -> str:
        return f"--set {key}" if key in set_keys else f"{path}: {prefix}{key}"

    checker = Checker(source_of)
    checker.extend(problems)
    return _Mapper(checker, data, folder, table, declared).step()


class _Mapper:
    """One mapping: collects problems in ``checker`` and builds the step."""

    def __init__(self, checker: Checker, data: dict[str, Any], folder: str, table: DataTable,
                 declared: dict[str, dict[str, Any]]) -> None:
        self.checker, self.data, self.folder, self.table = checker, data, folder, table
        self.declared = declared
        self.side_inputs: dict[str, DatasetBase] = {}
        self.local_outputs: dict[str, str] = {}

    def step(self) -> ParallelRunStep:
        data, checker = self.data, self.checker
        checker.unknown_keys("", [k for k in data if isinstance(k, str)], JOB_KEYS)
        if data.get("type") != "parallel":
            checker.choice("type", data.get("type"), ("parallel",))
        self._warn_ignored()
        name = _step_name(data.get("name") or data.get("display_name") or "parallel-job")
        task = data.get("task") if isinstance(data.get("task"), dict) else {}
        if not isinstance(data.get("task"), dict):
            checker.add("task", "is required: {type: run_function, code, entry_script}",
                        data.get("task"), "Add task: {type: run_function, code: ./src, "
                        "entry_script: score.py}")
        checker.unknown_keys("task.", [k for k in task if isinstance(k, str)], TASK_KEYS)
        if task and task.get("type", "run_function") not in TASK_TYPES:
            checker.choice("task.type", task.get("type"), TASK_TYPES)
        inputs = self._inputs()
        outputs = self._outputs(name)
        main = self._main_input(inputs)
        output, action, file_name = self._append_row(task, outputs, name)
        arguments = self._arguments(task, inputs, outputs)
        config, keys = self._config(task, action, file_name)
        checker.raise_if_any()
        step_checker = Checker(self.checker.source_of)
        check_step(step_checker, name, config, [main] if main else [], output, {},
                   list(self.side_inputs.values()), arguments, True)
        checker.extend(_renamed(step_checker.problems, keys, self.checker.source_of))
        checker.raise_if_any()
        for folder in self.local_outputs.values():
            os.makedirs(folder, exist_ok=True)
        assert config is not None and main is not None
        return ParallelRunStep(name=name, parallel_run_config=config, inputs=[main],
                               output=output, side_inputs=list(self.side_inputs.values()),
                               arguments=arguments)

    def _warn_ignored(self) -> None:
        data = self.data
        if data.get("compute") is not None:
            logger.warning("compute %r is ignored: daskprs runs where --scheduler or "
                           "compute_target says (a LocalCluster by default)", data["compute"])
        environment = (data.get("task") or {}).get("environment") \
            if isinstance(data.get("task"), dict) else None
        if isinstance(environment, dict):
            for key in ("image", "conda_file", "build"):
                if key in environment:
                    logger.warning("task.environment.%s %r is ignored: the workers use the "
                                   "Python environment they run in", key, environment[key])
        elif environment is not None:
            logger.warning("task.environment %r is ignored: the workers use the Python "
                           "environment they run in", environment)

    # inputs -------------------------------------------------------------------------------
    def _inputs(self) -> dict[str, Any]:
        """Name -> a literal (str, number, bool) or a dict {type, path, mode, location}."""
        raw = self.data.get("inputs") or {}
        if not isinstance(raw, dict):
            self.checker.add("inputs", "must be a mapping of names to inputs", raw,
                             "Use inputs: {data: {type: uri_folder, path: ./data}}")
            return {}
        inputs: dict[str, Any] = {}
        for name, value in raw.items():
            key = f"inputs.{name}"
            declared = self.declared.get(name, {})
            if isinstance(value, (str, int, float)) and declared.get("type") in DATA_TYPES:
                value = {**declared, "path": value}
            if isinstance(value, dict) and "path" not in value and "default" in value:
                value = value["default"]
            if not isinstance(value, dict):
                inputs[name] = self._literal(key, value)
                continue
            kind = value.get("type", "uri_folder")
            if not self.checker.choice(f"{key}.type", kind, DATA_TYPES):
                continue
            if value.get("mode") is not None:
                self.checker.choice(f"{key}.mode", value.get("mode"), MODES)
            location = self._location(f"{key}.path", value.get("path"))
            if location is not None:
                inputs[name] = {**value, "type": kind, "location": location}
        return inputs

    def _literal(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            match = _EXPRESSION.fullmatch(value.strip())
            if match and match.group(1).startswith("parent."):
                self.checker.add(key, "binds a pipeline value, which a single job cannot "
                                 "have", value, "Give the value itself")
        elif not isinstance(value, (int, float, bool)):
            self.checker.add(key, "must be a literal or {type, path, mode}", value,
                             "Use inputs: {x: {type: uri_folder, path: ./data}}")
        return value

    def _location(self, key: str, path: Any) -> Location | None:
        if not isinstance(path, str) or not path.strip():
            self.checker.add(key, "is required: a local path, URL or azureml: name", path,
                             "Add path: ./data (or bind it with --set)")
            return None
        path = self._substitute_names(key, path)
        match = _EXPRESSION.fullmatch(path.strip())
        if match and match.group(1).startswith("parent."):
            found = self.table.binding(match.group(1))
            if isinstance(found, str):
                self.checker.add(key, "is a pipeline binding that the data table does not "
                                 "name", path, found)
                return None
            return found
        resolved = self.table.resolve(path)
        if isinstance(resolved, str):
            self.checker.add(key, "names an Azure ML location the data table does not hold",
                             path, resolved)
            return None
        if resolved is not None:
            return resolved
        if "://" in path or os.path.isabs(path):
            return Location(path)
        return Location(os.path.normpath(os.path.join(self.folder, path)))

    def _substitute_names(self, key: str, path: str) -> str:
        def value(match: re.Match[str]) -> str:
            word = match.group(1)
            if word == "default_datastore" and self.table.default_datastore:
                return self.table.default_datastore
            if word == "name":
                return _step_name(self.data.get("name") or "parallel-job")
            if word == "default_datastore":
                self.checker.add(key, "uses ${{default_datastore}}, which the data table "
                                 "does not set", path, f"Add default_datastore: <name> to "
                                 f"{self.table.describe()}")
            return match.group(0)

        return re.sub(r"\$\{\{\s*(default_datastore|name)\s*\}\}", value, path)

    def _main_input(self, inputs: dict[str, Any]) -> DatasetBase | None:
        given = self.data.get("input_data")
        match = _EXPRESSION.fullmatch(given.strip()) if isinstance(given, str) else None
        if match is None or not match.group(1).startswith("inputs."):
            self.checker.add("input_data", "must be ${{inputs.<name>}}", given,
                             "Use input_data: ${{inputs.data}}")
            return None
        name = match.group(1)[len("inputs."):]
        if name not in inputs:
            if name not in (self.data.get("inputs") or {}):
                self.checker.add("input_data", "names an input that is not defined", given,
                                 f"Define inputs.{name}{did_you_mean(name, list(inputs))}")
            return None
        entry = inputs[name]
        if not isinstance(entry, dict):
            self.checker.add("input_data", "names a literal input, not data", given,
                             "Point it at an input of type uri_folder, uri_file or mltable")
            return None
        location: Location = entry["location"]
        try:
            if entry["type"] == "mltable":
                dataset = read_mltable(location.url, location.storage_options, self._resolve)
            else:
                dataset = Dataset.File.from_files(location.url,
                                                  storage_options=location.storage_options)
        except ConfigError as exc:
            self.checker.extend(exc.problems)
            return None
        if entry.get("mode") == "direct" and dataset.kind == "file":
            dataset = dataset.as_uri()  # type: ignore[attr-defined]
        return dataset.as_named_input(name)

    def _resolve(self, path: str) -> tuple[str, dict[str, Any]] | None:
        found = self.table.resolve(path)
        if isinstance(found, str):
            raise ConfigError([Problem("MLTable paths", self.table.describe(),
                                       "names an Azure ML location the data table does not "
                                       "hold", path, found)])
        return None if found is None else (found.url, found.storage_options)

    # outputs ------------------------------------------------------------------------------
    def _outputs(self, name: str) -> dict[str, tuple[str, Location]]:
        """Name -> (type, location); outputs without a path go below the default datastore
        (``azureml/<job>/<output>``) or ``daskprs-runs/<job>-outputs/<output>``."""
        raw = self.data.get("outputs") or {}
        if not isinstance(raw, dict):
            self.checker.add("outputs", "must be a mapping of names to outputs", raw,
                             "Use outputs: {scores: {type: uri_folder}}")
            return {}
        outputs: dict[str, tuple[str, Location]] = {}
        for output, value in raw.items():
            key = f"outputs.{output}"
            value = value if isinstance(value, dict) else {}
            kind = value.get("type", "uri_folder")
            if not self.checker.choice(f"{key}.type", kind, ("uri_folder", "uri_file",
                                                             "mltable")):
                continue
            if value.get("mode") is not None:
                self.checker.choice(f"{key}.mode", value.get("mode"), MODES)
            if value.get("path") is not None:
                location = self._location(f"{key}.path", value["path"])
            elif self.table.default_datastore in self.table.datastores:
                base = self.table.datastores[str(self.table.default_datastore)]
                location = Location(f"{base.url.rstrip('/')}/azureml/{name}/{output}",
                                    base.storage_options)
            else:
                location = Location(os.path.abspath(os.path.join(
                    "daskprs-runs", f"{name}-outputs", output)))
            if location is not None:
                outputs[output] = (kind, location)
        return outputs

    def _append_row(self, task: dict[str, Any], outputs: dict[str, tuple[str, Location]],
                    name: str) -> tuple[str | None, str, str | None]:
        """The step's output folder, output_action and append_row_file_name."""
        target = task.get("append_row_to")
        if target is None:
            return None, "summary_only", None
        match = _EXPRESSION.fullmatch(target.strip()) if isinstance(target, str) else None
        output = match.group(1)[len("outputs."):] if match and \
            match.group(1).startswith("outputs.") else None
        if output is None or output not in outputs:
            self.checker.add("task.append_row_to", "must be ${{outputs.<name>}} of a defined "
                             "output", target, "Use append_row_to: ${{outputs.scores}}"
                             f"{did_you_mean(str(output), list(outputs))}")
            return None, "append_row", None
        kind, location = outputs[output]
        if location.storage_options:
            self.checker.add("task.append_row_to", "names an output with storage_options; "
                             "daskprs takes them from the environment for outputs", target,
                             "Set the credentials in the environment (see the README)")
        if kind == "uri_file":
            folder, file_name = location.url.rstrip("/").rsplit("/", 1) \
                if "://" in location.url else os.path.split(location.url)
            return folder, "append_row", file_name
        return location.url, "append_row", None

    # arguments ----------------------------------------------------------------------------
    def _arguments(self, task: dict[str, Any], inputs: dict[str, Any],
                   outputs: dict[str, tuple[str, Location]]) -> list[Any]:
        given = task.get("program_arguments", task.get("args"))
        key = "task.program_arguments" if "program_arguments" in task else "task.args"
        if given is None:
            return []
        if isinstance(given, str):
            tokens = shlex.split(given)
        elif isinstance(given, list):
            tokens = [str(t) for t in given]
        else:
            self.checker.add(key, "must be a string or a list", given,
                             "Use program_arguments: --model ${{inputs.model}}")
            return []
        arguments: list[Any] = []
        for token in tokens:
            match = _EXPRESSION.fullmatch(token)
            if match:
                arguments.append(self._reference(key, match.group(1), inputs, outputs, token))
            else:
                arguments.append(_EXPRESSION.sub(
                    lambda m: str(self._reference(key, m.group(1), inputs, outputs,
                                                  m.group(0), text=True)), token))
        return arguments

    def _reference(self, key: str, word: str, inputs: dict[str, Any],
                   outputs: dict[str, tuple[str, Location]], token: str,
                   text: bool = False) -> Any:
        kind, _, name = word.partition(".")
        if kind == "inputs" and name in inputs:
            entry = inputs[name]
            if not isinstance(entry, dict):
                return str(entry)
            location: Location = entry["location"]
            if text or "://" not in location.url:
                return location.url
            if name not in self.side_inputs:
                self.side_inputs[name] = Dataset.File.from_files(
                    location.url, storage_options=location.storage_options
                ).as_named_input(name)
            return self.side_inputs[name]
        if kind == "outputs" and name in outputs:
            url = outputs[name][1].url
            if "://" in url:
                self.checker.add(key, "passes a remote output folder to the script; daskprs "
                                 "gives scripts local paths only", token,
                                 "Write to EntryScript().output_dir, or give the output a "
                                 "local path")
                return url
            self.local_outputs[name] = url
            return url
        known = [f"{k}.{n}" for k, group in (("inputs", inputs), ("outputs", outputs))
                 for n in group]
        self.checker.add(key, "names an input or output that is not defined", token,
                         f"Define it{did_you_mean(word, known)}")
        return token

    # config -------------------------------------------------------------------------------
    def _config(self, task: dict[str, Any], action: str, file_name: str | None
                ) -> tuple[Any, dict[str, str]]:
        data, checker = self.data, self.checker
        values: dict[str, Any] = {"output_action": action}
        code = task.get("code")
        if isinstance(code, str):
            values["source_directory"] = code if os.path.isabs(code) else \
                os.path.normpath(os.path.join(self.folder, code))
        elif code is not None:
            checker.add("task.code", "must be a folder path", code, "Use code: ./src")
        if task.get("entry_script") is not None or task:
            values["entry_script"] = task.get("entry_script")
        if file_name is not None:
            values["append_row_file_name"] = file_name
        size = data.get("mini_batch_size")
        if size is not None:
            values["mini_batch_size"] = _azure_size(size)
        for azure, ours in (("error_threshold", "error_threshold"),
                            ("mini_batch_error_threshold", "allowed_failed_count"),
                            ("logging_level", "logging_level"),
                            ("environment_variables", "environment_variables"),
                            ("partition_keys", "partition_keys"),
                            ("max_concurrency_per_instance", "process_count_per_node"),
                            ("description", "description")):
            if data.get(azure) is not None:
                values[ours] = data[azure]
        resources = data.get("resources") or {}
        if not isinstance(resources, dict):
            checker.add("resources", "must be a mapping", resources,
                        "Use resources: {instance_count: 2}")
        elif resources.get("instance_count") is not None:
            values["node_count"] = resources["instance_count"]
        retry = data.get("retry_settings") or {}
        if not isinstance(retry, dict):
            checker.add("retry_settings", "must be a mapping", retry,
                        "Use retry_settings: {max_retries: 2, timeout: 60}")
            retry = {}
        checker.unknown_keys("retry_settings.", list(retry), ("max_retries", "timeout"))
        if retry.get("max_retries") is not None and checker.integer(
                "retry_settings.max_retries", retry["max_retries"], 0,
                "Use 0 or more (retries after the first attempt)"):
            values["run_max_try"] = retry["max_retries"] + 1
        if retry.get("timeout") is not None:
            values["run_invocation_timeout"] = retry["timeout"]
        keys = {ours: AZURE_KEYS.get(ours, ours) for ours in values}
        keys.update({"mini_batch_size": "mini_batch_size"})
        config, config_checker = config_from_mapping(values, lambda k: k)
        checker.extend(_renamed(config_checker.problems, keys, checker.source_of))
        return config, keys


def _renamed(problems: list[Problem], keys: dict[str, str], source_of: Any) -> list[Problem]:
    """Problems named by daskprs parameters, renamed to the Azure keys they came from."""
    out = []
    for problem in problems:
        name = problem.parameter.replace("parallel_run_config.", "")
        head = name.split(".")[0].split("[")[0]
        azure = keys.get(head, AZURE_KEYS.get(head, head)) + name[len(head):]
        out.append(replace(problem, parameter=azure, source=source_of(azure)))
    return out


def _azure_size(value: Any) -> Any:
    """Azure spells sizes ``"10kb"``, ``"100 mb"``, ``"5"``: bytes 1024-based (or files)."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            number, unit = match.groups()
            return f"{number}{(unit or '').upper()}" if unit else int(number)
    return value


def _step_name(name: Any) -> str:
    """Azure names allow ``_`` and capitals; a step name is ``[a-z][-a-z0-9]*``."""
    text = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")
    if not text[:1].isalpha():
        text = f"job-{text}".strip("-")
    text = text[:32].rstrip("-")
    return text if len(text) >= 3 else f"{text}-job"


def _pipeline_node(path: str, data: dict[str, Any], job: str | None
                   ) -> tuple[dict[str, Any], str]:
    jobs = data.get("jobs") if isinstance(data.get("jobs"), dict) else {}
    parallel = [n for n, node in jobs.items() if isinstance(node, dict)
                and node.get("type") == "parallel"]
    if job is None:
        raise ConfigError([Problem("type", f"{path}: type", "is a pipeline; daskprs runs one "
                                   "parallel job of it at a time (pipelines are a separate "
                                   "feature)", "pipeline",
                                   f"Pick a parallel node with --job "
                                   f"{parallel[0] if parallel else 'NAME'} (parallel nodes: "
                                   f"{', '.join(parallel) or 'none'})")])
    if job not in parallel:
        raise ConfigError([Problem("--job", "command line", "is not a parallel node of the "
                                   "pipeline", job, f"Use one of: {', '.join(parallel) or 'none'}"
                                   f"{did_you_mean(job, parallel)}")])
    return dict(jobs[job]), f"jobs.{job}."


def _with_component(data: dict[str, Any], folder: str, path: str, prefix: str
                    ) -> dict[str, Any]:
    """A node that names ``component: ./parallel_component.yml``: the component with the
    node's keys over it (inputs and outputs merged by name)."""
    component = data.get("component")
    if not isinstance(component, str) or component.startswith("azureml:"):
        return dict(data)
    file = os.path.normpath(os.path.join(folder, component))
    try:
        with open(file, encoding="utf-8") as handle:
            base = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([Problem(f"{prefix}component", f"{path}: {prefix}component",
                                   f"cannot be read ({exc})", component,
                                   "Point it at a parallel component YAML")]) from exc
    merged = {**base, **{k: v for k, v in data.items() if k != "component"}}
    for section in ("inputs", "outputs"):
        merged[section] = {**(base.get(section) or {}), **(data.get(section) or {})}
    merged["type"] = "parallel"
    return merged


def _set(data: dict[str, Any], override: str, set_keys: set[str]) -> Problem | None:
    """Apply ``--set a.b=VALUE`` (Azure's ``az ml job create --set`` keys)."""
    if "=" not in override:
        return Problem("--set", "command line", "must be KEY=VALUE", override,
                       "Use --set resources.instance_count=2")
    key, text = override.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node: Any = data
    for part in parts[:-1]:
        if not isinstance(node, dict):
            return Problem(f"--set {key}", "command line", "does not name a value", key,
                           "Check the key's path")
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else {"path": child}
            node[part] = child
        node = child
    if not isinstance(node, dict):
        return Problem(f"--set {key}", "command line", "does not name a value", key,
                       "Check the key's path")
    node[parts[-1]] = value
    set_keys.add(key.strip())
    return None
