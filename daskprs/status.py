"""The live status of a job: written by the client while it runs, read by ``daskprs status``.

While a job runs, :class:`ProgressReporter` rewrites, every ``daskprs.progress-interval``
seconds (Dask config, default 5; ``DASK_DASKPRS__PROGRESS_INTERVAL``):

* ``_daskprs/progress.json``: the plan's counts, what is done, the attempts in flight;
* ``logs/job_progress_overview.txt``: the same as text (what ``daskprs status`` prints),
  so the file keeps moving even when no mini-batch ends for a while.

:func:`read_status` works on any output folder (local, ``s3://``, ``abfs://``): for a job
that runs (or was killed) it counts the committed bundles of the run (exact, whatever
the snapshot's age) and takes the plan's totals and the attempts in flight from the
snapshot; for a finished job it reads ``logs/job_result.json`` and the slowest attempts
of ``logs/sys/mini_batches.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from daskprs.commit import STATE_DIR, StateStore, decode_header
from daskprs.commit.bundle import read_header
from daskprs.errors import OutputError
from daskprs.outputs.guard import _alive
from daskprs.storage import Location, read_bytes_or_none, write_atomic

SNAPSHOT = "progress.json"
OVERVIEW = "job_progress_overview.txt"
DEFAULT_INTERVAL = 5.0
SHOWN = 5  # slowest mini-batches shown
_HEADER_READ = 64 * 1024
RUNNING, STOPPED = "Running", "Stopped"


def progress_interval() -> float:
    """Seconds between two rewrites of the snapshot: Dask config
    ``daskprs.progress-interval``, default 5."""
    import dask

    return max(float(dask.config.get("daskprs.progress-interval", DEFAULT_INTERVAL)), 0.05)


@dataclass
class JobStatus:
    """Where a job is: counts, rate, ETA, failures, slowest mini-batches.

    ``state`` is ``Running``, ``Stopped`` (the job's record says running but its process
    is gone), or the final ``Completed``, ``Failed``, ``Canceled``. ``mini_batches`` has
    ``total`` (None when unknown), ``done``, ``succeeded``, ``failed``, ``reused``;
    ``items`` has ``total``, ``done``, ``succeeded``, ``failed``. ``slowest``: attempts
    in flight, longest running first (a running job), or the longest attempts (a
    finished one), each ``{"id", "attempt", "worker", "seconds", "running"}``.
    """

    output: str
    state: str
    run_id: str = ""
    started: str = ""
    seconds: float = 0.0
    mini_batches: dict[str, Any] = field(default_factory=dict)
    items: dict[str, Any] = field(default_factory=dict)
    slowest: list[dict[str, Any]] = field(default_factory=list)
    holder: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    updated: str = ""

    @property
    def running(self) -> bool:
        """Whether the job's process is still working on it."""
        return self.state == RUNNING

    @property
    def rate(self) -> float | None:
        """Mini-batches of this run per second since the job started."""
        done = self.mini_batches.get("done", 0) - self.mini_batches.get("reused", 0)
        return done / self.seconds if self.seconds > 0 and done > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at :attr:`rate`, for a running job with a known total."""
        total, rate = self.mini_batches.get("total"), self.rate
        if not self.running or total is None or rate is None:
            return None
        return max(total - self.mini_batches.get("done", 0), 0) / rate

    def text(self) -> str:
        """The lines ``daskprs status`` prints."""
        mb, items = self.mini_batches, self.items
        lines = [f"{self.state}: run {self.run_id or '?'}, started {self.started or '?'}, "
                 f"{self.seconds:.0f} s {'so far' if self.running else 'in all'}"]
        if self.state == STOPPED:
            lines.append(f"the job's process is gone (pid {self.holder.get('pid', '?')} on "
                         f"{self.holder.get('host', '?')}); run it again to resume: "
                         f"committed mini-batches are kept")
        if self.reason:
            lines.append(f"reason: {self.reason}")
        lines.append(f"mini-batches: {mb.get('done', 0):,}/{_count(mb.get('total'))} done"
                     f"{_percent(mb.get('done', 0), mb.get('total'))}: "
                     f"{mb.get('succeeded', 0):,} succeeded, {mb.get('failed', 0):,} failed, "
                     f"{mb.get('reused', 0):,} reused")
        lines.append(f"items: {items.get('done', 0):,}/{_count(items.get('total'))} done: "
                     f"{items.get('succeeded', 0):,} succeeded, {items.get('failed', 0):,} "
                     f"failed")
        rate, eta = self.rate, self.eta
        if rate is not None:
            per_item = items.get("done", 0) / mb["done"] * rate if mb.get("done") else 0
            line = f"rate: {rate:,.2f} mini-batches/s, {per_item:,.1f} items/s"
            if eta is not None:
                line += f"; ETA {_duration(eta)}"
            lines.append(line)
        label = "in flight, longest first" if self.running else "slowest attempts"
        for entry in self.slowest[:SHOWN]:
            lines.append(f"{label}: {entry['id']} attempt {entry['attempt']} on "
                         f"{entry['worker']}, {entry['seconds']:.1f} s")
        if self.updated and self.running:
            lines.append(f"snapshot of the client: {self.updated}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


# ---------------------------------------------------------------- the client's side


class ProgressReporter:
    """Rewrites the snapshot and the overview every interval while the job runs.

    Parameters
    ----------
    logs
        The job's :class:`~daskprs.outputs.reports.LogFolder`.
    run_id, started
        The run and when the job started.
    total, planned_items
        Mini-batches of the plan and the items it knows of (None when unknown).
    """

    def __init__(self, logs: Any, run_id: str, started: datetime, total: int,
                 planned_items: int | None) -> None:
        self.logs = logs
        self.run_id = run_id
        self.started = started
        self.total = total
        self.planned_items = planned_items
        self.sink: Any = None
        self.state = RUNNING
        self.reason = ""
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.store = StateStore(logs.output)

    def watch(self, sink: Any) -> None:
        """Start rewriting from ``sink``'s counts (a :class:`~daskprs.sink.RecordSink`)."""
        self.sink = sink
        self.thread = threading.Thread(target=self._loop, name="daskprs-progress", daemon=True)
        self.thread.start()

    def write(self, line: str) -> int:
        """The sink's per-record progress line: not kept, the overview is rewritten."""
        return len(line)

    def finish(self, state: str, reason: str = "") -> None:
        """The job's final status, for the last rewrite."""
        self.state, self.reason = state, reason

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.sink is not None:
            self._rewrite()

    def _loop(self) -> None:
        interval = progress_interval()
        while True:
            self._rewrite()
            if self.stop.wait(interval):
                return

    def snapshot(self) -> dict[str, Any]:
        """What ``_daskprs/progress.json`` holds now."""
        counter = self.sink.counter
        mb, items = dict(counter.mini_batches), dict(counter.items)
        mb.update(total=self.total, done=mb["succeeded"] + mb["failed"])
        items.update(total=max(self.planned_items or 0, items["total"]) or None,
                     done=items["total"])
        now = datetime.now(timezone.utc)
        return {"run_id": self.run_id, "state": self.state, "reason": self.reason,
                "pid": os.getpid(), "host": socket.gethostname(),
                "started": self.started.isoformat(timespec="seconds"),
                "updated": now.isoformat(timespec="seconds"),
                "seconds": round((now - self.started).total_seconds(), 3),
                "mini_batches": mb, "items": items,
                "in_flight": [dict(e) for e in self.sink.running()]}

    def _rewrite(self) -> None:
        try:
            self.sink.progress.refresh()
            data = self.snapshot()
            write_atomic(self.store.fs, self.store.path(SNAPSHOT), json.dumps(data).encode())
            status = _from_snapshot(self.logs.output.url, data, datetime.now(timezone.utc))
            text = (status.text() + "\n").encode()
            write_atomic(_local_fs(), self.logs.path(OVERVIEW), text)
            if not self.logs.output.is_local:
                write_atomic(self.logs.output.fs, self.logs.output.join("logs", OVERVIEW), text)
        except Exception:  # a progress report never fails the job
            import logging

            logging.getLogger(__name__).debug("progress snapshot not written", exc_info=True)


