"""The per-mini-batch wrapper: attempts, markers, staging and the commit.

It runs inside a Dask task. It never raises for a failing mini-batch: it returns a
status record (a plain dict, JSON-encoded in the task's result) that the client counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from daskprs.entry_script import MiniBatchContext
from daskprs.inputs.plan import MiniBatch
from daskprs.inputs.tabular import MINI_BATCH, READ_ERROR, read_mini_batch
from daskprs.serialize import (
    append_row_bytes,
    parquet_bytes,
    result_columns,
    result_length,
    result_table,
)
from daskprs.state import StateStore
from daskprs.storage import Location, write_new
from daskprs.worker.downloads import downloaded
from daskprs.worker.runner_client import Outcome

STATUS_META = pd.DataFrame({"record": pd.Series([], dtype=object)})
MAX_WORKER_LOSSES = 3
_CHARGED = ("failed", "timed_out", "crashed")

Loader = Callable[[], contextlib.AbstractContextManager[tuple[Any, str | None]]]


def run_tabular_partition(frame: pd.DataFrame, plugin_name: str, submission: str = ""
                          ) -> pd.DataFrame:
    """``map_partitions`` target: run the mini-batch a partition holds; one-row status frame.

    ``submission`` only makes the task's key unique per submission.
    """
    mini_batch: MiniBatch = frame.attrs[MINI_BATCH]
    record = process_mini_batch(_plugin(plugin_name), mini_batch, tabular_loader(frame))
    return pd.DataFrame({"record": [json.dumps(record)]})


def run_file_partition(partition: list[list[MiniBatch]], plugin_name: str,
                       submission: str = "") -> list[str]:
    """``Bag.map_partitions`` target: run each mini-batch of a task (the partition holds
    one group of mini-batches); JSON records."""
    plugin = _plugin(plugin_name)
    mini_batches = [mb for group in partition for mb in group]
    return [json.dumps(process_mini_batch(plugin, mb, file_loader(mb, plugin.local_dir)))
            for mb in mini_batches]


def tabular_loader(frame: pd.DataFrame | None, mini_batch: MiniBatch | None = None) -> Loader:
    """Load a tabular mini-batch per attempt: ``frame`` (already read by the Dask task) the
    first time, read again for later attempts."""
    mini_batch = mini_batch if mini_batch is not None else frame.attrs[MINI_BATCH]
    first = [frame]

    @contextlib.contextmanager
    def load() -> Iterator[tuple[Any, str | None]]:
        data, first[0] = (first[0], None) if first[0] is not None else (
            read_mini_batch(mini_batch), None)
        error = data.attrs.get(READ_ERROR)
        data = data.copy(deep=False)
        data.attrs = {}
        yield data, error

    return load


def file_loader(mini_batch: MiniBatch, parent: str) -> Loader:
    """Load a file mini-batch per attempt: local paths (remote files downloaded into
    ``parent`` and removed after the attempt), or URLs for ``as_uri()`` inputs."""
    source = mini_batch.source

    @contextlib.contextmanager
    def load() -> Iterator[tuple[Any, str | None]]:
        if source is None or source.mode == "uri":
            yield list(mini_batch.paths), None
            return
        relatives = list(mini_batch.relatives) or [p.rsplit("/", 1)[-1]
                                                   for p in mini_batch.paths]
        with contextlib.ExitStack() as stack:
            try:
                paths = stack.enter_context(downloaded(
                    list(mini_batch.paths), relatives, mini_batch.input_name,
                    source.storage_options, parent))
            except Exception as exc:  # a failed download is a failed attempt
                paths, error = [], f"DownloadError: {type(exc).__name__}: {exc}"
            else:
                error = None
            yield paths, error

    return load


def _plugin(name: str) -> Any:
    from distributed import get_worker

    return get_worker().plugins[name]


def process_mini_batch(plugin: Any, mini_batch: MiniBatch, load: Loader) -> dict[str, Any]:
    """Run a mini-batch's attempts until one returns or ``run_max_try`` are spent."""
    spec = plugin.spec
    state = StateStore(Location(spec.output_url, spec.output_storage_options))
    existing = state.committed(mini_batch.id)
    if existing is not None:
        return _already_committed(existing, spec.run_id)
    if not plugin.wait_ready():
        return {"id": mini_batch.id, "index": mini_batch.index, "status": "unhealthy",
                "worker": plugin.address, "error": plugin.init_error}
    rows: list[dict[str, Any]] = []
    charged = 0
    first_claim = True
    while True:
        marker = {"worker": plugin.agent, "pid": plugin.runner_pid or os.getpid(),
                  "status": "started",
                  "start_utc": _now()}
        number, earlier = state.claim_attempt(spec.run_id, mini_batch.id, marker,
                                              spec.run_max_try + MAX_WORKER_LOSSES)
        if first_claim:
            first_claim = False
            lost = [m for m in earlier if m.get("status") == "started"]
            rows.extend(_lost_row(m, mini_batch) for m in lost)
            charged = sum(1 for m in earlier if m.get("status") in _CHARGED)
            if len(lost) >= MAX_WORKER_LOSSES:
                return _failed(mini_batch, rows, f"WorkerLost: {len(lost)} workers were lost "
                               f"while running {mini_batch.id}")
        if number == 0 or charged >= spec.run_max_try:
            return _failed(mini_batch, rows, rows[-1]["error"] if rows else "no attempts left")
        plugin.files.begin_attempt()
        with load() as (data, read_error):
            row, result = _attempt(plugin, mini_batch, number, data, read_error)
        rows.append(row)
        if row["status"] == "succeeded":
            # the commit record is the outcome: the marker is only rewritten for failures
            record = _publish(state, spec, mini_batch, rows, result, number)
            plugin.files.publish_attempt()
            plugin.files.sync_logs()
            return record
        state.finish_attempt(spec.run_id, mini_batch.id, row)
        plugin.files.sync_logs()
        charged += 1
        if charged >= spec.run_max_try:
            return _failed(mini_batch, rows, row["error"])


