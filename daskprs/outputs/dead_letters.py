"""Dead letters: every failed item of a job, under ``logs/``, in a form daskprs can rerun.

::

    logs/failed_items.csv      one row per failed item: mini_batch_id, input, item,
                               position, items, attempts, status, last_error
    logs/failed_items.txt      file inputs: the failed files, one path a line
                               (Dataset.File.from_file_list, YAML ``format: list``)
    logs/failed_items.parquet  tabular inputs: the failed rows themselves, with the
                               input's columns only (a Parquet input as it is)

The items of a failed mini-batch are its items. Items that ``run()`` dropped (a mini-batch
that succeeded with fewer results than items) are listed (status ``dropped``) when its
committed result identifies them (:mod:`daskprs.outputs.dropped`); otherwise the
mini-batch is named by one ``dropped`` row (``items`` dropped, no ``item``) and its rows
are not in the rerunnable files.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from daskprs.commit import BundleReader
from daskprs.inputs.formats import READ_ERROR, read_mini_batch
from daskprs.inputs.plan import MiniBatch, Plan
from daskprs.outputs.dropped import dropped_files, dropped_rows, read_result
from daskprs.outputs.reports import LogFolder
from daskprs.storage import Location

logger = logging.getLogger(__name__)

CSV_NAME = "failed_items.csv"
FILES_NAME = "failed_items.txt"
ROWS_NAME = "failed_items.parquet"
COLUMNS = ("mini_batch_id", "input", "item", "position", "items", "attempts", "status",
           "last_error")
MAX_ROWS = 1_000_000  # rows read back on the client at most; beyond, positions only
_READABLE = ("parquet", "delimited", "pandas", "keyed")


class DeadLetters:
    """Collect the final record of every mini-batch that failed or dropped items; write
    the dead-letter files when the job ends (before its bundles are removed).

    Parameters
    ----------
    plan
        The job's plan (the failed mini-batches' items are taken from it).
    output
        The output folder, whose bundles hold the results of mini-batches that dropped
        items (None: dropped items are not identified).
    action, separator
        ``output_action`` and ``append_row_separator``: how those results were written.
    """

    def __init__(self, plan: Plan, output: Location | None = None,
                 action: str = "summary_only", separator: str = " ") -> None:
        self.plan = plan
        self.output = output
        self.action = action
        self.separator = separator
        self.records: dict[int, dict[str, Any]] = {}
        self.frames: dict[int, pd.DataFrame | None] = {}
        self.read = 0

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
        self.watch({**record, "status": "failed", "succeeded": 0, "failed": record["items"],
                    "payload": None})

    def write(self, logs: LogFolder) -> None:
        """Write the files (or remove those an earlier run left when nothing failed)."""
        if not self.records:
            for name in (CSV_NAME, FILES_NAME, ROWS_NAME):
                logs.remove(name)
            return
        bundles = BundleReader(self.output.fs) if self.output is not None else None
        rows: list[list[Any]] = []
        rerun: list[tuple[MiniBatch, list[int]]] = []
        for index in sorted(self.records):
            record = self.records[index]
            mini_batch = self.plan.mini_batches[index]
            positions = (list(range(record["items"])) if record["status"] == "failed"
                         else self._identify(record, mini_batch, bundles))
            rows.extend(_csv_rows(record, mini_batch, positions))
            if positions is not None:
                rerun.append((mini_batch, positions))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        logs.write_text(CSV_NAME, text.getvalue())
        if self.plan.kind == "file":
            logs.remove(ROWS_NAME)
            paths = [mb.paths[p] for mb, positions in rerun for p in positions]
            logs.write_text(FILES_NAME, "".join(f"{p}\n" for p in paths))
        else:
            logs.remove(FILES_NAME)
            self._write_rows(logs, rerun)

    def _identify(self, record: dict[str, Any], mini_batch: MiniBatch,
                  bundles: BundleReader | None) -> list[int] | None:
        """Positions of the items ``run()`` dropped, when its result identifies them."""
        if bundles is None:
            return None
        try:
            result = read_result(bundles, record, self.action, self.separator)
            if result is None:
                return None
            if self.plan.kind == "file":
                return dropped_files(result, list(mini_batch.paths), record["failed"])
            frame = self._frame(mini_batch)
            return None if frame is None else dropped_rows(result, frame, record["failed"])
        except Exception as exc:  # a result that cannot be matched: name the mini-batch
            logger.warning("cannot tell which items %s dropped: %s: %s", mini_batch.id,
                           type(exc).__name__, exc)
            return None

    def _frame(self, mini_batch: MiniBatch) -> pd.DataFrame | None:
        """A tabular mini-batch's rows, read once; None when they cannot be read here."""
        if mini_batch.index in self.frames:
            return self.frames[mini_batch.index]
        frame = None
        if getattr(mini_batch.source, "format", None) in _READABLE and self.read < MAX_ROWS:
            frame = read_mini_batch(mini_batch)
            if READ_ERROR in frame.attrs:
                logger.warning("logs/%s: the rows of %s cannot be read (%s)", ROWS_NAME,
                               mini_batch.id, frame.attrs[READ_ERROR])
                frame = None
            else:
                frame.attrs = {}
                self.read += len(frame)
        self.frames[mini_batch.index] = frame
        return frame

    def _write_rows(self, logs: LogFolder, rerun: list[tuple[MiniBatch, list[int]]]) -> None:
        frames = []
        for mini_batch, positions in rerun:
            frame = self._frame(mini_batch)
            if frame is None:
                logs.remove(ROWS_NAME)
                logger.warning("not writing logs/%s: the rows of %s are not read back here "
                               "(a Dask DataFrame input, an unreadable file, or more than %d "
                               "rows); logs/%s lists their positions", ROWS_NAME,
                               mini_batch.id, MAX_ROWS, CSV_NAME)
                return
            frames.append(frame.iloc[positions])
        if not frames:
            logs.remove(ROWS_NAME)
            return
        buffer = io.BytesIO()
        pd.concat(frames, ignore_index=True).to_parquet(buffer, index=False)
        logs.write_bytes(ROWS_NAME, buffer.getvalue())


def _csv_rows(record: dict[str, Any], mini_batch: MiniBatch, positions: list[int] | None
              ) -> Iterator[list[Any]]:
    attempts = len(record.get("attempts") or [])
    error = " ".join(str(record.get("error") or "").split())
    status = record["status"]
    head = [record["id"], record["input"]]
    if positions is None:  # dropped items that cannot be identified: the mini-batch
        yield [*head, "", "", record["failed"], attempts, status, error]
        return
    for offset in positions:
        yield [*head, *_item(mini_batch, offset), 1, attempts, status, error]


def _item(mini_batch: MiniBatch, offset: int) -> tuple[str, Any]:
    """``(item, position)`` of an item: a file's path and its place in the input's sorted
    listing; a row's ``<file>#<row>`` and its row number (from 0 in the file or
    DataFrame), or ``<mini-batch id>[k]`` where rows have no known place (partition keys)."""
    first = mini_batch.first_row
    if mini_batch.paths:
        return mini_batch.paths[offset], (first or 0) + offset
    if first is None:
        return f"{mini_batch.id}[{offset}]", ""
    return f"{mini_batch.path or mini_batch.input_name}#{first + offset}", first + offset


__all__ = ["COLUMNS", "CSV_NAME", "FILES_NAME", "ROWS_NAME", "DeadLetters"]
