"""Azure's own parallel-run options in a step's ``arguments``: read, applied, passed on.

Azure ParallelRunStep (v1) adds its settings to the entry script's command line
(``--mini_batch_size 10 --error_threshold 5 ...``) and Azure parallel jobs (v2) read
settings from ``program_arguments`` (``--error_threshold 5 --allowed_failed_percent 30
--copy_logs_to_parent True ...``). daskprs accepts every one of them in ``arguments``:

- an option that names a :class:`~daskprs.config.ParallelRunConfig` parameter sets it
  (a config that sets the same parameter to another value is a ConfigError naming both);
- the others are Azure runtime knobs daskprs has no use for: accepted, and reported once
  as ignored in the client log (``logs/sys/client.txt``);
- all of them stay in ``sys.argv`` of the entry script, unchanged (scripts read their own
  options with ``parse_known_args``, as Azure's samples do).

Both ``--name value`` and ``--name=value`` are read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from daskprs.validation import Checker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AzureOption:
    """One option Azure's parallel run reads from the command line.

    Parameters
    ----------
    name
        The option without its dashes (``error_threshold``).
    parameter
        The ParallelRunConfig parameter it sets, or None when daskprs ignores it.
    parse
        Turns the option's text into the parameter's value (raises ValueError).
    why
        For an ignored option: why daskprs has no use for it.
    """

    name: str
    parameter: str | None
    parse: Callable[[str], Any] = str
    why: str = ""


def _integer(text: str) -> int:
    return int(text.strip())


def _number(text: str) -> float | int:
    value = float(text.strip())
    return int(value) if value.is_integer() else value


def _size(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isdigit() else text


def _keys(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        keys = json.loads(text)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("a JSON list of names")
        return keys
    return [k.strip() for k in text.split(",") if k.strip()]


_SETS = (
    AzureOption("mini_batch_size", "mini_batch_size", _size),
    AzureOption("error_threshold", "error_threshold", _integer),
    AzureOption("allowed_failed_count", "allowed_failed_count", _integer),
    AzureOption("allowed_failed_percent", "allowed_failed_percent", _number),
    AzureOption("output_action", "output_action"),
    AzureOption("append_row_file_name", "append_row_file_name"),
    AzureOption("logging_level", "logging_level", lambda text: text.strip().upper()),
    AzureOption("run_invocation_timeout", "run_invocation_timeout", _number),
    AzureOption("run_max_try", "run_max_try", _integer),
    AzureOption("process_count_per_node", "process_count_per_node", _integer),
    AzureOption("node_count", "node_count", _integer),
    AzureOption("partition_keys", "partition_keys", _keys),
)
_TIMEOUT = "daskprs has no such timeout: run_invocation_timeout bounds each run()"
_IGNORES = (
    AzureOption("task_overhead_timeout", None, why=_TIMEOUT),
    AzureOption("progress_update_timeout", None, why=_TIMEOUT),
    AzureOption("first_task_creation_timeout", None, why=_TIMEOUT),
    AzureOption("copy_logs_to_parent", None,
                why="there is no parent pipeline job; the logs are in the output's logs/"),
    AzureOption("push_metrics_to_parent", None, why="there is no parent pipeline job"),
    AzureOption("metrics_name_prefix", None,
                why="metrics are written to logs/user/metrics/ under their own names"),
    AzureOption("resource_monitor_interval", None,
                why="use the Dask dashboard for CPU and memory"),
    AzureOption("client_sdk_version", None, why="written by Azure's SDK, not needed here"),
    AzureOption("scoring_module_name", None, why="entry_script names the script"),
    AzureOption("create_snapshot_at_runtime", None, why="source_directory is used in place"),
)
AZURE_OPTIONS: dict[str, AzureOption] = {o.name: o for o in (*_SETS, *_IGNORES)}


@dataclass(frozen=True)
class FoundOption:
    """An Azure option found in ``arguments``.

    Parameters
    ----------
    option
        What daskprs knows of it.
    position
        Index of the option name in ``arguments``.
    text
        Its value as written.
    """

    option: AzureOption
    position: int
    text: str

    @property
    def written(self) -> str:
        """The option as the user wrote it, for messages."""
        return f"--{self.option.name} {self.text}"


def find_azure_options(checker: Checker, arguments: Sequence[Any]) -> list[FoundOption]:
    """The Azure options in ``arguments``; an option without a value is a problem."""
    found: list[FoundOption] = []
    items = [str(a) if isinstance(a, (str, int, float)) and not isinstance(a, bool) else None
             for a in arguments]
    for position, item in enumerate(items):
        if item is None or not item.startswith("--"):
            continue
        name, equals, text = item[2:].partition("=")
        option = AZURE_OPTIONS.get(name)
        if option is None:
            continue
        if not equals:
            following = items[position + 1] if position + 1 < len(items) else None
            if following is None or following.startswith("--"):
                checker.add(f"arguments[{position}]", "needs a value", item,
                            f"Write it as '--{name} VALUE' or '--{name}=VALUE', or remove it")
                continue
            text = following
        found.append(FoundOption(option, position, text))
    return found


def apply_azure_options(checker: Checker, config: Any, arguments: Sequence[Any] | None,
                        config_prefix: str = "parallel_run_config.") -> Any:
    """Return ``config`` with the parameters the Azure options in ``arguments`` set.

    Problems (a value that does not parse, a conflict with the config, the same option
    twice with different values) go to ``checker``; ``config`` is then returned unchanged.
    """
    if not arguments or not isinstance(arguments, (list, tuple)):
        return config
    changes: dict[str, Any] = {}
    where: dict[str, FoundOption] = {}
    defaults = {f.name: f.default for f in fields(config)}
    problems = len(checker.problems)
    for found in find_azure_options(checker, arguments):
        parameter = found.option.parameter
        if parameter is None:
            continue
        try:
            value = found.option.parse(found.text)
        except ValueError:
            checker.add(f"arguments[{found.position}]", f"is not a valid {parameter}",
                        found.written, f"Give {parameter} as in parallel_run_config, e.g. "
                        f"--{parameter} {defaults.get(parameter) or 1}")
            continue
        current = getattr(config, parameter)
        if _same(current, value):
            continue  # the config says so already
        if parameter in where and not _same(changes[parameter], value):
            checker.add(f"arguments[{found.position}]", f"sets {parameter} a second time, "
                        f"to another value than {where[parameter].written!r}", found.written,
                        "Keep one of them")
            continue
        if current != defaults.get(parameter):
            checker.add(f"arguments[{found.position}]", f"sets {parameter} to {value!r}, but "
                        f"{config_prefix}{parameter} is {current!r}", found.written,
                        f"Remove --{found.option.name} from arguments, or set "
                        f"{config_prefix}{parameter} to {value!r}")
            continue
        changes[parameter], where[parameter] = value, found
    if len(checker.problems) > problems or not changes:
        return config
    from daskprs.errors import ConfigError

    try:
        return config.replace(**changes)
    except ConfigError as exc:
        for problem in exc.problems:
            found = where.get(problem.parameter)
            name = f"arguments[{found.position}]" if found else problem.parameter
            checker.add(name, f"sets {problem.parameter}, which {problem.message}",
                        found.written if found else problem.value, problem.fix)
        return config


def _same(current: Any, value: Any) -> bool:
    """Whether a config value and an option's value agree (sizes compare as written,
    without spaces or case: ``"1KB"`` is ``"1kb"``)."""
    if isinstance(current, str) or isinstance(value, str):
        return str(current).replace(" ", "").lower() == str(value).replace(" ", "").lower()
    return bool(current == value)


def report_ignored_options(arguments: Sequence[Any]) -> list[str]:
    """Log, once, the Azure options in ``arguments`` that daskprs ignores; return their
    names. (They are still passed to the entry script.)"""
    ignored = [f for f in find_azure_options(Checker(), arguments) if f.option.parameter is None]
    if ignored:
        logger.warning("Azure options ignored by daskprs (still passed to the entry script): %s",
                       "; ".join(f"{f.written} ({f.option.why})" for f in ignored))
    return [f.option.name for f in ignored]
