"""Stragglers: a backup attempt for a mini-batch that runs far longer than the others.

With ``straggler_factor`` set, once every mini-batch has been submitted, the client looks
for a task whose running mini-batch started more than ``straggler_factor`` × the median
mini-batch time ago, and starts a second execution of that task (a *backup*) on an idle
worker. Both executions commit the same bundle name, created exclusively, so the first to
commit wins and the other's commit returns the winner's records (:mod:`daskprs.commit`).
When the first record arrives, the client cancels the other execution and tells its
worker to abandon it: its runner is killed (it is replaced only if another mini-batch
comes), it commits nothing, and its attempt is listed as ``overtaken``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

OVERTAKEN = "overtaken"
OVERTAKEN_ERROR = ("Overtaken: another attempt of this mini-batch committed first; this one "
                   "was discarded")
MIN_SAMPLES = 3


@dataclass
class Backup:
    """A task that has two executions: the first one and its backup."""

    primary_key: str
    primary_worker: str
    backup_key: str
    backup_worker: str


class StragglerWatch:
    """Start times of running mini-batches and the median mini-batch time.

    Parameters
    ----------
    factor
        ``straggler_factor``.
    clock
        Monotonic seconds (a parameter for tests).
    """

    def __init__(self, factor: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.factor = factor
        self.clock = clock
        self.times: list[float] = []
        self.running: dict[str, tuple[float, str]] = {}  # mini-batch id -> (since, worker)
        self.executions: dict[str, str] = {}  # execution -> worker address
        self.lock = threading.Lock()

    def on_event(self, message: dict[str, Any]) -> None:
        """An attempt started (a scheduler event; ``worker`` is the worker's address)."""
        if not isinstance(message, dict) or "id" not in message:
            return
        with self.lock:
            worker = str(message.get("worker") or "")
            self.running[message["id"]] = (self.clock(), worker)
            if message.get("execution"):
                self.executions[message["execution"]] = worker

    def observe(self, mini_batch_id: str, elapsed: float | None) -> None:
        """A mini-batch's record arrived, with the time it took on its worker."""
        with self.lock:
            self.running.pop(mini_batch_id, None)
            if elapsed is not None:
                self.times.append(float(elapsed))

    def median(self) -> float | None:
        """The median mini-batch time, once :data:`MIN_SAMPLES` mini-batches finished."""
        with self.lock:
            return statistics.median(self.times) if len(self.times) >= MIN_SAMPLES else None

    def straggling(self, ids: Iterable[str]) -> tuple[float, str] | None:
        """``(seconds running, worker)`` of the latest started of ``ids`` when it runs
        longer than ``factor`` × the median, else None."""
        median = self.median()
        if median is None:
            return None
        with self.lock:
            started = [self.running[i] for i in ids if i in self.running]
        if not started:
            return None
        since, worker = max(started)
        seconds = self.clock() - since
        return (seconds, worker) if seconds > self.factor * median else None

    def worker_of(self, execution: str | None) -> str | None:
        """The worker address an execution announced its attempts from."""
        with self.lock:
            return self.executions.get(execution or "")


def idle_workers(client: Any, exclude: Iterable[str]) -> list[str]:
    """Workers with no task processing, not in ``exclude``."""
    busy = client.processing()
    skip = set(exclude)
    return sorted(w for w, keys in busy.items() if not keys and w not in skip)


def mark_overtaken(record: dict[str, Any]) -> dict[str, Any]:
    """The record with the discarded execution's attempt (listed as lost with its worker
    by :mod:`daskprs.lost_attempts`) shown as ``overtaken`` instead."""
    rows = [{**row, "status": OVERTAKEN, "error": OVERTAKEN_ERROR}
            if row.get("status") == "worker_lost" else row for row in record["attempts"]]
    return {**record, "attempts": rows}


def abandon_attempts(plugin_name: str, mini_batch_ids: list[str], starting: bool = False,
                     dask_worker: Any = None) -> bool:
    """On a worker (``Client.run``): abandon the job's attempts of ``mini_batch_ids``
    (``starting``: and a runner whose ``init()`` still runs)."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker is not None else None
    if plugin is None or not hasattr(plugin, "abandon"):
        return False
    plugin.abandon(mini_batch_ids, starting)
    return True


def kill_group(pid: int | None) -> None:
    """Kill a runner's process group (the runner leads its own session)."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


__all__ = ["OVERTAKEN", "OVERTAKEN_ERROR", "Backup", "StragglerWatch", "abandon_attempts",
           "idle_workers", "kill_group", "mark_overtaken"]
