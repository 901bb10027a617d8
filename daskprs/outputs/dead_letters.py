"""Dead letters: every failed item of a job, under ``logs/``, in a form daskprs can rerun.

::

    logs/failed_items.csv      one row per failed item: mini_batch_id, input, item,
                               position, items, attempts, status, last_error
    logs/failed_items.txt      file inputs: the failed files, one path a line
                               (Dataset.File.from_file_list, YAML ``format: list``)
    logs/failed_items.parquet  tabular inputs: the failed rows themselves, with the
                               input's columns only (a Parquet input as it is)

The items of a failed mini-batch are its items. Items that ``run()`` dropped (a mini-batch
that succeeded with fewer results than items) cannot be told apart from the others, so
such a mini-batch is named by one ``dropped`` row (``items`` dropped, no ``item``) and
its rows are not in the rerunnable files.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from daskprs.inputs.formats import READ_ERROR, read_mini_batch
from daskprs.inputs.plan import MiniBatch, Plan
from daskprs.outputs.reports import LogFolder

logger = logging.getLogger(__name__)

CSV_NAME = "failed_items.csv"
FILES_NAME = "failed_items.txt"
ROWS_NAME = "failed_items.parquet"
COLUMNS = ("mini_batch_id", "input", "item", "position", "items", "attempts", "status",
           "last_error")
MAX_ROWS = 1_000_000  # failed rows read back on the client at most; beyond, positions only
_READABLE = ("parquet", "delimited", "pandas", "keyed")


class DeadLetters:
    """Collect the final record of every mini-batch that failed or dropped items; write
    the dead-letter files when the job ends.

    Parameters
    ----------
    plan
        The job's plan (the failed mini-batches' items are taken from it).
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.records: dict[int, dict[str, Any]] = {}

    def watch(self, record: dict[str, Any]) -> None:
        """Take a mini-batch's final record (the last one of a mini-batch wins)."""
        index = record["index"]
        if record["status"] == "failed":
            self.records[index] = record
        elif record["status"] == "succeeded" and record.get("failed", 0) > 0:
            self.records[index] = {**record, "status": "dropped"}
        else:
            self.records.pop(index, None)

    def reject(self, record: dict[str, Any]) -> None:
        """Take a succeeded mini-batch whose result could not be used (it failed after all)."""
        self.watch({**record, "status": "failed", "succeeded": 0, "failed": record["items"]})

    @property
    def failed_items(self) -> int:
        """Items of failed mini-batches plus items ``run()`` dropped."""
        return sum(r["failed"] for r in self.records.values())

    def write(self, logs: LogFolder) -> None:
        """Write the files (or remove those an earlier run left when nothing failed)."""
        names = (CSV_NAME, FILES_NAME, ROWS_NAME)
        if not self.records:
            for name in names:
                logs.remove(name)
            return
        ordered = [self.records[i] for i in sorted(self.records)]
        rows = [row for record in ordered for row in self._rows(record)]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        logs.write_text(CSV_NAME, text.getvalue())
        failed = [r for r in ordered if r["status"] == "failed"]
        if self.plan.kind == "file":
            logs.remove(ROWS_NAME)
            paths = [p for r in failed for p in self._mini_batch(r).paths]
            logs.write_text(FILES_NAME, "".join(f"{p}\n" for p in paths))
        else:
            logs.remove(FILES_NAME)
            self._write_rows(logs, failed)

    def _mini_batch(self, record: dict[str, Any]) -> MiniBatch:
        return self.plan.mini_batches[record["index"]]

    def _rows(self, record: dict[str, Any]) -> Iterator[list[Any]]:
        attempts = len(record.get("attempts") or [])
        error = " ".join(str(record.get("error") or "").split())
        head = [record["id"], record["input"]]
        if record["status"] == "dropped":
            yield [*head, "", "", record["failed"], attempts, "dropped", error]
            return
        mini_batch = self._mini_batch(record)
        for item, position in _items(mini_batch, record["items"]):
            yield [*head, item, position, 1, attempts, "failed", error]

    def _write_rows(self, logs: LogFolder, failed: list[dict[str, Any]]) -> None:
        count = sum(r["items"] for r in failed)
        batches = [self._mini_batch(r) for r in failed]
        unreadable = [mb.id for mb in batches
                      if getattr(mb.source, "format", None) not in _READABLE]
        if count > MAX_ROWS or unreadable:
            logs.remove(ROWS_NAME)
            why = (f"{count} failed rows are more than {MAX_ROWS}" if count > MAX_ROWS else
                   f"the rows of a Dask DataFrame input are not read back ({unreadable[0]})")
            logger.warning("not writing logs/%s: %s; logs/%s lists their positions", ROWS_NAME,
                           why, CSV_NAME)
            return
        frames = []
        for mini_batch in batches:
            frame = read_mini_batch(mini_batch)
            if READ_ERROR in frame.attrs:  # the input itself cannot be read: positions only
                logger.warning("logs/%s: the rows of %s cannot be read (%s)", ROWS_NAME,
                               mini_batch.id, frame.attrs[READ_ERROR])
                continue
            frame.attrs = {}
            frames.append(frame)
        if not frames:
            logs.remove(ROWS_NAME)
            return
        buffer = io.BytesIO()
        pd.concat(frames, ignore_index=True).to_parquet(buffer, index=False)
        logs.write_bytes(ROWS_NAME, buffer.getvalue())


def _items(mini_batch: MiniBatch, count: int) -> Iterator[tuple[str, Any]]:
    """``(item, position)`` of each item: a file's path and its place in the input's
    sorted listing; a row's ``<file>#<row>`` and its row number (from 0 in the file or
    DataFrame), or ``<mini-batch id>[k]`` where rows have no known place (partition keys)."""
    if mini_batch.paths:
        first = mini_batch.first_row or 0
        for offset, path in enumerate(mini_batch.paths):
            yield path, first + offset
        return
    where = mini_batch.path or mini_batch.input_name
    for offset in range(count):
        if mini_batch.first_row is None:
            yield f"{mini_batch.id}[{offset}]", ""
        else:
            row = mini_batch.first_row + offset
            yield f"{where}#{row}", row


__all__ = ["COLUMNS", "CSV_NAME", "FILES_NAME", "ROWS_NAME", "DeadLetters"]
