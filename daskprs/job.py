"""The job driver: plan -> guard the output -> run -> count -> commit -> report.

Nothing here touches a cluster before :func:`prepare` has planned every mini-batch and
checked the output; the executors (:mod:`daskprs.execution`, :mod:`daskprs.inline`)
stream records into a :class:`~daskprs.sink.RecordSink` that counts failures live.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import cloudpickle

from daskprs import commit as commit_protocol
from daskprs.azure_arguments import report_ignored_options
from daskprs.azure_models import model_listing
from daskprs.cluster import starts_local_cluster
from daskprs.commit import StateStore
from daskprs.datasets import FileDataset, TabularDataset
from daskprs.errors import InputError, OutputError
from daskprs.failures import FailureCounter
from daskprs.fingerprint import job_fingerprint
from daskprs.inputs.files import plan_files
from daskprs.inputs.listing import listing_digest
from daskprs.inputs.plan import Plan
from daskprs.inputs.side import list_side_inputs
from daskprs.inputs.tabular import plan_tabular
from daskprs.interrupts import last_words
from daskprs.outputs.assemble import (
    AppendRowAssembler,
    OrderedAssembler,
    ParquetAssembler,
    make_assembler,
    remove_unpublished_parts,
)
from daskprs.outputs.guard import OutputLock, check_output_is_ours
from daskprs.outputs.reports import AttemptTable, LogFolder, write_job_result, write_readme
from daskprs.progress import make_progress
from daskprs.requirements import check_requirements
from daskprs.result import CANCELED, COMPLETED, FAILED, JobResult
from daskprs.sink import RecordSink
from daskprs.storage import Location, probe_bucket
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
UNFINISHED = ("the job did not end (its process was killed, or Ctrl-C was pressed twice); "
              "run it again: committed mini-batches are kept")


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
    models: tuple[tuple[str, str, dict[str, Any]], ...] = ()


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
    models = tuple((m.name, m.url, resolve_options(m.storage_options, f"models.{m.name}"))
                   for m in step.models)
    with input_errors(", ".join(m[1] for m in models)):
        model_digest = [listing_digest(model_listing(models))] if models else []
    fingerprint = job_fingerprint(step.parallel_run_config, arguments,
                                  [plan.listing_digest(), listing_digest(side_listing),
                                   *model_digest], output.url,
                                  [*storage, {"partition_format": formats},
                                   *([{"models": {m[0]: m[1] for m in models}}] if models
                                     else [])])
    remote_sides = tuple((Location(d.paths[0]).url, d.storage_options) for d in side_inputs
                         if len(d.paths) == 1 and is_remote(d.paths[0], d.storage_options))
    return PreparedJob(step, plan, output, fingerprint, arguments, inputs, remote_sides, models)


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
    clock = time.perf_counter()
    prepared = prepare(step)
    state = StateStore(prepared.output)
    previous = state.read_job()
    same = previous is not None and previous.get("fingerprint") == prepared.fingerprint
    reusable = step.allow_reuse and same and previous and previous.get("status") == COMPLETED
    result, changed = None, ""
    if reusable:
        try:
            result = JobResult.load(prepared.output.url, prepared.output.storage_options)
            changed = result.output_changed()
        except (OutputError, ValueError) as exc:
            changed = f"its job result cannot be read ({exc})"
    if changed:
        logger.warning("not reusing the completed job %s: %s; running it again",
                       previous.get("run_id") if previous else None, changed)
    if result is not None and not changed:
        logger.info("reusing the completed job %s: same fingerprint", previous.get("run_id"))
        result.reused = True
        result.mini_batches["reused"] = result.mini_batches.get("total", 0)
        result.seconds = round(time.perf_counter() - clock, 3)
        return result
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    lock = OutputLock(prepared.output, run_id)
    with translate_storage_errors(prepared.output.url):
        lock.acquire()
    try:
        resume = bool(step.allow_reuse and same)
        earlier = list(previous.get("runs") or [previous.get("run_id")]) if resume else []
        stale = (previous.get("run_id"),) if previous and previous.get("status") == "Running" \
            else ()
        published = previous.get("published") if previous else None
        state.clear(keep_runs=earlier)
        if stale:
            remove_unpublished_parts(prepared.output, published)
        state.write_readme(commit_protocol.__doc__ or "")
        state.write_job(prepared.fingerprint, "Running", run_id, [*earlier, run_id], published)
        with _client_log(prepared.output) as logs:
            result = _execute(prepared, logs, run_id, client, progress, earlier, state,
                              tuple(r for r in stale if r), published)
    finally:
        lock.release()
    logger.info("%s: %s", step.name, result.status)
    return result


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
        logs.close()


def _execute(prepared: PreparedJob, logs: LogFolder, run_id: str, client: Any,
             show_progress: bool, earlier: list[str], state: StateStore,
             stale: tuple[str, ...], published: dict[str, Any] | None) -> JobResult:
    step, plan = prepared.step, prepared.plan
    config = step.parallel_run_config
    total = len(plan.mini_batches)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    counter = FailureCounter(total, config.error_threshold, config.allowed_failed_count,
                             config.allowed_failed_percent)
    assembler = make_assembler(config.output_action, prepared.output,
                               config.append_row_file_name, total, run_id)
    write_readme(logs, config.output_action, config.append_row_file_name)
    report_ignored_options(step.arguments)  # into logs/sys/client.txt
    status, reason = CANCELED, "interrupted (Ctrl-C or SIGTERM)"
    runs = [*earlier, run_id]

    def canceled_at_once() -> None:  # a second Ctrl-C: no finally block will run
        write_job_result(logs, _job_result(prepared, run_id, started, clock, CANCELED,
                                           UNFINISHED, counter, assembler))

    with last_words(canceled_at_once), AttemptTable(logs, run_id) as table, \
            open(logs.path("job_progress_overview.txt"), "a", encoding="utf-8") as overview:
        progress = make_progress(total, show_progress)
        sink = RecordSink(counter, assembler, table, progress, overview)
        failure: Exception | None = None
        try:
            committed = _committed_records(state, plan, earlier)
            for record in committed.values():
                sink.add_earlier(record)
            todo = (mb for mb in plan.mini_batches if mb.index not in committed)
            count = total - len(committed)
            reason = _run(prepared, run_id, todo, count, client, sink, stale) if count else ""
            status = FAILED if reason else COMPLETED
            if status == COMPLETED:
                reason = _nothing_succeeded(counter)
                status = FAILED if reason else COMPLETED
        except Exception as exc:
            status, reason = FAILED, f"{type(exc).__name__}: {exc}"
            failure = exc
            raise
        finally:
            progress.close()
            _finish(assembler, status, state)
            result = _job_result(prepared, run_id, started, clock, status, reason, counter,
                                 assembler)
            write_job_result(logs, result)
            if status == COMPLETED:
                published = assembler.published()
            state.write_job(prepared.fingerprint, status, run_id, runs, published)
            if status == COMPLETED:
                assembler.prune()  # the job result names the new output now
            if failure is not None:
                with contextlib.suppress(AttributeError):
                    failure.job_result = result  # type: ignore[attr-defined]
    return result


def _item_counts(counter: FailureCounter, plan: Plan) -> dict[str, int]:
    """Item counts; the total is never lower than the items the plan knows of (a job that
    ended before all its mini-batches reported still says how many items it had)."""
    items = dict(counter.items)
    planned = plan.total_items
    if planned is not None and planned > items["total"]:
        items["total"] = planned
    return items


def _nothing_succeeded(counter: FailureCounter) -> str:
    """The reason a job whose thresholds held still failed: no mini-batch returned at all.

    A job whose mini-batches all returned but returned no rows completes, as on Azure (a
    training script that saves a model per partition and returns ``[]``), with a warning.
    """
    if counter.mini_batches["succeeded"] == 0 and counter.mini_batches["failed"] > 0:
        first = counter.first_errors[0]["error"] if counter.first_errors else "see the logs"
        return (f"every mini-batch failed ({counter.mini_batches['failed']} of "
                f"{counter.planned}); the first error: {first}")
    if counter.items["succeeded"] == 0 and counter.mini_batches["succeeded"] > 0:
        logger.warning("no rows were returned: every run() returned an empty result. If "
                       "run() writes its own output (EntryScript().output_dir), that is "
                       "expected; otherwise return one element per successful item.")
    return ""


def _finish(assembler: OrderedAssembler, status: str, state: StateStore) -> None:
    """Publish the output of a completed job and remove its staging; else discard."""
    if status != COMPLETED:
        try:
            assembler.discard()
        except Exception:  # never hide the error that failed the job
            logger.exception("discarding the partial output failed")
        return
    assembler.commit()
    state.clear()


def _run(prepared: PreparedJob, run_id: str, todo: Iterator[Any], count: int, client: Any,
         sink: RecordSink, stale: tuple[str, ...]) -> str:
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

    return run_on_cluster(spec, prepared.plan, prepared.inputs, todo, count, target,
                          config.processes, config.node_count, sink, requirements, stale)


def _committed_records(state: StateStore, plan: Plan, runs: list[str]
                       ) -> dict[int, dict[str, Any]]:
    """Mini-batches committed by earlier runs of the same job (a resume), by index."""
    if not runs:
        return {}
    records = {}
    total = len(plan.mini_batches)
    for index, record in sorted(state.committed_records(runs).items()):
        if index < total and plan.mini_batches[index].id == record["id"]:
            records[index] = {**record, "attempts": [], "reused": True}
    return records


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
                   remote_side_inputs=prepared.remote_side_inputs, models=prepared.models,
                   secrets=tuple(known_secrets()))


def _job_result(prepared: PreparedJob, run_id: str, started: datetime, clock: float,
                status: str, reason: str, counter: FailureCounter,
                assembler: OrderedAssembler) -> JobResult:
    from daskprs import __version__

    config = prepared.step.parallel_run_config
    columns = None
    if isinstance(assembler, ParquetAssembler) and assembler.schema is not None:
        columns = [f"{f.name}: {f.type}" for f in assembler.schema]
    elif isinstance(assembler, AppendRowAssembler) and assembler.columns.names:
        columns = assembler.columns.names  # the names of DataFrame results
    elif prepared.plan.meta is not None:
        columns = [str(c) for c in prepared.plan.meta.columns]
    output = {"url": prepared.output.url, "action": config.output_action,
              "file": config.append_row_file_name, "separator": config.append_row_separator,
              **(assembler.published() if status == COMPLETED else {})}
    result = JobResult(
        status=status, reused=False, run_id=run_id, fingerprint=prepared.fingerprint,
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - clock, 3), mini_batches=dict(counter.mini_batches),
        items=_item_counts(counter, prepared.plan), attempts=dict(counter.attempts),
        thresholds=counter.thresholds(), first_errors=list(counter.first_errors),
        columns=columns, output=output, daskprs_version=__version__,
        description=config.description, reason=reason)
    result._storage_options = prepared.output.storage_options
    return result
