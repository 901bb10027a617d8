"""Attempts lost with their worker, told apart from the events attempts send.

Each attempt sends a scheduler event as it starts (:func:`daskprs.worker.wrapper.event_topic`).
When a mini-batch's record arrives, the started attempts of other executions of its task
(the worker died under them) become ``worker_lost`` rows before the record's own attempts.
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
        self.lock = threading.Lock()

    def on_event(self, event: Any) -> None:
        """``Client.subscribe_topic`` handler: ``(time, message)``."""
        message = event[1] if isinstance(event, tuple) else event
        if not isinstance(message, dict) or "id" not in message:
            return
        with self.lock:
            if not self.finished(message["id"]):
                self.started.setdefault(message["id"], []).append(message)

    def lost(self, mini_batch_id: str, execution: str | None = None) -> list[dict[str, Any]]:
        """Attempts of a mini-batch started by executions other than ``execution``."""
        with self.lock:
            events = self.started.get(mini_batch_id, [])
            return [e for e in events if e.get("execution") != execution]

    def merge(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with its lost attempts first, its own attempts numbered after them."""
        with self.lock:
            events = self.started.pop(record["id"], [])
        lost = sorted((e for e in events if e.get("execution") != record.get("execution")),
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
            "succeeded": 0, "failed": 0, "status": "worker_lost", "error": LOST_ERROR}
