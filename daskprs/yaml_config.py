"""Build a ParallelRunStep from a YAML file and ``--set KEY=VALUE`` overrides.

Paths in the file are relative to its folder; paths given with ``--set`` to the current
directory. Every problem is reported at once, each with the file and key it came from.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

import yaml

from daskprs.azure import is_azure_document
from daskprs.config import PARAMETERS, config_from_mapping
from daskprs.datasets import Dataset, DatasetBase
from daskprs.errors import ConfigError, Problem
from daskprs.step import ParallelRunStep, check_step
from daskprs.validation import Checker, did_you_mean

STEP_KEYS = ("name", "inputs", "side_inputs", "output", "arguments", "allow_reuse",
             "parallel_run_config", "models")
INPUT_KEYS = ("name", "type", "format", "path", "separator", "header", "dtype",
              "partition_format", "mode", "storage_options")
_FORMAT_ALIASES = {"csv": "delimited", "tsv": "delimited", "txt": "delimited",
                   "text": "delimited", "parq": "parquet", "pq": "parquet"}
_LAST_PART = re.compile(r"(\.[^.\[\]]+|\[\d+\])$")
_SIDE_INPUT = re.compile(r"\$\{\{\s*side_inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def load_step(path: str, overrides: list[str] | tuple[str, ...] = (),
              data_table: str | None = None, job: str | None = None,
              data: dict[str, Any] | None = None) -> ParallelRunStep:
    """Read a step's YAML config, apply ``--set`` overrides, validate everything.

    An Azure ML v2 file (a ``type: parallel`` job or parallel component, or one parallel
    node ``job`` of a ``type: pipeline`` file) is mapped by :mod:`daskprs.azure.job`;
    ``data_table`` is then its data table (default: ``azureml_data.yaml`` next to it).
    ``data``: the step's mapping when it is part of a larger file (a pipeline's step);
    ``path`` then names that file and anchors relative paths.

    Raises
    ------
    ConfigError
        Listing every problem with its file and key.
    """
    data = _read(path) if data is None else copy.deepcopy(data)
    if is_azure_document(data):
        from daskprs.azure.job import load_azure_step

        return load_azure_step(path, data, overrides, data_table, job)
    if data_table is not None or job is not None:
        raise ConfigError([Problem("--data-table" if data_table is not None else "--job",
                                   "command line", "applies to Azure v2 YAML only",
                                   data_table or job, "Leave it out for a daskprs config")])
    set_keys: set[str] = set()
    problems: list[Problem] = []
    for override in overrides:
        problem = _apply_override(data, override, set_keys)
        if problem:
            problems.append(problem)
    folder = os.path.dirname(os.path.abspath(path))

    def source_of(key: str) -> str:
        if key in PARAMETERS:
            key = f"parallel_run_config.{key}"
        given = _set_key_for(key, set_keys)
        return f"--set {given}" if given else f"{path}: {key}"

    checker = Checker(source_of)
    checker.extend(problems)
    checker.unknown_keys("", [k for k in data if isinstance(k, str)], STEP_KEYS)
    prc = data.get("parallel_run_config") or {}
    if not isinstance(prc, dict):
        checker.add("parallel_run_config", "must be a mapping", prc,
                    "Indent the parameters below parallel_run_config:")
        prc = {}
    prc = dict(prc)
    if isinstance(prc.get("source_directory"), str):
        prc["source_directory"] = _relative(prc["source_directory"], folder,
                                            "parallel_run_config.source_directory" in set_keys)
    config, config_checker = config_from_mapping(prc, source_of, "parallel_run_config.")
    checker.extend(config_checker.problems)
    inputs = _datasets(checker, data.get("inputs"), "inputs", folder, set_keys)
    side_inputs = _datasets(checker, data.get("side_inputs") or [], "side_inputs", folder,
                            set_keys)
    output, output_options = _output(checker, data.get("output"), folder, set_keys)
    arguments = _arguments(checker, data.get("arguments"), side_inputs)
    allow_reuse = data.get("allow_reuse", True)
    given = data.get("inputs")
    reported = isinstance(given, list) and given and not inputs
    step_checker = Checker(source_of)
    models_from_set = any(k == "models" or k.startswith("models.") for k in set_keys)
    values = check_step(step_checker, data.get("name"), config,
                        None if reported else inputs, output, output_options, side_inputs,
                        arguments, allow_reuse, output_action=prc.get("output_action"),
                        config_prefix="parallel_run_config.", models=data.get("models"),
                        models_base=None if models_from_set else folder)
    checker.extend(step_checker.problems)
    checker.raise_if_any()
    assert config is not None
    return ParallelRunStep(name=data["name"], parallel_run_config=config, inputs=inputs,
                           output=output, output_storage_options=output_options,
                           side_inputs=side_inputs, arguments=arguments,
                           allow_reuse=allow_reuse,
                           models={m.name: {"path": m.url, "storage_options": m.storage_options}
                                   for m in values["models"]} or None)


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError as exc:
        raise ConfigError([Problem("CONFIG", "command line", "does not exist", path,
                                   "Give the path of a YAML file, e.g. conf/demo.yaml")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("CONFIG", path, f"is not valid YAML ({exc})", path,
                                   "Fix the YAML syntax")]) from exc
    if not isinstance(data, dict):
        raise ConfigError([Problem("CONFIG", path, "must hold a mapping (name:, inputs:, ...)",
                                   type(data).__name__, "See conf/demo.yaml for the layout")])
    return data


def _apply_override(data: dict[str, Any], override: str, set_keys: set[str]) -> Problem | None:
    if "=" not in override:
        return Problem("--set", "command line", "must be KEY=VALUE", override,
                       "Use --set parallel_run_config.mini_batch_size=2MB")
    key, text = override.split("=", 1)
    parts = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    known = list(STEP_KEYS) + [f"parallel_run_config.{p}" for p in PARAMETERS]
    top = parts[0]
    if top not in STEP_KEYS or (top == "parallel_run_config" and len(parts) > 1
                                and parts[1] not in PARAMETERS):
        return Problem(f"--set {key}", "command line", "is not a known key", key,
                       f"Use a key of the config file.{did_you_mean(key, known)}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or type(exc).__name__
        return Problem(key, f"--set {key}", f"is not a valid YAML value ({reason})", text,
                       f"Quote it: --set '{key}={json.dumps(text)}'")
    node: Any = data
    for position, part in enumerate(parts[:-1]):
        following = parts[position + 1]
        if isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                return Problem(f"--set {key}", "command line", "indexes past the list's end",
                               key, f"Use an index below {len(node)}")
            node = node[part]
        else:
            node = node.setdefault(part, [] if isinstance(following, int) else {})
    last = parts[-1]
    fits_list = isinstance(node, list) and isinstance(last, int) and last < len(node)
    if fits_list or isinstance(node, dict):
        node[last] = value
    else:
        return Problem(f"--set {key}", "command line", "does not name a value", key,
                       "Check the key's path")
    set_keys.add(".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in parts)
                 .replace(".[", "["))
    return None


def _set_key_for(key: str, set_keys: set[str]) -> str | None:
    """The ``--set`` key that gave ``key`` its value: the key itself or a parent of it
    (``--set arguments=[...]`` gave ``arguments[0]``); None when the file did."""
    while key:
        if key in set_keys:
            return key
        parent = _LAST_PART.sub("", key)
        if parent == key:
            return None
        key = parent
    return None


def _relative(path: str, folder: str, from_set: bool) -> str:
    if "://" in path or os.path.isabs(path) or from_set:
        return path
    return os.path.normpath(os.path.join(folder, path))


def _datasets(checker: Checker, entries: Any, key: str, folder: str,
              set_keys: set[str]) -> list[DatasetBase]:
    if entries is None:
        checker.add(key, "is required", None,
                    "Add inputs: [{type: tabular, format: parquet, path: data/*.parquet}]")
        return []
    if not isinstance(entries, list):
        checker.add(key, "must be a list of inputs", entries,
                    "Use a list: - {type: tabular, format: parquet, path: ...}")
        return []
    datasets: list[DatasetBase] = []
    for position, entry in enumerate(entries):
        where = f"{key}[{position}]"
        if not isinstance(entry, dict):
            checker.add(where, "must be a mapping", entry, "Use {type: file, path: ...}")
            continue
        checker.unknown_keys(f"{where}.", [k for k in entry if isinstance(k, str)], INPUT_KEYS)
        dataset = _dataset(checker, entry, where, folder, f"{where}.path" in set_keys)
        if dataset is not None:
            datasets.append(dataset)
    return datasets


def _dataset(checker: Checker, entry: dict[str, Any], where: str, folder: str,
             from_set: bool) -> DatasetBase | None:
    path = entry.get("path")
    if isinstance(path, str):
        path = _relative(path, folder, from_set)
    elif isinstance(path, list) and all(isinstance(p, str) for p in path):
        path = [_relative(p, folder, from_set) for p in path]
    else:
        checker.add(f"{where}.path", "is required: a path, glob, folder, URL or list", path,
                    "Add path: data/*.parquet")
        return None
    options = entry.get("storage_options") or {}
    kind = entry.get("type", "tabular")
    try:
        if kind == "file" and entry.get("format") == "list":  # a text file of paths
            if not isinstance(path, str):
                checker.add(f"{where}.path", "must be one text file with format: list", path,
                            "Give path: out/logs/failed_items.txt")
                return None
            try:
                dataset: DatasetBase = Dataset.File.from_file_list(path, options)
            except ConfigError as exc:
                for problem in exc.problems:
                    checker.add(f"{where}.path", problem.message, problem.value, problem.fix)
                return None
        elif kind == "file":
            dataset = Dataset.File.from_files(
                path, partition_format=entry.get("partition_format"), storage_options=options)
            if entry.get("mode", "download") == "uri":
                dataset = dataset.as_uri()  # type: ignore[attr-defined]
        elif kind == "tabular":
            fmt = entry.get("format", "parquet")
            if not checker.choice(f"{where}.format", fmt, ("parquet", "delimited"),
                                  _FORMAT_ALIASES):
                return None
            if fmt == "parquet":
                dataset = Dataset.Tabular.from_parquet_files(path, storage_options=options)
            else:
                dataset = Dataset.Tabular.from_delimited_files(
                    path, separator=entry.get("separator", ","),
                    header=entry.get("header", True), dtype=entry.get("dtype"),
                    storage_options=options)
        else:
            checker.choice(f"{where}.type", kind, ("tabular", "file"))
            return None
        if "name" in entry:
            dataset = dataset.as_named_input(entry["name"])
    except ConfigError as exc:
        for problem in exc.problems:
            checker.add(f"{where}.name", problem.message, problem.value, problem.fix)
        return None
    return dataset


def _output(checker: Checker, output: Any, folder: str, set_keys: set[str]
            ) -> tuple[str | None, dict[str, Any]]:
    if output is None:
        return None, {}
    if isinstance(output, dict):
        checker.unknown_keys("output.", list(output), ("path", "storage_options"))
        path, options = output.get("path"), output.get("storage_options") or {}
    else:
        path, options = output, {}
    if not isinstance(path, str):
        checker.add("output", "must be a folder path or URL", path, "Use output: ../out/score")
        return None, {}
    from_set = "output" in set_keys or "output.path" in set_keys
    return _relative(path, folder, from_set), options


def _arguments(checker: Checker, arguments: Any, side_inputs: list[DatasetBase]) -> Any:
    if not isinstance(arguments, list):
        return arguments
    names = {d.name: d for d in side_inputs}
    resolved = []
    for position, item in enumerate(arguments):
        match = _SIDE_INPUT.fullmatch(item.strip()) if isinstance(item, str) else None
        if match and match.group(1) in names:
            resolved.append(names[match.group(1)])
        elif match:
            checker.add(f"arguments[{position}]", "names a side input that is not defined",
                        item, f"Define side_inputs: [{{name: {match.group(1)}, ...}}]"
                        f"{did_you_mean(match.group(1), [str(n) for n in names])}")
            resolved.append(item)
        else:
            resolved.append(item)
    return resolved
