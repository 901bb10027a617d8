"""Attempts lost with their worker, told apart from the events attempts send.

Each attempt sends a scheduler event as it starts (:func:`daskprs.worker.wrapper.event_topic`).
When a mini-batch's record arrives, the attempt that another execution of its task was
running when that execution's worker was lost (the execution's last started attempt)
becomes a ``worker_lost`` row before the record's own attempts. Attempts such an execution
had finished left no commit (a task commits once, at its end): they are run again and not
listed, as their outcome never reached the output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

LOST_ERROR = "WorkerLost: the worker running this attempt was lost"
MAX_WORKER_LOSSES = 3


class AttemptLedger:
    """Started attempts by mini-batch, until the mini-batch's record arrives.

    Parameters
    ----------
    finished
        Whether a mini-batch id already has its record (late events are dropped).
    """

    def __init__(self, finished: Callable[[str], bool]) -> None:
        self.finished = finished
        self.started: dict[str, list[dict[str, Any]]] = {}
        self.latest: dict[str, tuple[str, int]] = {}  # execution -> its last attempt
        self.lock = threading.Lock()

    def on_event(self, event: Any) -> None:
        """``Client.subscribe_topic`` handler: ``(time, message)``."""
        message = event[1] if isinstance(event, tuple) else event
        if not isinstance(message, dict) or "id" not in message:
            return
        with self.lock:
            self.latest[message.get("execution", "")] = (message["id"], message.get("attempt"))
            if not self.finished(message["id"]):
                self.started.setdefault(message["id"], []).append(message)

    def lost(self, mini_batch_id: str, execution: str | None = None) -> list[dict[str, Any]]:
        """Attempts of a mini-batch started by executions other than ``execution``."""
        with self.lock:
            events = self.started.get(mini_batch_id, [])
            return [e for e in events if self._in_flight(e, execution)]

    def _in_flight(self, event: dict[str, Any], execution: str | None) -> bool:
        """Whether ``event`` is the attempt another execution was running at its end."""
        other = event.get("execution")
        return other != execution and self.latest.get(other or "") == (
            event["id"], event.get("attempt"))

    def running(self) -> list[dict[str, Any]]:
        """The start events of the attempts in flight: each execution's last started
        attempt, while its mini-batch has no record."""
        with self.lock:
            return [event for events in self.started.values() for event in events
                    if self.latest.get(event.get("execution", "")) == (
                        event["id"], event.get("attempt")) and not self.finished(event["id"])]

    def settle(self, mini_batch_id: str) -> None:
        """Forget the started attempts of a mini-batch whose rows arrived some other way
        (an unhealthy worker gave it away with its attempts)."""
        with self.lock:
            self.started.pop(mini_batch_id, None)

    def merge(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with its lost attempts first, its own attempts numbered after them."""
        with self.lock:
            events = self.started.pop(record["id"], [])
            lost = sorted((e for e in events if self._in_flight(e, record.get("execution"))),
                          key=lambda e: e.get("start_utc", ""))
        if not lost or record.get("reused"):
            return record
        rows = [lost_row(event, number, record.get("items", 0))
                for number, event in enumerate(lost, start=1)]
        own = [{**row, "attempt": len(rows) + row["attempt"]} for row in record["attempts"]]
        return {**record, "attempts": rows + own}


def lost_row(event: dict[str, Any], number: int, items: int) -> dict[str, Any]:
    """A ``mini_batches.csv`` row for an attempt lost with its worker (not charged)."""
    return {"attempt": number, "worker": event.get("agent", ""), "pid": event.get("pid", ""),
            "start_utc": event.get("start_utc", ""), "seconds": "", "items": items,
            "succeeded": 0, "failed": 0, "status": "worker_lost", "error": LOST_ERROR,
            "device": event.get("device", "")}
