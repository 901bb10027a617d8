"""The job driver: plan -> guard the output -> run -> count -> commit -> report.

Nothing here touches a cluster before :func:`prepare` has planned every mini-batch and
checked the output; the executors (:mod:`daskprs.execution`, :mod:`daskprs.inline`)
stream records into a :class:`~daskprs.sink.RecordSink` that counts failures live.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import cloudpickle

from daskprs.cluster import starts_local_cluster
from daskprs.datasets import FileDataset, TabularDataset
from daskprs.errors import InputError
from daskprs.failures import FailureCounter
from daskprs.fingerprint import job_fingerprint
from daskprs.inputs.files import plan_files
from daskprs.inputs.plan import Plan
from daskprs.inputs.side import list_side_inputs
from daskprs.inputs.tabular import plan_tabular
from daskprs.outputs.assemble import (
    AppendRowAssembler,
    OrderedAssembler,
    ParquetAssembler,
    make_assembler,
)
from daskprs.outputs.guard import OutputLock, check_output_is_ours
from daskprs.outputs.reports import AttemptTable, LogFolder, write_job_result, write_readme
from daskprs.progress import make_progress
from daskprs.requirements import check_requirements
from daskprs.result import CANCELED, COMPLETED, FAILED, JobResult
from daskprs.sink import RecordSink
from daskprs.state import StateStore
from daskprs.storage import Location, probe_bucket, read_bytes_or_none, write_atomic
from daskprs.storage.errors import input_errors, translate_storage_errors
from daskprs.storage.secrets import (
    RedactingFilter,
    known_secrets,
    remember_environment,
    resolve_options,
)
from daskprs.worker.downloads import is_remote
from daskprs.worker.spec import JobSpec

if TYPE_CHECKING:  # step.run() calls into this module
    from daskprs.step import ParallelRunStep

logger = logging.getLogger("daskprs")


@dataclass
class PreparedJob:
    """A validated step with its plan: everything decided before any cluster starts."""

    step: ParallelRunStep
    plan: Plan
    output: Location
    fingerprint: str
    arguments: list[str]
    inputs: list[Any]
    remote_side_inputs: tuple[tuple[str, dict[str, Any]], ...] = ()


def prepare(step: ParallelRunStep) -> PreparedJob:
    """Plan the mini-batches and check the output; starts no cluster and writes nothing."""
    remember_environment()
    output = Location(step.output, resolve_options(step.output_storage_options, "output"))
    inputs = [replace(d, storage_options=resolve_options(d.storage_options, f"inputs.{d.name}"))
              for d in step.inputs]
    with translate_storage_errors(output.url):
        probe_bucket(output.url, output.storage_options)
        check_output_is_ours(output)
    for dataset in inputs:
        for path in getattr(dataset, "paths", ()):
            with input_errors(path):
                probe_bucket(path, dataset.storage_options)
    with input_errors(", ".join(p for d in inputs for p in getattr(d, "paths", ()))):
        if step.kind == "file":
            plan = plan_files([d for d in inputs if isinstance(d, FileDataset)],
                              step.mini_batch_size)
        else:
            plan = plan_tabular([d for d in inputs if isinstance(d, TabularDataset)],
                                step.mini_batch_size)
            _warn_small_batches(step, plan)
    side_inputs = [replace(d, storage_options=resolve_options(d.storage_options,
                                                              f"side_inputs.{d.name}"))
                   for d in step.side_inputs]
    with input_errors(", ".join(p for d in side_inputs for p in d.paths)):
        side_listing = list_side_inputs(side_inputs)
    arguments = [_argument_text(a) for a in step.arguments]
    storage = [d.storage_options for d in step.inputs] + [step.output_storage_options]
    formats = [getattr(d, "partition_format", None) for d in step.inputs]
    fingerprint = job_fingerprint(step.parallel_run_config, arguments,
                                  plan.listing + side_listing, output.url,
                                  [*storage, {"partition_format": formats}])
    remote_sides = tuple((Location(d.paths[0]).url, d.storage_options) for d in side_inputs
                         if len(d.paths) == 1 and is_remote(d.paths[0], d.storage_options))
    return PreparedJob(step, plan, output, fingerprint, arguments, inputs, remote_sides)


def _argument_text(argument: Any) -> str:
    if isinstance(argument, FileDataset):
        if len(argument.paths) != 1:
            raise InputError(f"side input {argument.name!r}: an argument stands for one path, "
                             f"got {list(argument.paths)}. Give the side input one file or "
                             f"folder.")
        return Location(argument.paths[0]).url
    return str(argument)


def _warn_small_batches(step: ParallelRunStep, plan: Plan) -> None:
    counts = [mb.items for mb in plan.mini_batches if mb.items]
    if step.mini_batch_size.unit == "bytes" and counts and max(counts) < 10:
        logger.warning("mini_batch_size %r gives fewer than 10 rows per mini-batch; to count "
                       "rows, use mini_batch_size='1000 rows'",
                       step.parallel_run_config.mini_batch_size)


def run_step(step: ParallelRunStep, client: Any = None, progress: bool = True) -> JobResult:
    """Run a step end to end; see :meth:`ParallelRunStep.run`."""
    prepared = prepare(step)
    state = StateStore(prepared.output)
    previous = _previous_job(state)
    same = previous is not None and previous.get("fingerprint") == prepared.fingerprint
    if step.allow_reuse and same and previous and previous.get("status") == COMPLETED:
        logger.info("reusing the completed job %s: same fingerprint", previous.get("run_id"))
        result = JobResult.load(prepared.output.url, prepared.output.storage_options)
        result.reused = True
        return result
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    lock = OutputLock(prepared.output, run_id)
    with translate_storage_errors(prepared.output.url):
        lock.acquire()
    try:
        resume = step.allow_reuse and same
        if not resume:
            _clear_state(state)
        _write_state(state, prepared.fingerprint, "Running", run_id)
        with _client_log(prepared.output) as logs:
            result = _execute(prepared, logs, run_id, client, progress, resume, state)
    finally:
        lock.release()
    logger.info("%s: %s", step.name, result.status)
    return result


def _previous_job(state: StateStore) -> dict[str, Any] | None:
    data = read_bytes_or_none(state.fs, state.path("fingerprint.json"))
    return json.loads(data) if data else None


def _write_state(state: StateStore, fingerprint: str, status: str, run_id: str) -> None:
    write_atomic(state.fs, state.path("fingerprint.json"), json.dumps(
        {"fingerprint": fingerprint, "status": status, "run_id": run_id}).encode())


def _clear_state(state: StateStore) -> None:
    for folder in ("committed", "results", "attempts", "assembly"):
        if state.fs.exists(state.path(folder)):
            state.fs.rm(state.path(folder), recursive=True)


@contextlib.contextmanager
def _client_log(output: Location) -> Iterator[LogFolder]:
    logs = LogFolder(output)
    handler = logging.FileHandler(logs.path("sys", "client.txt"), encoding="utf-8")
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    watched = [logging.getLogger("daskprs"), logging.getLogger("distributed")]
    for item in watched:
        item.addHandler(handler)
    if watched[0].level == logging.NOTSET:
        watched[0].setLevel(logging.INFO)
    try:
        yield logs
    finally:
        for item in watched:
            item.removeHandler(handler)
        handler.close()
        logs.sync()


def _execute(prepared: PreparedJob, logs: LogFolder, run_id: str, client: Any,
             show_progress: bool, resume: bool, state: StateStore) -> JobResult:
    step, plan = prepared.step, prepared.plan
    config = step.parallel_run_config
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    counter = FailureCounter(len(plan.mini_batches), config.error_threshold,
                             config.allowed_failed_count, config.allowed_failed_percent)
    assembler = make_assembler(config.output_action, prepared.output,
                               [mb.index for mb in plan.mini_batches],
                               config.append_row_file_name, len(plan.mini_batches))
    write_readme(logs, config.output_action, config.append_row_file_name)
    status, reason = CANCELED, "interrupted (Ctrl-C or SIGTERM)"
    with AttemptTable(logs, run_id) as table, \
            open(logs.path("job_progress_overview.txt"), "a", encoding="utf-8") as overview:
        progress = make_progress(len(plan.mini_batches), show_progress)
        sink = RecordSink(counter, assembler, table, progress, overview)
        try:
            committed = _committed_records(state, plan) if resume else {}
            for record in committed.values():
                sink.add_earlier(record)
            todo = [mb for mb in plan.mini_batches if mb.id not in committed]
            reason = _run(prepared, run_id, todo, client, sink) if todo else ""
            status = FAILED if reason else COMPLETED
            if status == COMPLETED and counter.items["succeeded"] == 0:
                status, reason = FAILED, ("no item succeeded: run() must return one element "
                                          "per successful item, also with summary_only")
        except Exception as exc:
            status, reason = FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            progress.close()
            _finish(assembler, status, state)
            result = _job_result(prepared, run_id, started, clock, status, reason, counter,
                                 assembler)
            write_job_result(logs, result)
            _write_state(state, prepared.fingerprint, status, run_id)
    return result


def _finish(assembler: OrderedAssembler, status: str, state: StateStore) -> None:
    """Publish the output of a completed job and remove its staging; else discard."""
    if status != COMPLETED:
        try:
            assembler.discard()
        except Exception:  # never hide the error that failed the job
            logger.exception("discarding the partial output failed")
        return
    assembler.commit()
    _clear_state(state)


def _run(prepared: PreparedJob, run_id: str, todo: list[Any], client: Any,
         sink: RecordSink) -> str:
    config = prepared.step.parallel_run_config
    target = client if client is not None else config.compute_target
    spec = _job_spec(prepared, run_id)
    requirements = list((config.environment or {}).get("pip", []))
    if target == "inline" or starts_local_cluster(target):
        check_requirements(requirements)  # the workers share this environment
    if target == "inline":
        from daskprs.inline import run_inline

        return run_inline(spec, prepared.plan, todo, sink)
    from daskprs.execution import run_on_cluster

    return run_on_cluster(spec, prepared.plan, prepared.inputs, todo, target,
                          config.processes, config.node_count, sink, requirements)


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
    return dict(sorted(records.items(), key=lambda item: item[1]["index"]))


def _job_spec(prepared: PreparedJob, run_id: str) -> JobSpec:
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
                   remote_side_inputs=prepared.remote_side_inputs,
                   secrets=tuple(known_secrets()))


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
    if isinstance(assembler, AppendRowAssembler):  # names of DataFrame results, for read_output
        output["columns"] = assembler.columns.names
        columns = assembler.columns.names or columns
    result = JobResult(
        status=status, reused=False, run_id=run_id, fingerprint=prepared.fingerprint,
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - clock, 3), mini_batches=dict(counter.mini_batches),
        items=dict(counter.items), attempts=dict(counter.attempts),
        thresholds=counter.thresholds(), first_errors=list(counter.first_errors),
        columns=columns, output=output, daskprs_version=__version__,
        description=config.description, reason=reason)
    result._storage_options = prepared.output.storage_options
    return result
