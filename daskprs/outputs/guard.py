"""Guard an output folder: refuse folders daskprs did not write; one live job at a time."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from daskprs.commit import STATE_DIR
from daskprs.errors import OutputError
from daskprs.storage import Location, create_exclusive, read_bytes_or_none

_OURS = (STATE_DIR, "logs")


def check_output_is_ours(output: Location) -> None:
    """Refuse a non-empty folder that holds no ``_daskprs/``: daskprs deletes nothing it
    did not write.

    Raises
    ------
    OutputError
        When the folder has other content, or ``output`` is a file.
    """
    fs = output.fs
    if not fs.exists(output.path):
        return
    if fs.isfile(output.path):
        raise OutputError(f"output: {output.url!r} is a file. Give a folder path for output.")
    names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(output.path, detail=False)]
    if names and STATE_DIR not in names:
        shown = ", ".join(sorted(names)[:5])
        raise OutputError(f"output: {output.url!r} is not empty ({shown}) and was not written "
                          f"by daskprs (no {STATE_DIR}/ folder); daskprs never deletes files "
                          f"it did not write. Use a new or empty folder for output.")


class OutputLock:
    """``_daskprs/lock.json``: refuses a second live job on the same output.

    A lock left by a process that no longer runs on this host is taken over.
    """

    def __init__(self, output: Location, run_id: str) -> None:
        self.output = output
        self.path = output.join(STATE_DIR, "lock.json")
        self.run_id = run_id

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputError` naming the live job."""
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": self.run_id,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        fs = self.output.fs
        for _ in range(2):
            if create_exclusive(fs, self.path, json.dumps(mine).encode()):
                return
            holder = _read(fs, self.path)
            if holder is not None and _alive(holder):
                raise OutputError(
                    f"output: {self.output.url!r} is in use by job {holder.get('run_id')} "
                    f"(pid {holder.get('pid')} on {holder.get('host')}, since "
                    f"{holder.get('started')}). Wait for it to end, or use another output; if "
                    f"that process is gone, delete {self.path}.")
            fs.rm_file(self.path)
        raise OutputError(f"output: could not take the lock {self.path}. Delete it and retry.")

    def release(self) -> None:
        """Give the lock back."""
        holder = _read(self.output.fs, self.path)
        if holder is not None and holder.get("run_id") == self.run_id:
            self.output.fs.rm_file(self.path)


def _read(fs: Any, path: str) -> dict[str, Any] | None:
    data = read_bytes_or_none(fs, path)
    try:
        return None if data is None else json.loads(data)
    except ValueError:
        return None


def _alive(holder: dict[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True
