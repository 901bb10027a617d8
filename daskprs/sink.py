"""RecordSink: where each finished mini-batch's record goes on the client."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from daskprs.failures import FailureCounter
from daskprs.outputs.assemble import OrderedAssembler
from daskprs.outputs.reports import AttemptTable, progress_line
from daskprs.progress import NullProgress


class RecordSink:
    """Count, log, assemble and show each record; say when the job must stop.

    Parameters
    ----------
    counter
        Live failure counts and thresholds.
    assembler
        Writes committed results in mini-batch order.
    table
        ``mini_batches.csv``.
    progress
        The progress bar (or the null hook).
    overview
        ``job_progress_overview.txt``, open for appending.
    """

    def __init__(self, counter: FailureCounter, assembler: OrderedAssembler,
                 table: AttemptTable, progress: NullProgress, overview: IO[str]) -> None:
        self.counter = counter
        self.assembler = assembler
        self.table = table
        self.progress = progress
        self.overview = overview
        self.done = 0
        self.seen: set[str] = set()
        self.watchers: list[Any] = []  # each has watch(record) and reject(record)
        #: the attempts in flight (start events), set by an executor that knows them
        self.running: Callable[[], list[dict[str, Any]]] = list

    def add_earlier(self, record: dict[str, Any]) -> None:
        """Take a record committed by an earlier run of the same job."""
        self.seen.add(record["id"])
        self.counter.add(record, earlier_run=True)
        for watcher in self.watchers:
            watcher.watch(record)
        self.assembler.add(record)
        self.progress.update(record)
        self.done += 1

    def add(self, record: dict[str, Any]) -> str | None:
        """Take a record from this run; return the failure reason when a threshold is
        exceeded. A second record of a mini-batch (a task Dask ran twice) is ignored."""
        if record["id"] in self.seen:
            return None
        self.seen.add(record["id"])
        self.table.add(record)
        self.counter.add(record, earlier_run=bool(record.get("reused")))
        for watcher in self.watchers:
            watcher.watch(record)
        self.assembler.add(record)
        for rejected in self.assembler.take_rejected():
            self.counter.reject(rejected)
            for watcher in self.watchers:
                watcher.reject(rejected)
        self.progress.update(record)
        self.done += 1
        self.overview.write(progress_line(self.done, self.counter.planned,
                                          self.counter.items["failed"],
                                          self.counter.mini_batches["failed"]))
        return self.counter.exceeded()
