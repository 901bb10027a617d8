"""ParallelRunConfig: the step's tuning knobs, validated when built."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import yaml

from daskprs.addresses import AddressError, address_fix, looks_like_address, scheduler_address
from daskprs.entry_script_source import check_entry_script, resolve_script_path
from daskprs.sizes import SizeError, parse_tabular_size, size_fix
from daskprs.stall_parameters import check_stall_parameters
from daskprs.validation import Checker, SourceOf, keyword_source

logger = logging.getLogger(__name__)

OUTPUT_ACTIONS = ("append_row", "parquet", "summary_only")
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING")
RESERVED_FILE_NAMES = ("logs", "data", "_daskprs")
_BAD_FILE_CHARS = set('~"#%&*:<>?/\\{|}')
_SPECIAL_TARGETS = ("local", "inline")


@dataclass(frozen=True)
class ParallelRunConfig:
    """How a ParallelRunStep splits, runs and judges its work.

    Parameters
    ----------
    entry_script
        The script with ``init()``/``run()``, relative to ``source_directory`` when that is
        set; or an object with ``init``/``run`` attributes.
    source_directory
        Folder made available to every worker and put first on ``sys.path``.
    mini_batch_size
        Bytes (``"1MB"``, 1024-based), rows (``"5000 rows"``) or files (10). None: the
        default of the input kind (``"1MB"`` tabular, 10 files).
    error_threshold
        Failed items allowed over the job; -1 = no limit.
    allowed_failed_count
        Failed mini-batches allowed; -1 = no limit.
    allowed_failed_percent
        Failed mini-batches allowed, in percent of all; 100 = no limit.
    output_action
        ``"append_row"``, ``"parquet"`` or ``"summary_only"``.
    append_row_file_name
        File name of the ``append_row`` output.
    append_row_separator
        One character between the columns of DataFrame results.
    run_invocation_timeout
        Seconds one ``run()`` call may take.
    run_max_try
        Attempts per mini-batch.
    node_count
        Nodes of a cluster daskprs starts.
    process_count_per_node
        Worker processes per node (default: the number of cores).
    compute_target
        Where the job runs: None, ``"local"``, ``"inline"``, a scheduler address, a
        ``distributed.Client`` or ``Cluster``, or ``{"class": ..., "options": {...}}``.
    environment
        ``{"pip": [...]}`` packages the workers need.
    environment_variables
        Set in each runner process before the entry script is imported.
    partition_keys
        Columns (tabular) or ``partition_format`` fields (files): one mini-batch per value.
    logging_level
        ``"DEBUG"``, ``"INFO"`` or ``"WARNING"``.
    description
        Free text written to ``job_result.json``.
    init_timeout
        Seconds one runner's ``init()`` may take; a hung one is killed and its runner
        started again, up to 3 times, then the worker is unhealthy. None:
        ``3 × run_invocation_timeout + 30``.
    first_mini_batch_timeout
        Seconds from the start of the job until some worker starts a mini-batch; after
        that the job fails naming what it waited for. None: ``3 × init_timeout + 600``.
    no_progress_timeout
        Seconds without a commit or a started attempt while work remains; after that the
        job fails naming the mini-batches in flight. None: see
        :func:`daskprs.stall_guards.default_no_progress_timeout`.
    retry_on
        Exception classes (or their names, ``"botocore.exceptions.ClientError"``) whose
        failures are transient: retried with back-off, not charged to ``run_max_try``.
    transient_max_try
        Transient failures allowed per mini-batch before they are charged as failures.
    straggler_factor
        When all other work is submitted, a mini-batch running longer than this many times
        the median mini-batch time gets a backup attempt on an idle worker. None: off.
    gpus_per_process
        GPUs each runner gets in ``CUDA_VISIBLE_DEVICES``: None (one where there are
        GPUs), 0 (none: GPUs hidden), n >= 1 (n each; fails where there are none).
    """

    entry_script: Any
    source_directory: str | None = None
    mini_batch_size: int | str | None = None
    error_threshold: int = -1
    allowed_failed_count: int = -1
    allowed_failed_percent: float = 100
    output_action: str = "append_row"
    append_row_file_name: str = "parallel_run_step.txt"
    append_row_separator: str = " "
    run_invocation_timeout: float = 60
    run_max_try: int = 3
    node_count: int = 1
    process_count_per_node: int | None = None
    compute_target: Any = None
    environment: Any = None
    environment_variables: Mapping[str, str] | None = None
    partition_keys: list[str] | None = None
    logging_level: str = "INFO"
    description: str | None = None
    init_timeout: float | None = None
    first_mini_batch_timeout: float | None = None
    no_progress_timeout: float | None = None
    retry_on: list[Any] | None = None
    transient_max_try: int = 3
    straggler_factor: float | None = None
    gpus_per_process: int | None = None

    def __post_init__(self) -> None:
        checker = Checker()
        normalized = check_config(self, checker)
        checker.raise_if_any()
        for name, value in normalized.items():
            object.__setattr__(self, name, value)

    @property
    def processes(self) -> int:
        """Worker processes of a cluster daskprs starts."""
        return self.node_count * (self.process_count_per_node or os.cpu_count() or 1)

    @property
    def script_path(self) -> str | None:
        """Absolute path of the entry script file, or None for an object."""
        if isinstance(self.entry_script, (str, os.PathLike)):
            return resolve_script_path(self.entry_script, self.source_directory)
        return None

    def replace(self, **changes: Any) -> ParallelRunConfig:
        """Return a copy with ``changes`` applied (and validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain data (objects shown by their repr)."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            plain = isinstance(value, (str, int, float, bool, list, dict, type(None)))
            out[item.name] = value if plain else repr(value)
        return out

    def save_to_yaml(self, path: str) -> None:
        """Write the config under the key ``parallel_run_config``."""
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"parallel_run_config": self.to_dict()}, handle, sort_keys=False)

    @staticmethod
    def load_yaml(workspace_or_path: Any, path: str | None = None) -> ParallelRunConfig:
        """Read a config written by :meth:`save_to_yaml` (Azure's workspace argument is ignored)."""
        file = path if path is not None else workspace_or_path
        with open(file, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        return ParallelRunConfig(**data.get("parallel_run_config", data))


PARAMETERS = tuple(item.name for item in fields(ParallelRunConfig))


def check_config(config: Any, checker: Checker) -> dict[str, Any]:
    """Check every parameter of ``config``; return normalized values to set.

    ``config`` is anything with the parameters as attributes (a ParallelRunConfig under
    construction, or a namespace built from YAML).
    """
    normalized: dict[str, Any] = {}
    get = config.__getattribute__
    source_dir = get("source_directory")
    if source_dir is not None:
        if not isinstance(source_dir, (str, os.PathLike)):
            checker.add("source_directory", "must be a folder path", source_dir,
                        "Pass a path such as 'src'")
            source_dir = None
        elif not os.path.isdir(source_dir):
            checker.add("source_directory", "is not an existing folder", source_dir,
                        "Create the folder or fix the path")
            source_dir = None
        else:
            source_dir = os.path.abspath(source_dir)
            normalized["source_directory"] = source_dir
    entry = get("entry_script")
    problem = check_entry_script(entry, source_dir) if entry is not None else (
        "is required", "Pass entry_script='score.py'")
    if problem and (source_dir is not None or get("source_directory") is None):
        checker.add("entry_script", problem[0], entry, problem[1])
    _check_size(checker, get("mini_batch_size"))
    fix_limit = "Use -1 for no limit, or a count such as 10"
    checker.integer("error_threshold", get("error_threshold"), -1, fix_limit)
    checker.integer("allowed_failed_count", get("allowed_failed_count"), -1, fix_limit)
    checker.number("allowed_failed_percent", get("allowed_failed_percent"), 0, 100,
                   "Use a percentage from 0 to 100 (100 = no limit)")
    checker.choice("output_action", get("output_action"), OUTPUT_ACTIONS)
    _check_file_name(checker, get("append_row_file_name"))
    sep = get("append_row_separator")
    if not isinstance(sep, str) or len(sep) != 1:
        checker.add("append_row_separator", "must be exactly one character", sep,
                    "Use a single character such as ' ' or ','")
    checker.number("run_invocation_timeout", get("run_invocation_timeout"), 0, None,
                   "Give seconds as a positive number such as 60", low_inclusive=False)
    checker.integer("run_max_try", get("run_max_try"), 1, "Use 1 or more (attempts, not retries)")
    checker.integer("node_count", get("node_count"), 1, "Use 1 or more")
    if get("process_count_per_node") is not None:
        checker.integer("process_count_per_node", get("process_count_per_node"), 1,
                        "Use 1 or more, or leave it unset for one per core")
    if get("gpus_per_process") is not None:
        checker.integer("gpus_per_process", get("gpus_per_process"), 0,
                        "Use 1 or more GPUs per process, 0 for none, or leave it unset")
    normalized.update(_check_compute_target(checker, get("compute_target")))
    normalized.update(_check_environment(checker, get("environment")))
    _check_environment_variables(checker, get("environment_variables"))
    _check_partition_keys(checker, get("partition_keys"))
    level = get("logging_level")
    if isinstance(level, str) and level.upper() in LOGGING_LEVELS:
        normalized["logging_level"] = level.upper()
    else:
        checker.choice("logging_level", level, LOGGING_LEVELS)
    description = get("description")
    if description is not None and not isinstance(description, str):
        checker.add("description", "must be text", description, "Quote it")
    normalized.update(check_stall_parameters(checker, get))
    return normalized


def _check_size(checker: Checker, value: Any) -> None:
    if value is None:
        return
    try:
        parse_tabular_size(value)
    except SizeError as exc:
        checker.add("mini_batch_size", exc.reason, value, size_fix(
            exc, "Use bytes such as '1MB', rows such as '5000 rows', or files such as 10"))


def _check_file_name(checker: Checker, name: Any) -> None:
    fix = "Use a plain file name such as 'parallel_run_step.txt'"
    if not isinstance(name, str) or not name.strip():
        checker.add("append_row_file_name", "must be a non-empty file name", name, fix)
    elif _BAD_FILE_CHARS & set(name):
        bad = "".join(sorted(_BAD_FILE_CHARS & set(name)))
        checker.add("append_row_file_name", f"must not contain {bad!r}", name, fix)
    elif name in RESERVED_FILE_NAMES:
        checker.add("append_row_file_name", "is a name daskprs uses for its own folders",
                    name, fix)


def _check_compute_target(checker: Checker, target: Any) -> dict[str, Any]:
    if target is None or target in _SPECIAL_TARGETS:
        return {}
    if isinstance(target, str):
        if looks_like_address(target):
            try:
                address = scheduler_address(target)
            except AddressError as exc:
                checker.add("compute_target", exc.reason, target,
                            address_fix(exc, "compute_target={!r}"))
                return {}
            return {"compute_target": address} if address != target else {}
        logger.warning("compute_target %r is an Azure compute name and is ignored; daskprs "
                       "uses 'local', 'inline' or a scheduler address such as "
                       "'tcp://host:8786'", target)
        return {"compute_target": None}
    if isinstance(target, Mapping):
        if not isinstance(target.get("class"), str) or "." not in target.get("class", ""):
            checker.add("compute_target.class", "must name a cluster class with its module",
                        target.get("class"), "Use e.g. class: dask_jobqueue.SLURMCluster")
        options = target.get("options", {})
        if not isinstance(options, Mapping):
            checker.add("compute_target.options", "must be a mapping of keyword arguments",
                        options, "Use options: {cores: 2, memory: 4GB}")
        checker.unknown_keys("compute_target.", [k for k in target if isinstance(k, str)],
                             ("class", "options"))
        return {}
    kind = type(target).__name__
    if kind in ("AmlCompute", "ComputeTarget", "ComputeInstance"):
        logger.warning("compute_target of type %s is ignored; daskprs uses 'local', 'inline' "
                       "or a scheduler address", kind)
        return {"compute_target": None}
    if hasattr(target, "scheduler_address") or hasattr(target, "scheduler"):
        return {}
    checker.add("compute_target", "must be 'local', 'inline', a scheduler address, a "
                "distributed Client or Cluster, or {class: ..., options: ...}", target,
                "Use compute_target='local' or 'tcp://host:8786'")
    return {}


def _check_environment(checker: Checker, environment: Any) -> dict[str, Any]:
    if environment is None:
        return {}
    if isinstance(environment, Mapping):
        checker.unknown_keys("environment.", list(environment), ("pip",))
        pip = environment.get("pip", [])
        if not isinstance(pip, list) or not all(isinstance(p, str) for p in pip):
            checker.add("environment.pip", "must be a list of requirement strings", pip,
                        "Use environment={'pip': ['scikit-learn>=1.4']}")
        return {}
    logger.warning("environment of type %s is ignored; daskprs takes "
                   "environment={'pip': [...]}", type(environment).__name__)
    return {"environment": None}


def _check_environment_variables(checker: Checker, variables: Any) -> None:
    if variables is None:
        return
    if not isinstance(variables, Mapping):
        checker.add("environment_variables", "must be a mapping of names to strings",
                    variables, "Use environment_variables={'NAME': 'value'}")
        return
    for key, value in variables.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            checker.add("environment_variables", "has a name that is not a variable name",
                        key, "Use letters, digits and _ only")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            checker.add(f"environment_variables.{key}", "must be a string", value, "Quote it")


def _check_partition_keys(checker: Checker, keys: Any) -> None:
    if keys is None:
        return
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        checker.add("partition_keys", "must be a non-empty list of column or field names",
                    keys, "Use partition_keys=['region']")


def config_from_mapping(values: Mapping[str, Any], source_of: SourceOf = keyword_source,
                        prefix: str = "") -> tuple[ParallelRunConfig | None, Checker]:
    """Build a config from a mapping, collecting problems instead of raising."""
    checker = Checker(source_of, prefix)
    checker.unknown_keys("", [k for k in values], PARAMETERS)
    known = {k: v for k, v in values.items() if k in PARAMETERS}
    if "entry_script" not in known:
        checker.add("entry_script", "is required", None, "Add entry_script: score.py")
        return None, checker
    draft = _Draft({**_defaults(), **known})
    normalized = check_config(draft, checker)
    if checker.problems:
        return None, checker
    return ParallelRunConfig(**{**known, **normalized}), checker


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(ParallelRunConfig) if f.name != "entry_script"}


class _Draft:
    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)
