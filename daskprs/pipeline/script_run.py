"""Run a PythonScriptStep as a subprocess, or reuse its last run.

The step's state is ``<output_root>/<step>/_daskprs/script_step.json``: a run is reused
when the fingerprint (the script's folder, its arguments and params, what it reads) is
unchanged, the last run completed and every output folder exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from daskprs.datasets import DatasetBase
from daskprs.inputs.listing import list_input, listing_digest
from daskprs.pipeline.result import ScriptResult
from daskprs.pipeline.script_step import PythonScriptStep
from daskprs.result import COMPLETED, FAILED
from daskprs.storage import Location, read_bytes_or_none, write_atomic

logger = logging.getLogger(__name__)
STATE = ("_daskprs", "script_step.json")
_TAIL = 2000


def script_fingerprint(step: PythonScriptStep, arguments: list[str], read: list[str],
                       skip: str) -> str:
    """sha256 over the script's content (and the files of ``hash_paths``), arguments,
    params, the run ids of the steps it reads from (``read``) and a listing of its other
    dataset inputs.

    ``skip``: a folder below ``source_directory`` not to hash (the output root).
    """
    paths = [step.script_path, *step.hash_paths]
    parts = {"script": step.script_name, "source": [_source_digest(p, skip) for p in paths],
             "arguments": arguments, "params": {k: str(v) for k, v in step.params.items()},
             "read": sorted(read), "inputs": _inputs_digest(step.inputs)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def reusable(step: PythonScriptStep, home: str, fingerprint: str,
             outputs: dict[str, str]) -> ScriptResult | None:
    """The last run of ``step`` when it can be reused, else None."""
    if not step.allow_reuse:
        return None
    state = Location(home)
    data = read_bytes_or_none(state.fs, state.join(*STATE))
    if data is None:
        return None
    last = ScriptResult.from_dict(json.loads(data))
    if last.status != COMPLETED or last.fingerprint != fingerprint:
        return None
    for name, folder in outputs.items():
        where = Location(folder)
        if not where.fs.exists(where.path):
            logger.warning("not reusing step %s: its output %s (%s) is gone", step.name, name,
                           folder)
            return None
    last.reused = True
    return last


def run_script(step: PythonScriptStep, arguments: list[str], outputs: dict[str, str],
               home: str, fingerprint: str, clear: list[str]) -> ScriptResult:
    """Run the script once; record its state. ``clear``: output folders to empty first."""
    clock = time.perf_counter()
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    state = Location(home)
    if state.fs.exists(state.join(*STATE)):  # a run that dies leaves nothing to reuse
        state.fs.rm_file(state.join(*STATE))
    for folder in outputs.values():
        where = Location(folder)
        if folder in clear and where.fs.exists(where.path):
            where.fs.rm(where.path, recursive=True)
        where.fs.makedirs(where.path, exist_ok=True)
    env = dict(os.environ, **{f"AML_PARAMETER_{k}": str(v) for k, v in step.params.items()})
    command = [sys.executable, step.script_path, *arguments]
    logger.info("%s: %s", step.name, " ".join(command))
    done = subprocess.run(command, cwd=step.source_directory, env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, check=False)
    logs = state.join("logs")
    state.fs.makedirs(logs, exist_ok=True)
    write_atomic(state.fs, state.join("logs", "stdout.txt"), done.stdout)
    write_atomic(state.fs, state.join("logs", "stderr.txt"), done.stderr)
    reason = ""
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-_TAIL:]
        last = tail.splitlines()[-1] if tail else "no output on stderr"
        reason = f"the script exited with code {done.returncode}: {last}"
    result = ScriptResult(status=COMPLETED if done.returncode == 0 else FAILED,
                          run_id=run_id, fingerprint=fingerprint,
                          seconds=round(time.perf_counter() - clock, 3),
                          returncode=done.returncode, outputs=dict(outputs),
                          logs=state.join("logs") if "://" not in home else f"{home}/logs",
                          reason=reason)
    state.fs.makedirs(state.join(STATE[0]), exist_ok=True)
    write_atomic(state.fs, state.join(*STATE), json.dumps(result.to_dict(), indent=2).encode())
    return result


def _source_digest(path: str, skip: str) -> str:
    """sha256 over the contents of a file, or of every file below a folder."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    folder = path
    skip = os.path.abspath(skip) if "://" not in skip else ""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__"
                         and os.path.join(root, d) != skip)
        for name in sorted(files):
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                digest.update(os.path.relpath(path, folder).encode() + b"\0")
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def _inputs_digest(inputs: list[Any]) -> list[str]:
    """A listing digest of each plain dataset input (placeholders are counted by the run
    ids of the steps that write them)."""
    digests = []
    for item in inputs:
        paths = tuple(getattr(item, "paths", ()) or ())
        if not isinstance(item, DatasetBase) or not paths or "pipelinedata://" in paths[0]:
            continue
        files = list_input(paths, dict(item.storage_options), None, f"input {item.name!r}")
        digests.append(listing_digest((f.url, f.size, f.version) for f in files))
    return digests
