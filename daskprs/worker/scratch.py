"""Temporary folders of a worker (``<tmp>/daskprs-<run>-*``), and removal of stale ones.

Each folder a worker makes holds an owner file naming the process that made it (pid,
start time, host). The plugin removes its folders at teardown; a worker killed before
that leaves them behind, so each plugin setup removes the ``daskprs-*`` folders whose
owner process is gone. Folders without an owner file (not made here, or still being
made) and folders of other hosts or users are never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile

import psutil

PREFIX = "daskprs-"
OWNER_FILE = ".daskprs-owner.json"
logger = logging.getLogger(__name__)


def make_owned_dir(prefix: str) -> str:
    """Make a temporary folder (``tempfile.mkdtemp``) owned by this process."""
    folder = tempfile.mkdtemp(prefix=prefix)
    mark_owned(folder)
    return folder


def mark_owned(folder: str) -> None:
    """Write ``folder``'s owner file: this process, its start time and the host."""
    me = psutil.Process()
    owner = {"pid": me.pid, "create_time": me.create_time(), "host": socket.gethostname()}
    temporary = os.path.join(folder, f"{OWNER_FILE}.{me.pid}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(owner, handle)
    os.replace(temporary, os.path.join(folder, OWNER_FILE))  # never read half-written


def remove_dir(folder: str) -> None:
    """Remove a folder and everything in it (nothing when it is gone)."""
    shutil.rmtree(folder, ignore_errors=True)


def remove_stale(root: str | None = None) -> list[str]:
    """Remove the ``daskprs-*`` folders in ``root`` (the temporary folder) whose owner
    process has ended; return them."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        with contextlib.suppress(OSError):
            if (entry.name.startswith(PREFIX) and entry.is_dir(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_uid == os.getuid()
                    and _owner_gone(entry.path)):
                remove_dir(entry.path)
                removed.append(entry.path)
    if removed:
        logger.info("removed %d stale temporary folders of ended daskprs workers: %s",
                    len(removed), ", ".join(removed))
    return removed


def _owner_gone(folder: str) -> bool:
    """Whether ``folder`` has an owner file naming a process of this host that ended."""
    try:
        with open(os.path.join(folder, OWNER_FILE), encoding="utf-8") as handle:
            owner = json.load(handle)
        pid, started, host = int(owner["pid"]), float(owner["create_time"]), owner["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not ours, or not finished: leave it
    if host != socket.gethostname():
        return False  # a shared temporary folder: its processes cannot be seen from here
    try:
        process = psutil.Process(pid)
        return (abs(process.create_time() - started) > 1.0  # the pid was reused
                or process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # access denied: assume it lives
        return False