def _local_fs() -> Any:
    import fsspec

    return fsspec.filesystem("file")


def _from_snapshot(output: str, data: dict[str, Any], now: datetime) -> JobStatus:
    in_flight = [{"id": e.get("id"), "attempt": e.get("attempt"),
                  "worker": e.get("agent") or e.get("worker", "?"),
                  "seconds": _age(e.get("start_utc"), now), "running": True}
                 for e in data.get("in_flight") or []]
    in_flight.sort(key=lambda e: -e["seconds"])
    return JobStatus(output=output, state=data.get("state") or RUNNING,
                     run_id=data.get("run_id", ""), started=data.get("started", ""),
                     seconds=float(data.get("seconds") or 0.0),
                     mini_batches=dict(data.get("mini_batches") or {}),
                     items=dict(data.get("items") or {}), slowest=in_flight,
                     holder={"pid": data.get("pid"), "host": data.get("host")},
                     reason=data.get("reason", ""), updated=data.get("updated", ""))


# ---------------------------------------------------------------- the reader's side


def read_status(output: str, storage_options: dict[str, Any] | None = None) -> JobStatus:
    """The status of the job of an output folder, running or finished.

    Parameters
    ----------
    output
        The job's output folder (local path, ``s3://``, ``abfs://``, ...).
    storage_options
        fsspec options for ``output``.

    Raises
    ------
    OutputError
        When the folder holds no daskprs job.
    """
    location = Location(output, dict(storage_options or {}))
    fs = location.fs
    fs.invalidate_cache()
    store = StateStore(location)
    job = store.read_job()
    raw_result = read_bytes_or_none(fs, location.join("logs", "job_result.json"))
    if job is None and raw_result is None:
        raise OutputError(f"output: no daskprs job in {output!r} (no {STATE_DIR}/ "
                          f"fingerprint.json nor logs/job_result.json). Give the output folder "
                          f"of a job (the output: of its config).")
    result = json.loads(raw_result) if raw_result else None
    if job is not None and job.get("status") == RUNNING and (
            result is None or result.get("run_id") != job.get("run_id")):
        return _running_status(location, store, job)
    return _finished_status(location, result or {}, job or {})


