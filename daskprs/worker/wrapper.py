"""The task wrapper: run a few mini-batches' attempts on a worker, then commit them once.

It runs inside a Dask task. It never raises for a failing mini-batch: it returns status
records (plain dicts) that the client counts. The commit is one bundle per task
(:mod:`daskprs.commit`); each attempt announces itself with a scheduler event so that the
client can tell attempts lost with their worker.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from daskprs.commit import StateStore
from daskprs.compat import mini_batch_dataset
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
from daskprs.storage import Location
from daskprs.worker.downloads import downloaded
from daskprs.worker.runner_client import Outcome

STATUS_META = pd.DataFrame({"record": pd.Series([], dtype=object)})

Loader = Callable[[], contextlib.AbstractContextManager[tuple[Any, str | None]]]


def event_topic(run_id: str) -> str:
    """The scheduler event topic on which a run's attempts announce themselves."""
    return f"daskprs-{run_id}"


def run_file_task(plugin_name: str, task: str, batches: list[MiniBatch],
                  spent: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """``Client.submit`` target: run a task's file mini-batches, commit, return records.

    ``spent``: attempts already charged elsewhere, by mini-batch id (a mini-batch an
    unhealthy worker gave away)."""
    plugin = _plugin(plugin_name)
    return run_task(plugin, task, batches, lambda mb: file_loader(mb, plugin.local_dir), spent)


def run_tabular_task(plugin_name: str, task: str, batches: list[MiniBatch],
                     spent: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """``Client.submit`` target: read and run a task's tabular mini-batches (a
    ``dd.from_map`` partition each, read here), commit, return records."""
    plugin = _plugin(plugin_name)
    return run_task(plugin, task, batches, lambda mb: tabular_loader(None, mb), spent)


def run_tabular_partition(frame: pd.DataFrame, plugin_name: str, task: str) -> pd.DataFrame:
    """``map_partitions`` target for a Dask DataFrame input: run the mini-batch a partition
    holds; a one-row frame with the JSON list of records."""
    mini_batch: MiniBatch = frame.attrs[MINI_BATCH]
    records = run_task(_plugin(plugin_name), task, [mini_batch],
                       lambda _: tabular_loader(frame))
    return pd.DataFrame({"record": [json.dumps(records)]})


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


def run_task(plugin: Any, task: str, batches: Sequence[MiniBatch],
             loader_for: Callable[[MiniBatch], Loader],
             spent: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Run each mini-batch's attempts, then commit the task's bundle (first commit wins).

    Mini-batches this worker cannot run (its ``init()`` failed, or a replacement runner's
    failed 3 times) come back as ``unhealthy`` records, uncommitted and uncharged, with the
    attempts they had here, for the client to send elsewhere.
    """
    spec = plugin.spec
    execution = uuid.uuid4().hex[:12]
    finished: list[dict[str, Any]] = []
    payloads: list[bytes | None] = []
    unhealthy: list[dict[str, Any]] = []
    for mini_batch in batches:
        if unhealthy or not plugin.wait_ready():
            unhealthy.append(_unhealthy(mini_batch, plugin, plugin.init_error, []))
            continue
        record, payload = _run_mini_batch(plugin, mini_batch, loader_for(mini_batch), execution,
                                          (spent or {}).get(mini_batch.id, 0))
        if record["status"] == "unhealthy":
            unhealthy.append(record)
            continue
        finished.append(record)
        payloads.append(payload)
    committed: list[dict[str, Any]] = []
    if finished:
        state = StateStore(Location(spec.output_url, spec.output_storage_options))
        committed = state.commit(spec.run_id, task, finished, payloads)
        won = bool(committed) and committed[0].get("execution") == execution
        plugin.files.publish_task(won)
    plugin.files.sync_logs()
    return committed + unhealthy


def _run_mini_batch(plugin: Any, mini_batch: MiniBatch, load: Loader, execution: str,
                    spent: int = 0) -> tuple[dict[str, Any], bytes | None]:
    """Attempts until one returns or ``run_max_try`` are spent (``spent`` of them were
    charged on another worker): the record, and the result's bytes for the output when it
    succeeded."""
    spec = plugin.spec
    clock = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for number in range(spent + 1, spec.run_max_try + 1):
        if not plugin.healthy:  # a replacement runner's init() kept failing
            return _unhealthy(mini_batch, plugin, plugin.init_error, rows), None
        _announce(plugin, mini_batch, number, execution)
        plugin.files.begin_attempt()
        with load() as (data, read_error):
            row, result = _attempt(plugin, mini_batch, number, data, read_error)
        payload, columns = None, None
        if row["status"] == "succeeded":
            try:
                payload, columns = _serialize(spec, result)
            except Exception as exc:  # a result that cannot be written fails its attempt
                row.update(status="failed", succeeded=0, failed=row["items"],
                           error=f"ResultError: {type(exc).__name__}: {exc}")
        if row["status"] == "unhealthy":  # nothing ran: neither charged nor lost
            return _unhealthy(mini_batch, plugin, row["error"], rows), None
        rows.append(row)
        if row["status"] == "succeeded":
            plugin.files.keep_attempt()
            record = _record(mini_batch, rows, "succeeded", row["items"], row["succeeded"], "",
                             execution, clock, spec.run_id)
            record.update(result_rows=result_length(result), columns=columns)
            return record, payload
    last = rows[-1] if rows else {"items": mini_batch.items or 0, "error": "no attempts left"}
    return _record(mini_batch, rows, "failed", last["items"], 0, last["error"], execution,
                   clock, spec.run_id), None


def _serialize(spec: Any, result: Any) -> tuple[bytes | None, list[str] | None]:
    if spec.output_action == "summary_only" or result_length(result) == 0:
        return None, None
    if spec.output_action == "append_row":
        return append_row_bytes(result, spec.append_row_separator), result_columns(result)
    table = result_table(result)
    return parquet_bytes(table), [f"{f.name}: {f.type}" for f in table.schema]


def _announce(plugin: Any, mini_batch: MiniBatch, number: int, execution: str) -> None:
    """Tell the scheduler an attempt starts, so that the client can name it if the worker
    is lost; outside a Dask worker (inline) there is nobody to tell. (The scheduler adds
    the worker's address as ``worker``, so the agent name travels as ``agent``.)"""
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:
        return
    worker.log_event(event_topic(plugin.spec.run_id), {
        "id": mini_batch.id, "attempt": number, "agent": plugin.agent,
        "pid": plugin.runner_pid or "", "start_utc": _now(), "execution": execution})


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
                                   mini_batch.partition_key_value,
                                   dataset=mini_batch_dataset(mini_batch))
        outcome = plugin.run_attempt(data, context)
    if outcome.status == "ok" and result_length(outcome.value) > items:
        outcome = Outcome("error", pid=outcome.pid, seconds=outcome.seconds, error=(
            f"ResultLengthError: run() returned {result_length(outcome.value)} elements for "
            f"{items} items; return at most one element per item (one per successful item)"))
    seconds = outcome.seconds or time.perf_counter() - clock
    row = {"attempt": number, "worker": plugin.agent, "pid": outcome.pid or pid or "",
           "start_utc": started, "seconds": round(seconds, 4),
           "items": items, "succeeded": 0, "failed": items, "error": outcome.error}
    if outcome.status == "ok":
        succeeded = result_length(outcome.value)
        row.update(status="succeeded", succeeded=succeeded, failed=items - succeeded)
        return row, outcome.value
    row["status"] = "failed" if outcome.status == "error" else outcome.status
    plugin.logger.warning("%s attempt %d %s: %s", mini_batch.id, number, row["status"],
                          outcome.error)
    return row, None


def _unhealthy(mini_batch: MiniBatch, plugin: Any, error: str | None,
               rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The record that sends a mini-batch to another worker, uncharged, with the attempts
    it had here (they stay counted)."""
    return {"id": mini_batch.id, "index": mini_batch.index, "status": "unhealthy",
            "worker": plugin.address, "error": error or "init() failed", "attempts": rows}


def _record(mini_batch: MiniBatch, rows: list[dict[str, Any]], status: str, items: int,
            succeeded: int, error: str, execution: str, clock: float, run_id: str
            ) -> dict[str, Any]:
    first, last = mini_batch.item_labels(items)
    return {"id": mini_batch.id, "index": mini_batch.index, "input": mini_batch.input_name,
            "first_item": first, "last_item": last, "items": items, "succeeded": succeeded,
            "failed": items - succeeded, "status": status, "error": error, "reused": False,
            "result_rows": 0, "columns": None, "attempts": rows, "execution": execution,
            "elapsed": round(time.perf_counter() - clock, 4), "run_id": run_id}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


__all__ = ["STATUS_META", "event_topic", "file_loader", "run_file_task", "run_tabular_partition",
           "run_tabular_task", "run_task", "tabular_loader"]
