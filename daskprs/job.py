"""The job driver: plan -> guard the output -> run on the cluster -> count -> commit.

The client streams each mini-batch's status record as it arrives (``as_completed``),
counts failures live, writes ``mini_batches.csv``, feeds the ordered assembler and
cancels the remaining work when a threshold is exceeded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import cloudpickle

from daskprs.cluster import connect
from daskprs.datasets import FileDataset, TabularDataset
from daskprs.errors import ClusterError, InputError
from daskprs.failures import FailureCounter
from daskprs.fingerprint import job_fingerprint
from daskprs.inputs.files import plan_files
from daskprs.inputs.plan import MiniBatch, Plan
from daskprs.inputs.tabular import plan_tabular
from daskprs.outputs.assemble import OrderedAssembler, ParquetAssembler, make_assembler
from daskprs.outputs.guard import OutputLock, check_output_is_ours
from daskprs.outputs.reports import (
    AttemptTable,
    LogFolder,
    progress_line,
    write_job_result,
    write_readme,
)
from daskprs.progress import make_progress
from daskprs.result import CANCELED, COMPLETED, FAILED, JobResult
from daskprs.state import StateStore
from daskprs.step import ParallelRunStep
from daskprs.storage import Location, read_bytes_or_none, write_atomic
from daskprs.worker.plugin import RunnerPlugin, plugin_status
from daskprs.worker.spec import JobSpec

logger = logging.getLogger("daskprs")
TASK_TARGET_SECONDS = 0.1


@dataclass
class PreparedJob:
    """A validated step with its plan: everything decided before any cluster starts."""

    step: ParallelRunStep
    plan: Plan
    output: Location
    fingerprint: str
    arguments: list[str]


def prepare(step: ParallelRunStep) -> PreparedJob:
    """Plan the mini-batches and check the output; starts no cluster and writes nothing."""
    output = Location(step.output, step.output_storage_options)
    check_output_is_ours(output)
    if step.kind == "file":
        plan = plan_files([d for d in step.inputs if isinstance(d, FileDataset)],
                          step.mini_batch_size)
    else:
        plan = plan_tabular([d for d in step.inputs if isinstance(d, TabularDataset)],
                            step.mini_batch_size)
        _warn_small_batches(step, plan)
    arguments = [_argument_text(a) for a in step.arguments]
    storage = [d.storage_options for d in step.inputs] + [step.output_storage_options]
    fingerprint = job_fingerprint(step.parallel_run_config, arguments, plan.listing,
                                  output.url, storage)
    return PreparedJob(step, plan, output, fingerprint, arguments)


def _argument_text(argument: Any) -> str:
    if isinstance(argument, FileDataset):
        paths = argument.paths
        if len(paths) != 1:
            raise InputError(f"side input {argument.name!r}: an argument can stand for one "
                             f"path, got {list(paths)}. Give the side input one file or folder.")
        return Location(paths[0]).url
    return str(argument)


def _warn_small_batches(step: ParallelRunStep, plan: Plan) -> None:
    size = step.mini_batch_size
    counts = [mb.items for mb in plan.mini_batches if mb.items]
    if size.unit == "bytes" and counts and max(counts) < 10:
        logger.warning("mini_batch_size %s gives fewer than 10 rows per mini-batch; to set "
                       "rows, use mini_batch_size='1000 rows'", step.parallel_run_config.
                       mini_batch_size)


def run_step(step: ParallelRunStep, client: Any = None, progress: bool = True) -> JobResult:
    """Run a step end to end; see :meth:`ParallelRunStep.run`."""
    prepared = prepare(step)
    state = StateStore(prepared.output)
    previous = _previous_job(state)
    if step.allow_reuse and previous and previous.get("fingerprint") == prepared.fingerprint \
            and previous.get("status") == COMPLETED:
        logger.info("reusing the completed job %s (same fingerprint)", previous.get("run_id"))
        result = JobResult.load(prepared.output.url, prepared.output.storage_options)
        result.reused = True
        return result
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    lock = OutputLock(prepared.output, run_id)
    lock.acquire()
    try:
        resume = step.allow_reuse and previous is not None and \
            previous.get("fingerprint") == prepared.fingerprint
        if not resume:
            _clear_state(state)
        write_atomic(state.fs, state.path("fingerprint.json"), json.dumps(
            {"fingerprint": prepared.fingerprint, "status": "Running", "run_id": run_id}).encode())
        with _client_log(prepared.output) as logs:
            result = _execute(prepared, logs, run_id, client, progress, resume)
        write_atomic(state.fs, state.path("fingerprint.json"), json.dumps(
            {"fingerprint": prepared.fingerprint, "status": result.status,
             "run_id": run_id}).encode())
    finally:
        lock.release()
    logger.info("%s: %s", step.name, result.status)
    return result


def _previous_job(state: StateStore) -> dict[str, Any] | None:
    data = read_bytes_or_none(state.fs, state.path("fingerprint.json"))
    return json.loads(data) if data else None


def _clear_state(state: StateStore) -> None:
    for folder in ("committed", "results", "attempts"):
        path = state.path(folder)
        if state.fs.exists(path):
            state.fs.rm(path, recursive=True)


@contextlib.contextmanager
def _client_log(output: Location) -> Iterator[LogFolder]:
    logs = LogFolder(output)
    handler = logging.FileHandler(logs.path("sys", "client.txt"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    watched = [logging.getLogger("daskprs"), logging.getLogger("distributed")]
    for item in watched:
        item.addHandler(handler)
    if logging.getLogger("daskprs").level == logging.NOTSET:
        logging.getLogger("daskprs").setLevel(logging.INFO)
    try:
        yield logs
    finally:
        for item in watched:
            item.removeHandler(handler)
        handler.close()
        logs.sync()


def _execute(prepared: PreparedJob, logs: LogFolder, run_id: str, client: Any,
             show_progress: bool, resume: bool) -> JobResult:
    step, plan = prepared.step, prepared.plan
    config = step.parallel_run_config
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    state = StateStore(prepared.output)
    committed = _committed_records(state, plan) if resume else {}
    counter = FailureCounter(len(plan.mini_batches), config.error_threshold,
                             config.allowed_failed_count, config.allowed_failed_percent)
    order = [mb.index for mb in plan.mini_batches]
    assembler = make_assembler(config.output_action, prepared.output, order,
                               config.append_row_file_name, len(order))
    table = AttemptTable(logs, run_id)
    write_readme(logs, config.output_action, config.append_row_file_name)
    progress = make_progress(len(plan.mini_batches), show_progress)
    overview = open(logs.path("job_progress_overview.txt"), "a", encoding="utf-8")  # noqa: SIM115
    for record in committed.values():
        counter.add(record, earlier_run=True)
        assembler.add(record)
        progress.update(record)
    todo = [mb for mb in plan.mini_batches if mb.id not in committed]
    status, reason = COMPLETED, ""
    try:
        if todo:
            reason = _run_on_cluster(prepared, run_id, todo, client, counter, assembler, table,
                                     progress, overview)
        if reason:
            status = FAILED
        elif counter.items["succeeded"] == 0:
            status, reason = FAILED, ("no item succeeded: run() must return one element per "
                                      "successful item, also with summary_only")
    except KeyboardInterrupt:
        status, reason = CANCELED, "interrupted (Ctrl-C or SIGTERM)"
        raise
    finally:
        progress.close()
        overview.close()
        table.close()
        if status == COMPLETED:
            assembler.commit()
        else:
            assembler.discard()
        result = _job_result(prepared, run_id, started, clock, status, reason, counter,
                             assembler)
        write_job_result(logs, result)
    return result


def _committed_records(state: StateStore, plan: Plan) -> dict[str, dict[str, Any]]:
    folder = state.path("committed")
    if not state.fs.exists(folder):
        return {}
    ids = {mb.id: mb for mb in plan.mini_batches}
    records = {}
    for path in state.fs.ls(folder, detail=False):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".json") and name[:-5] in ids:
            record = json.loads(state.fs.cat_file(path))
            records[record["id"]] = {**record, "attempts": [], "index": ids[record["id"]].index}
    return records


def _run_on_cluster(prepared: PreparedJob, run_id: str, todo: list[MiniBatch], client: Any,
                    counter: FailureCounter, assembler: OrderedAssembler,
                    table: AttemptTable, progress: Any, overview: Any) -> str:
    """Run ``todo`` on the cluster; return the failure reason, or an empty string."""
    step = prepared.step
    config = step.parallel_run_config
    target = client if client is not None else config.compute_target
    with connect(target, config.processes, config.node_count) as connection:
        dask_client = connection.client
        if dask_client.dashboard_link and connection.owned:
            logger.info("Dask dashboard: %s", dask_client.dashboard_link)
        spec = _job_spec(prepared, run_id, connection.owned)
        plugin = RunnerPlugin(spec, connection.threads_per_runner)
        dask_client.register_plugin(plugin)
        try:
            healthy = _healthy_workers(dask_client, spec.plugin_name)
            futures = _submit(dask_client, step, prepared.plan, todo, spec, healthy)
            return _stream(dask_client, futures, counter, assembler, table, progress, overview,
                           len(prepared.plan.mini_batches))
        finally:
            with contextlib.suppress(Exception):
                dask_client.unregister_worker_plugin(spec.plugin_name)


def _job_spec(prepared: PreparedJob, run_id: str, owned: bool) -> JobSpec:
    step = prepared.step
    config = step.parallel_run_config
    script_object = None if config.script_path else cloudpickle.dumps(config.entry_script)
    return JobSpec(run_id=run_id, kind=step.kind, script_path=config.script_path,
                   script_object=script_object, source_directory=config.source_directory,
                   arguments=tuple(prepared.arguments),
                   environment_variables=dict(config.environment_variables or {}),
                   output_url=prepared.output.url,
                   output_storage_options=prepared.output.storage_options,
                   output_action=config.output_action,
                   append_row_separator=config.append_row_separator,
                   run_invocation_timeout=config.run_invocation_timeout,
                   run_max_try=config.run_max_try, logging_level=config.logging_level,
                   owned_cluster=owned)


def _healthy_workers(client: Any, plugin_name: str) -> list[str]:
    statuses = client.run(plugin_status, plugin_name)
    healthy = [address for address, status in statuses.items() if status["healthy"]]
    if not healthy:
        errors = [s.get("error") or "" for s in statuses.values()]
        first = next((e for e in errors if e), "no workers")
        raise ClusterError(f"init() failed on every worker ({len(statuses)}); the first "
                           f"error:\n{first}")
    for address, status in statuses.items():
        if not status["healthy"]:
            logger.warning("worker %s takes no mini-batches: init() failed: %s", address,
                           (status.get("error") or "").splitlines()[0:1])
    return healthy


def _submit(client: Any, step: ParallelRunStep, plan: Plan, todo: list[MiniBatch],
            spec: JobSpec, workers: list[str]) -> list[Any]:
    """One Dask task per tabular mini-batch; file mini-batches grouped per task."""
    if plan.kind == "file":
        import dask.bag as db

        from daskprs.worker.wrapper import run_file_partition

        per_task = max(1, min(10, math.ceil(len(todo) / (8 * max(len(workers), 1)))))
        bag = db.from_sequence(todo, partition_size=per_task)
        delayed = bag.map_partitions(run_file_partition, spec.plugin_name).to_delayed()
    else:
        frames = {d.name: d for d in step.inputs if isinstance(d, TabularDataset)}
        delayed = []
        for name in dict.fromkeys(mb.input_name for mb in todo):
            batches = [mb for mb in todo if mb.input_name == name]
            delayed.extend(_tabular_tasks(frames[name], batches, plan, spec))
    return client.compute(delayed, workers=workers, allow_other_workers=False)


def _tabular_tasks(dataset: TabularDataset, batches: list[MiniBatch], plan: Plan,
                   spec: JobSpec) -> list[Any]:
    import dask.dataframe as dd

    from daskprs.inputs.tabular import read_mini_batch, tag_partition
    from daskprs.worker.wrapper import STATUS_META, run_tabular_partition

    if dataset.format == "dask":
        frame = dataset.frame.partitions[[mb.start for mb in batches]]
        frame = frame.map_partitions(tag_partition, batches, meta=frame._meta,
                                     enforce_metadata=False)
    else:
        frame = dd.from_map(read_mini_batch, batches, meta=plan.meta, enforce_metadata=False,
                            label="daskprs-read")
    records = frame.map_partitions(run_tabular_partition, spec.plugin_name, meta=STATUS_META,
                                   enforce_metadata=False)
    return records.to_delayed()


def _stream(client: Any, futures: list[Any], counter: FailureCounter,
            assembler: OrderedAssembler, table: AttemptTable, progress: Any, overview: Any,
            total: int) -> str:
    from distributed import as_completed

    remaining = set(futures)
    done = counter.mini_batches["succeeded"] + counter.mini_batches["failed"]
    for future in as_completed(futures):
        remaining.discard(future)
        value = future.result()
        future.release()
        for record in _records_of(value):
            table.add(record)
            counter.add(record, earlier_run=bool(record.get("reused")))
            assembler.add(record)
            for conflict in assembler.take_rejected():
                counter.reject(conflict)
            progress.update(record)
            done += 1
        overview.write(progress_line(done, total, counter.items["failed"],
                                     counter.mini_batches["failed"]))
        reason = counter.exceeded()
        if reason:
            client.cancel(list(remaining))
            return reason
    table.flush()
    return ""


def _records_of(value: Any) -> list[dict[str, Any]]:
    if hasattr(value, "columns"):
        return [json.loads(text) for text in value["record"]]
    return [json.loads(text) for text in value]


def _job_result(prepared: PreparedJob, run_id: str, started: datetime, clock: float,
                status: str, reason: str, counter: FailureCounter,
                assembler: OrderedAssembler) -> JobResult:
    from daskprs import __version__

    config = prepared.step.parallel_run_config
    columns = None
    if isinstance(assembler, ParquetAssembler) and assembler.schema is not None:
        columns = [f"{f.name}: {f.type}" for f in assembler.schema]
    elif prepared.plan.meta is not None:
        columns = [str(c) for c in prepared.plan.meta.columns]
    output = {"url": prepared.output.url, "action": config.output_action,
              "file": config.append_row_file_name, "separator": config.append_row_separator}
    return JobResult(
        status=status, reused=False, run_id=run_id, fingerprint=prepared.fingerprint,
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - clock, 3), mini_batches=dict(counter.mini_batches),
        items=dict(counter.items), attempts=dict(counter.attempts),
        thresholds=counter.thresholds(), first_errors=list(counter.first_errors),
        columns=columns, output=output, daskprs_version=__version__,
        description=config.description, reason=reason)

