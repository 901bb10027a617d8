"""The client's files under ``logs/``: results, errors, progress, the attempt table."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from typing import Any

from daskprs.result import JobResult
from daskprs.storage import Location, write_atomic
from daskprs.storage.secrets import redact

ATTEMPT_COLUMNS = ("run_id", "mini_batch_id", "input", "first_item", "last_item", "attempt",
                   "worker", "pid", "start_utc", "seconds", "items", "succeeded", "failed",
                   "status", "error", "device", "script")
FLUSH_SECONDS = 10.0
APPENDED = ("sys/mini_batches.csv", "job_progress_overview.txt")  # every run appends

README = """\
This folder was written by daskprs (a Dask re-creation of Azure ML's ParallelRunStep).

  {output_file:<27}  {output_text}
  logs/job_result.txt          first line: Completed | Failed | Canceled; counts, time, errors
  logs/job_result.json         the same, machine-readable
  logs/job_error.txt           the first errors: mini-batch, its inputs, exception (if any)
  logs/job_progress_overview.txt  progress, rate, ETA, failures (rewritten every few seconds)
  logs/sys/mini_batches.csv    one row per attempt of a mini-batch
  logs/failed_items.csv        every failed item: mini-batch, attempts, last error
  logs/failed_items.txt|.parquet  the failed files | rows: an input to rerun exactly them
  logs/sys/client.txt          the driver's log
  logs/sys/workers/<worker>.txt   daskprs' log on each worker
  logs/user/entry_script_log/<worker>.log.txt   EntryScript().logger
  logs/user/stdout/<worker>.txt   print() and the root logger of the entry script
  logs/user/stderr/<worker>.txt   stderr of the entry script
  logs/user/error/<worker>.txt    full tracebacks of failed attempts
  _daskprs/                    daskprs' state (commit records, lock): do not edit
"""
_OUTPUT_TEXT = {"append_row": "every result, in mini-batch order",
                "parquet": "data/part-NNNNN.parquet, one per mini-batch with results",
                "summary_only": "(summary_only: no output file; counts and logs only)"}


class LogFolder:
    """The job's ``logs/`` folder as the client writes it.

    Local outputs are written in place; for object storage the client writes a local
    copy and uploads it with :meth:`sync`.
    """

    def __init__(self, output: Location) -> None:
        self.output = output
        self.local = output.join("logs") if output.is_local else tempfile.mkdtemp(
            prefix="daskprs-logs-")
        os.makedirs(os.path.join(self.local, "sys"), exist_ok=True)
        self.synced = time.monotonic()
        if not output.is_local:  # appended files go on from what earlier runs wrote
            for name in APPENDED:
                self._fetch(name)

    def _fetch(self, name: str) -> None:
        """Copy a file an earlier run uploaded to the local copy (object storage only)."""
        try:
            data = self.output.fs.cat_file(self.output.join("logs", name))
        except FileNotFoundError:
            return
        with open(self.path(name), "wb") as handle:
            handle.write(data)

    def path(self, *parts: str) -> str:
        """A local path below ``logs/``."""
        return os.path.join(self.local, *parts)

    def write_text(self, name: str, text: str) -> None:
        """Write a whole file atomically."""
        write_atomic(self.output.fs if self.output.is_local else _local_fs(), self.path(name),
                     redact(text).encode("utf-8"))

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole binary file atomically (not redacted: data, not text)."""
        write_atomic(self.output.fs if self.output.is_local else _local_fs(), self.path(name),
                     data)

    def remove(self, name: str) -> None:
        """Remove a file below ``logs/`` if it is there (and its uploaded copy)."""
        if os.path.exists(self.path(name)):
            os.remove(self.path(name))
        if not self.output.is_local and self.output.fs.exists(self.output.join("logs", name)):
            self.output.fs.rm_file(self.output.join("logs", name))

    def close(self) -> None:
        """Upload the logs a last time and remove the local copy (object storage only)."""
        if self.output.is_local:
            return
        self.sync(force=True)
        shutil.rmtree(self.local, ignore_errors=True)

    def sync(self, force: bool = True) -> None:
        """Upload the local copy to the output (object storage only), at most every 10 s
        unless forced."""
        if self.output.is_local or not (force or time.monotonic() - self.synced >= 10):
            return
        self.output.fs.put(self.local.rstrip("/") + "/", self.output.join("logs"),
                           recursive=True)
        self.synced = time.monotonic()


def _local_fs() -> Any:
    import fsspec

    return fsspec.filesystem("file")


class AttemptTable:
    """``logs/sys/mini_batches.csv``: one row per attempt, appended, flushed every 10 s;
    ``script`` is the fingerprint of the entry script version the run used."""

    def __init__(self, logs: LogFolder, run_id: str, script: str = "") -> None:
        self.logs = logs
        self.run_id = run_id
        self.script = script
        path = logs.path("sys", "mini_batches.csv")
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        self.handle = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.writer = csv.writer(self.handle, lineterminator="\n")
        if new:
            self.writer.writerow(ATTEMPT_COLUMNS)
        self.flushed = time.monotonic()

    def add(self, record: dict[str, Any]) -> None:
        """Write a row per attempt of a record."""
        for attempt in record["attempts"]:
            self.writer.writerow([self.run_id, record["id"], record["input"],
                                  record["first_item"], record["last_item"],
                                  attempt["attempt"], attempt["worker"], attempt["pid"],
                                  attempt["start_utc"], attempt["seconds"], attempt["items"],
                                  attempt["succeeded"], attempt["failed"], attempt["status"],
                                  redact(" ".join(str(attempt["error"]).split())),
                                  attempt.get("device", ""), self.script])
        if time.monotonic() - self.flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows to disk (and upload the logs of a remote output)."""
        self.handle.flush()
        self.flushed = time.monotonic()
        self.logs.sync(force=False)

    def close(self) -> None:
        """Flush and close."""
        self.handle.close()

    def __enter__(self) -> AttemptTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_readme(logs: LogFolder, action: str, file_name: str) -> None:
    """``logs/readme.txt``: the layout, for someone who opens the folder."""
    output_file = {"append_row": file_name, "parquet": "data/"}.get(action, "(no output file)")
    logs.write_text("readme.txt", README.format(output_file=output_file,
                                                output_text=_OUTPUT_TEXT[action]))


def write_job_result(logs: LogFolder, result: JobResult) -> None:
    """``job_result.txt``, ``job_result.json`` and, when attempts failed, ``job_error.txt``
    (else a ``job_error.txt`` left by an earlier run is removed: the result points to no
    file that does not describe this job)."""
    logs.write_text("job_result.txt", f"{result.summary()}\n{where_to_look(result)}\n")
    logs.write_text("job_result.json", json.dumps(result.to_dict(), indent=2, default=str))
    if not result.first_errors:
        logs.remove("job_error.txt")
    else:
        lines = []
        for error in result.first_errors:
            lines.append(f"mini-batch {error['mini_batch_id']} (input {error['input']}, items "
                         f"{error['first_item']} .. {error['last_item']}), attempt "
                         f"{error['attempt']} on {error['worker']}: {error['status']}\n"
                         f"  {error['error']}\n"
                         f"  traceback: logs/user/error/{error['worker']}.txt\n")
        logs.write_text("job_error.txt", "\n".join(lines))


def where_to_look(result: JobResult) -> str:
    """The ``where to look:`` line: the log files that hold something for this job."""
    if result.first_errors:
        files = ("logs/job_error.txt (first errors), logs/user/error/<worker>.txt "
                 "(tracebacks), logs/sys/mini_batches.csv (every attempt)")
    else:
        files = "logs/sys/mini_batches.csv (every attempt), logs/sys/client.txt (the driver's log)"
    if result.items.get("failed"):
        files += ", logs/failed_items.csv (every failed item; rerun them: --retry-failed)"
    return f"where to look: {files}"


def progress_line(done: int, total: int, failed_items: int, failed_batches: int) -> str:
    """One line of ``job_progress_overview.txt``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return (f"{stamp} mini-batches {done}/{total} done, {failed_batches} failed; "
            f"failed items {failed_items}\n")
