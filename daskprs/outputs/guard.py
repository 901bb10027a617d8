"""Guard an output folder: refuse folders daskprs did not write; one live job at a time."""

from __future__ import annotations

import contextlib
import hashlib
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

    The lock is created with an exclusive create (a hard link on local disk, a
    conditional PUT on object storage), so one job wins. A lock left by a process that no
    longer runs on this host is stale; to take it over, a job first creates
    ``lock.json.takeover-<digest of the stale content>`` exclusively: of several jobs that
    read the same stale lock, only that one removes it (and only while it still holds that
    content); the others are refused. Then all create ``lock.json`` again, and one wins.
    """

    def __init__(self, output: Location, run_id: str) -> None:
        self.output = output
        self.path = output.join(STATE_DIR, "lock.json")
        self.run_id = run_id

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputError` naming the live job."""
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "run_id": self.run_id,
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        fs = self.output.fs
        for _ in range(3):
            if create_exclusive(fs, self.path, mine):
                return
            raw = read_bytes_or_none(fs, self.path)
            if raw is None:  # released or taken over since: try again
                continue
            holder = _parse(raw)
            if holder is not None and _alive(holder):
                raise OutputError(
                    f"output: {self.output.url!r} is in use by job {holder.get('run_id')} "
                    f"(pid {holder.get('pid')} on {holder.get('host')}, since "
                    f"{holder.get('started')}). Wait for it to end, or use another output; if "
                    f"that process is gone, delete {self.path}.")
            self._remove_stale(raw, mine)
        raise OutputError(f"output: could not take the lock {self.path}. Delete it and retry.")

    def takeover_path(self, stale: bytes) -> str:
        """The marker that the one job taking over the stale lock ``stale`` creates."""
        return f"{self.path}.takeover-{hashlib.sha256(stale).hexdigest()[:16]}"

    def _remove_stale(self, stale: bytes, mine: bytes) -> None:
        """Remove the lock if it still is ``stale``, unless another job is doing so."""
        fs, marker = self.output.fs, self.takeover_path(stale)
        if not create_exclusive(fs, marker, mine):
            raise OutputError(
                f"output: {self.output.url!r} is being taken over by another job (the lock "
                f"{self.path} was left by a process that is gone). Wait for that job to end, "
                f"or use another output; if no other job runs, delete {marker}.")
        try:
            # only the holder of the marker removes this content, so it cannot change
            # between this read and the removal
            if read_bytes_or_none(fs, self.path) == stale:
                fs.rm_file(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(marker)

    def release(self) -> None:
        """Give the lock back."""
        holder = _parse(read_bytes_or_none(self.output.fs, self.path))
        if holder is not None and holder.get("run_id") == self.run_id:
            self.output.fs.rm_file(self.path)


def _parse(data: bytes | None) -> dict[str, Any] | None:
    """The lock's holder; None when there is no lock or it cannot be read (then stale)."""
    try:
        holder = None if data is None else json.loads(data)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


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
