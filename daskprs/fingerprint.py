"""The job fingerprint: what must be equal for an earlier job's results to be reused."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from typing import Any

from daskprs.config import ParallelRunConfig

_CONFIG_KEYS = ("mini_batch_size", "partition_keys", "output_action", "append_row_file_name",
                "append_row_separator", "environment", "environment_variables")


def job_fingerprint(config: ParallelRunConfig, arguments: list[str],
                    listings: list[str], output_path: str,
                    storage_options: list[dict[str, Any]]) -> str:
    """A sha256 over the source folder, script, arguments, input listings (digests of
    ``(url, size, version)`` per file) and the config parameters that change results
    (not thresholds, tries, timeouts or worker counts)."""
    parts: dict[str, Any] = {
        "source": _source_listing(config.source_directory, output_path),
        "script": _script_source(config),
        "arguments": list(arguments),
        "inputs": list(listings),
        "config": {key: getattr(config, key) for key in _CONFIG_KEYS},
        "storage_options": storage_options,
    }
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def script_fingerprint(config: ParallelRunConfig, arguments: list[str],
                       output_path: str) -> str:
    """A sha256 over what a fix of the entry script changes: the source folder, the
    script, ``arguments``, ``environment`` and ``environment_variables`` (recorded per run
    in ``mini_batches.csv`` and the job result)."""
    parts = {"source": _source_listing(config.source_directory, output_path),
             "script": _script_source(config), "arguments": list(arguments),
             "environment": config.environment,
             "environment_variables": config.environment_variables}
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# folders that scripts write into their own source folder as they run (bytecode, MLflow's
# local tracking store): a run must not change the fingerprint of the next
RUN_ARTIFACTS = frozenset({"__pycache__", "mlruns"})


def _source_listing(folder: str | None, output_path: str) -> list[tuple[str, int, int]]:
    if not folder:
        return []
    entries = []
    output = os.path.abspath(output_path) if "://" not in output_path else None
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in RUN_ARTIFACTS
                         and os.path.join(root, d) != output)
        for name in sorted(files):
            path = os.path.join(root, name)
            stat = os.stat(path)
            entries.append((os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns))
    return entries


def _script_source(config: ParallelRunConfig) -> str:
    path = config.script_path
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    pieces = []
    for name in ("init", "run", "shutdown"):
        function = getattr(config.entry_script, name, None)
        if function is not None:
            try:
                pieces.append(inspect.getsource(function))
            except (OSError, TypeError):
                pieces.append(repr(function))
    return "\n".join(pieces)