def _running_status(location: Location, store: StateStore, job: dict[str, Any]) -> JobStatus:
    now = datetime.now(timezone.utc)
    run_id = job.get("run_id", "")
    holder = _json(read_bytes_or_none(location.fs, store.path("lock.json"))) or {}
    snapshot = _json(read_bytes_or_none(location.fs, store.path(SNAPSHOT))) or {}
    if snapshot.get("run_id") != run_id:
        snapshot = {}
    live = holder.get("run_id") == run_id and _alive(holder)
    status = _from_snapshot(location.url, snapshot, now)
    status.state, status.run_id = (RUNNING if live else STOPPED), run_id
    status.holder = {k: holder.get(k) for k in ("pid", "host")} if holder else status.holder
    started = _parse_time(snapshot.get("started") or holder.get("started"))
    records = committed(store, list(job.get("runs") or [run_id]), run_id)
    counts = count_records(records.values())
    status.mini_batches.update(counts["mini_batches"])
    status.items.update(done=counts["items"]["done"], succeeded=counts["items"]["succeeded"],
                        failed=counts["items"]["failed"])
    status.items.setdefault("total", None)
    status.mini_batches.setdefault("total", None)
    status.slowest = [e for e in status.slowest if e["id"] not in
                      {r["id"] for r in records.values()}]
    if started is not None:
        status.started = started.isoformat(timespec="seconds")
        status.seconds = (now - started).total_seconds() if live else status.seconds
    return status