def _attempt(plugin: Any, mini_batch: MiniBatch, number: int, data: Any,
             read_error: str | None) -> tuple[dict[str, Any], Any]:
    started, clock = _now(), time.perf_counter()
    pid = plugin.runner_pid
    items = (mini_batch.items or len(data)) if read_error is not None else len(data)
    if read_error is not None:
        outcome = Outcome("error", error=read_error)
    elif items == 0:
        outcome = Outcome("ok", value=[])
    else:
        context = MiniBatchContext(mini_batch.id, number, mini_batch.input_name,
                                   mini_batch.partition_key_value)
        outcome = plugin.run_attempt(data, context)
    seconds = outcome.seconds or time.perf_counter() - clock
    row = {"attempt": number, "worker": plugin.agent, "pid": outcome.pid or pid or "",
           "start_utc": started, "seconds": round(seconds, 4),
           "items": items, "succeeded": 0, "failed": items, "error": outcome.error}
    if outcome.status == "ok":
        succeeded = min(result_length(outcome.value), items)
        row.update(status="succeeded", succeeded=succeeded, failed=items - succeeded)
        if result_length(outcome.value) > items:
            plugin.logger.warning("%s: run() returned %d elements for %d items; all are "
                                  "written, %d counted", mini_batch.id,
                                  result_length(outcome.value), items, items)
        return row, outcome.value
    row["status"] = "failed" if outcome.status == "error" else outcome.status
    plugin.logger.warning("%s attempt %d %s: %s", mini_batch.id, number, row["status"],
                          outcome.error)
    return row, None


def _publish(state: StateStore, spec: Any, mini_batch: MiniBatch, rows: list[dict[str, Any]],
             result: Any, number: int) -> dict[str, Any]:
    """Write the result, then the record (the commit point); the first commit wins."""
    result_file, columns = None, None
    if spec.output_action != "summary_only" and result_length(result) > 0:
        if spec.output_action == "append_row":
            data, ext = append_row_bytes(result, spec.append_row_separator), "txt"
            columns = result_columns(result)
        else:
            table = result_table(result)
            columns = [f"{f.name}: {f.type}" for f in table.schema]
            data, ext = parquet_bytes(table), "parquet"
        result_file = state.result_path(mini_batch.id, spec.run_id, number, ext)
        write_new(state.fs, result_file, data)
    last = rows[-1]
    record = _record(mini_batch, rows, "succeeded", last["items"], last["succeeded"], "")
    record.update(result_file=result_file, result_rows=result_length(result), columns=columns,
                  run_id=spec.run_id)
    if state.commit(record):
        return record
    if result_file:
        state.fs.rm_file(result_file)
    winner = state.committed(mini_batch.id) or record
    return {**_already_committed(winner, spec.run_id), "attempts": rows}


def _already_committed(record: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A record found committed: by an earlier run (reused), or by this run when Dask
    reran a finished task whose result never reached the client (its rows still count)."""
    if record.get("run_id") == run_id:
        return {**record, "reused": False}
    return {**record, "reused": True, "attempts": []}


def _failed(mini_batch: MiniBatch, rows: list[dict[str, Any]], error: str) -> dict[str, Any]:
    items = rows[-1]["items"] if rows else (mini_batch.items or 0)
    return _record(mini_batch, rows, "failed", items, 0, error)


def _record(mini_batch: MiniBatch, rows: list[dict[str, Any]], status: str, items: int,
            succeeded: int, error: str) -> dict[str, Any]:
    first, last = mini_batch.item_labels(items)
    return {"id": mini_batch.id, "index": mini_batch.index, "input": mini_batch.input_name,
            "first_item": first, "last_item": last, "items": items, "succeeded": succeeded,
            "failed": items - succeeded, "status": status, "error": error, "reused": False,
            "result_file": None, "result_rows": 0, "columns": None, "attempts": rows}


def _lost_row(marker: dict[str, Any], mini_batch: MiniBatch) -> dict[str, Any]:
    return {"attempt": marker.get("attempt"), "worker": marker.get("worker", ""),
            "pid": marker.get("pid", ""), "start_utc": marker.get("start_utc", ""),
            "seconds": "", "items": mini_batch.items or 0, "succeeded": 0,
            "failed": 0, "status": "worker_lost",
            "error": "WorkerLost: the worker running this attempt was lost"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
