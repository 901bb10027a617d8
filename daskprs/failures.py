"""Count failures over the job and decide when a threshold is exceeded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FIRST_ERRORS = 10
# attempts that are not errors of the job: retried transient failures (counted on their
# own) and attempts discarded because another attempt of the mini-batch committed first
_NOT_ERRORS = ("succeeded", "transient", "overtaken")


@dataclass
class FailureCounter:
    """Cluster-wide, live counts of a job's mini-batches, items and attempts.

    Parameters
    ----------
    planned
        Mini-batches in the job (for ``allowed_failed_percent``).
    error_threshold, allowed_failed_count, allowed_failed_percent
        The limits (-1, -1 and 100 disable them).
    """

    planned: int
    error_threshold: int = -1
    allowed_failed_count: int = -1
    allowed_failed_percent: float = 100
    mini_batches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("total", "succeeded", "failed", "reused"), 0))
    items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("total", "succeeded", "failed"), 0))
    attempts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("total", "failed", "timed_out", "crashed", "worker_lost", "transient"), 0))
    first_errors: list[dict[str, Any]] = field(default_factory=list)
    stragglers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("backups", "backups_won"), 0))
    devices: dict[str, str] = field(default_factory=dict)  # worker -> its runner's GPUs

    def __post_init__(self) -> None:
        self.mini_batches["total"] = self.planned

    def add(self, record: dict[str, Any], earlier_run: bool = False) -> None:
        """Count a mini-batch's final record (``earlier_run``: committed by a previous run)."""
        status = record["status"]
        self.mini_batches[status] += 1
        if earlier_run:
            self.mini_batches["reused"] += 1
        self.items["total"] += record["items"]
        self.items["succeeded"] += record["succeeded"]
        self.items["failed"] += record["failed"]
        for attempt in record["attempts"]:
            if attempt.get("device"):
                self.devices[str(attempt["worker"])] = str(attempt["device"])
            self.attempts["total"] += 1
            if attempt["status"] in self.attempts:
                self.attempts[attempt["status"]] += 1
            if attempt["status"] not in _NOT_ERRORS and len(self.first_errors) < FIRST_ERRORS:
                self.first_errors.append({
                    "mini_batch_id": record["id"], "input": record["input"],
                    "first_item": record["first_item"], "last_item": record["last_item"],
                    "attempt": attempt["attempt"], "worker": attempt["worker"],
                    "status": attempt["status"], "error": attempt["error"]})

    def reject(self, record: dict[str, Any]) -> None:
        """Count a succeeded mini-batch as failed after all (its result cannot be used)."""
        self.mini_batches["succeeded"] -= 1
        self.mini_batches["failed"] += 1
        self.items["succeeded"] -= record["succeeded"]
        self.items["failed"] += record["succeeded"]
        if len(self.first_errors) < FIRST_ERRORS:
            self.first_errors.append({
                "mini_batch_id": record["id"], "input": record["input"],
                "first_item": record["first_item"], "last_item": record["last_item"],
                "attempt": record["attempts"][-1]["attempt"] if record["attempts"] else 0,
                "worker": "client", "status": "failed", "error": record["error"]})

    def exceeded(self) -> str | None:
        """The reason the job fails now, or None."""
        failed_items, failed = self.items["failed"], self.mini_batches["failed"]
        if 0 <= self.error_threshold < failed_items:
            return (f"error_threshold exceeded: {failed_items} failed items > "
                    f"{self.error_threshold}")
        if 0 <= self.allowed_failed_count < failed:
            return (f"allowed_failed_count exceeded: {failed} failed mini-batches > "
                    f"{self.allowed_failed_count}")
        percent = 100 * failed / max(self.planned, 1)
        if self.allowed_failed_percent < 100 and percent > self.allowed_failed_percent:
            return (f"allowed_failed_percent exceeded: {failed} of {self.planned} mini-batches "
                    f"failed ({percent:.2f}% > {self.allowed_failed_percent:g}%)")
        return None

    def thresholds(self) -> dict[str, Any]:
        """The limits, as ``job_result.json`` shows them."""
        return {"error_threshold": self.error_threshold,
                "allowed_failed_count": self.allowed_failed_count,
                "allowed_failed_percent": self.allowed_failed_percent}