def committed(store: StateStore, runs: list[str], run_id: str) -> dict[int, dict[str, Any]]:
    """The final records in the bundles of ``runs``, by mini-batch index: every record of
    ``run_id``, the succeeded ones of earlier runs (a resume reuses those, marked
    ``reused``); the earliest run wins."""
    found: dict[int, dict[str, Any]] = {}
    for run in runs:
        for header in _headers(store, run):
            if header.get("run_id") != run:
                continue
            for record in header.get("records", []):
                if record["index"] in found or (run != run_id and
                                                record["status"] != "succeeded"):
                    continue
                found[record["index"]] = {**record, "reused": run != run_id}
    return found


def count_records(records: Any) -> dict[str, dict[str, int]]:
    """Done, succeeded, failed and reused mini-batches and items of final records."""
    mb = dict.fromkeys(("done", "succeeded", "failed", "reused"), 0)
    items = dict.fromkeys(("done", "succeeded", "failed"), 0)
    for record in records:
        mb["done"] += 1
        mb["succeeded" if record["status"] == "succeeded" else "failed"] += 1
        mb["reused"] += bool(record.get("reused"))
        items["done"] += record.get("items") or 0
        items["succeeded"] += record.get("succeeded") or 0
        items["failed"] += record.get("failed") or 0
    return {"mini_batches": mb, "items": items}


def _headers(store: StateStore, run_id: str) -> list[dict[str, Any]]:
    """The headers of a run's bundles: one listing, then ranged reads (concurrent on
    object stores)."""
    fs = store.fs
    try:
        paths = [p for p in fs.ls(store.path("commits", run_id), detail=False)
                 if p.endswith(".bundle")]
    except FileNotFoundError:
        return []
    if not paths:
        return []
    try:
        chunks = fs.cat_ranges(paths, [0] * len(paths), [_HEADER_READ] * len(paths),
                               on_error="return")
    except TypeError:  # an fsspec without on_error
        chunks = fs.cat_ranges(paths, [0] * len(paths), [_HEADER_READ] * len(paths))
    headers = []
    for path, chunk in zip(paths, chunks, strict=True):
        if isinstance(chunk, BaseException):
            continue
        try:
            decoded = decode_header(chunk)
            headers.append(decoded[0] if decoded else read_header(fs, path))
        except (ValueError, FileNotFoundError):
            continue
    return headers


def _finished_status(location: Location, result: dict[str, Any], job: dict[str, Any]
                     ) -> JobStatus:
    mb = dict(result.get("mini_batches") or {})
    mb["done"] = mb.get("succeeded", 0) + mb.get("failed", 0)
    items = dict(result.get("items") or {})
    items["done"] = items.get("succeeded", 0) + items.get("failed", 0)
    run_id = result.get("run_id") or job.get("run_id", "")
    return JobStatus(output=location.url, state=result.get("status") or job.get("status", "?"),
                     run_id=run_id, started=result.get("started", ""),
                     seconds=float(result.get("seconds") or 0.0), mini_batches=mb,
                     items=items, slowest=_slowest_attempts(location, run_id),
                     reason=result.get("reason", ""))


def _slowest_attempts(location: Location, run_id: str) -> list[dict[str, Any]]:
    raw = read_bytes_or_none(location.fs, location.join("logs", "sys", "mini_batches.csv"))
    if not raw:
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace"))):
        if row.get("run_id") == run_id and row.get("seconds"):
            rows.append({"id": row["mini_batch_id"], "attempt": row["attempt"],
                         "worker": row["worker"], "seconds": float(row["seconds"]),
                         "running": False})
    return sorted(rows, key=lambda r: -r["seconds"])[:SHOWN]


# ---------------------------------------------------------------- small helpers


def _json(data: bytes | None) -> dict[str, Any] | None:
    try:
        value = json.loads(data) if data else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    for parse in (datetime.fromisoformat,
                  lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z")):
        try:
            value = parse(text)
        except ValueError:
            continue
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def _age(start: str | None, now: datetime) -> float:
    began = _parse_time(start)
    return max((now - began).total_seconds(), 0.0) if began else 0.0


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _percent(done: int, total: int | None) -> str:
    return f" ({100 * done / total:.0f}%)" if total else ""


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


__all__ = ["JobStatus", "ProgressReporter", "progress_interval", "read_status"]
