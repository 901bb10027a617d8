"""Run mini-batches on a Dask cluster and stream their records to a RecordSink.

The client keeps a bounded window of tasks in flight (:mod:`daskprs.window`) and submits
more as results arrive, in mini-batch order, so Dask runs them in order and the client's
memory does not grow with the job. A task carries a few consecutive mini-batches and
commits them once (:mod:`daskprs.commit`). A task that fails for a reason other than the
mini-batch (a ``KilledWorker`` after worker deaths) is resubmitted under a new key; the
attempts it lost are told from the events attempts send (:mod:`daskprs.lost_attempts`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from daskprs.cluster import connect
from daskprs.commit import StateStore, task_name
from daskprs.datasets import TabularDataset
from daskprs.errors import ClusterError, ClusterLostError, InitFailedError
from daskprs.gpus import NO_GPUS, GpuPlan, inspect_cluster
from daskprs.inputs.plan import MiniBatch, Plan
from daskprs.lost_attempts import MAX_WORKER_LOSSES, AttemptLedger
from daskprs.reachability import check_reachable
from daskprs.sink import RecordSink
from daskprs.stall_guards import (
    StallGuard,
    default_first_mini_batch_timeout,
    default_no_progress_timeout,
    run_on_workers,
)
from daskprs.storage import Location
from daskprs.stragglers import (
    Backup,
    StragglerWatch,
    abandon_attempts,
    idle_workers,
    mark_overtaken,
)
from daskprs.window import TaskSizer, next_group, window_size
from daskprs.worker.plugin import RunnerPlugin
from daskprs.worker.spec import JobSpec
from daskprs.worker.wrapper import event_topic

logger = logging.getLogger("daskprs")
MAX_RESUBMITS = 3
NO_WORKER_SECONDS = 120
WATCH_SECONDS = 5.0
POLL_SECONDS = 0.005
GUARD_SECONDS = 0.5


def run_on_cluster(spec: JobSpec, plan: Plan, inputs: list[Any], todo: Iterator[MiniBatch],
                   count: int, target: Any, processes: int, node_count: int,
                   sink: RecordSink, requirements: list[str],
                   stale_runs: tuple[str, ...] = (), guards: Guards | None = None,
                   gpus: GpuPlan = NO_GPUS) -> str:
    """Run the ``count`` mini-batches of ``todo``; return the failure reason, or ''.

    ``guards``: the stall guards' timeouts and ``straggler_factor`` (defaults when None).
    ``gpus``: this machine's GPUs for an embedded cluster; another cluster's workers are
    asked for theirs (a job that needs GPUs fails here when none has any)."""
    with connect(target, processes, node_count) as connection:
        client = connection.client
        gpus = gpus if connection.local else inspect_cluster(client, gpus.gpus_per_process)
        if client.dashboard_link:
            logger.info("Dask dashboard: %s", client.dashboard_link)
            if not _shown_on_a_stream(logger, logging.INFO):
                sink.progress.note(f"Dask dashboard: {client.dashboard_link}")
        if not connection.local:
            output = Location(spec.output_url, spec.output_storage_options)
            check_reachable(client, output, input_roots(inputs))
        owned_spec = replace(spec, owned_cluster=connection.owned)
        if requirements and not connection.local:
            _install_requirements(client, requirements)
        remove_stale_runs(client, stale_runs)
        plugin = RunnerPlugin(owned_spec, connection.threads_per_runner, gpus)
        client.register_plugin(plugin)
        try:
            return _Dispatcher(client, owned_spec, plan, inputs, sink,
                               guards or Guards(), gpus).run(todo, count)
        finally:
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(owned_spec.plugin_name)


def _shown_on_a_stream(log: logging.Logger, level: int) -> bool:
    """Whether a record of ``level`` on ``log`` reaches a terminal-like stream handler (so
    the dashboard link is not shown twice)."""
    if not log.isEnabledFor(level):
        return False
    current: logging.Logger | None = log
    while current is not None:
        for handler in current.handlers:
            if (isinstance(handler, logging.StreamHandler)
                    and not isinstance(handler, logging.FileHandler) and handler.level <= level):
                return True
        current = current.parent if current.propagate else None
    return False


def remove_stale_runs(client: Any, run_ids: tuple[str, ...]) -> None:
    """Remove what a killed client left on the cluster: its plugin (and so its runners,
    also on workers that join later) and its tasks."""
    for run_id in run_ids:
        name = f"daskprs-{run_id}"
        with contextlib.suppress(Exception):
            client.unregister_worker_plugin(name)
        with contextlib.suppress(Exception):
            keys = client.run_on_scheduler(_keys_with_prefix, name)
            if keys:
                from distributed import Future

                client.cancel([Future(key, client) for key in keys], force=True)
                logger.info("removed %d tasks of the stale run %s", len(keys), run_id)


def _keys_with_prefix(prefix: str, dask_scheduler: Any = None) -> list[str]:
    return [key for key in dask_scheduler.tasks if str(key).startswith(prefix)]


def input_roots(inputs: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The folder each input path lives in (the part before a wildcard), with its options."""
    roots = []
    for dataset in inputs:
        for path in getattr(dataset, "paths", ()):
            cut = min([path.find(ch) for ch in "*?[" if ch in path] or [len(path)])
            root = path[:cut].rsplit("/", 1)[0] if cut < len(path) else path
            roots.append((root, dict(dataset.storage_options)))
    return roots


def _install_requirements(client: Any, requirements: list[str]) -> None:
    """Install ``environment.pip`` on the workers of an existing cluster."""
    from distributed.diagnostics.plugin import PipInstall

    logger.info("installing on the workers: pip install %s", " ".join(requirements))
    client.register_plugin(PipInstall(packages=list(requirements)))


class _Health:
    """Which workers failed ``init()``, and whether any healthy one is left."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.unhealthy: dict[str, str] = {}
        self.no_workers_since: float | None = None

    def mark(self, record: dict[str, Any]) -> list[str] | None:
        """Record an unhealthy worker; return the workers to send its mini-batch to."""
        if record["worker"] not in self.unhealthy:
            logger.warning("worker %s takes no mini-batches: init() failed: %s",
                           record["worker"], (record.get("error") or "").splitlines()[:1])
        self.unhealthy[record["worker"]] = record.get("error") or "init() failed"
        workers = [w for w in self.client.scheduler_info()["workers"] if w not in self.unhealthy]
        if not workers:
            first = next(iter(self.unhealthy.values()))
            raise InitFailedError(f"init() failed on every worker ({len(self.unhealthy)}), so no "
                               f"worker can take mini-batches. The first error:\n{first}")
        return workers

    def check_workers(self) -> None:
        """Fail when the cluster has had no worker for :func:`no_worker_timeout` seconds."""
        if self.client.status in ("closed", "closing") or self.client.scheduler is None:
            raise scheduler_lost()
        if self.client.scheduler_info()["workers"]:
            self.no_workers_since = None
            return
        now = time.monotonic()
        self.no_workers_since = self.no_workers_since or now
        limit = no_worker_timeout()
        if now - self.no_workers_since > limit:
            raise ClusterLostError(f"the cluster has had no worker for {limit:g} s; the "
                                   f"remaining mini-batches cannot run. Start workers (or "
                                   f"check why they died: logs/sys/client.txt) and run again: "
                                   f"committed mini-batches are kept.")


def no_worker_timeout() -> float:
    """Seconds without any worker before a job fails: Dask config
    ``daskprs.no-worker-timeout`` (``DASK_DASKPRS__NO_WORKER_TIMEOUT``), default 120."""
    import dask

    return float(dask.config.get("daskprs.no-worker-timeout", NO_WORKER_SECONDS))


def scheduler_lost() -> ClusterLostError:
    """The error of a job whose scheduler went away."""
    return ClusterLostError("the Dask scheduler was lost while the job ran (it was stopped, "
                            "restarted or cannot be reached); the remaining mini-batches "
                            "cannot run. Run the job again: committed mini-batches are "
                            "kept, and only the others run.")


@dataclass(frozen=True)
class Guards:
    """The stall guards' timeouts (None: their defaults, :mod:`daskprs.stall_guards`) and
    ``straggler_factor`` (None: no backup attempts)."""

    first_mini_batch_timeout: float | None = None
    no_progress_timeout: float | None = None
    straggler_factor: float | None = None


@dataclass
class _Task:
    """A submitted task: its mini-batches, name and submission number."""

    batches: list[MiniBatch]
    name: str
    submission: int


class _Dispatcher:
    """Submit tasks in mini-batch order within a bounded window; take their records."""

    def __init__(self, client: Any, spec: JobSpec, plan: Plan, inputs: list[Any],
                 sink: RecordSink, guards: Guards, gpus: GpuPlan = NO_GPUS) -> None:
        self.client = client
        self.gpus = gpus  # keeps tasks on GPU workers when the job needs GPUs
        self.spec = spec
        self.plan = plan
        self.sink = sink
        self.frames = {d.name: d for d in inputs if isinstance(d, TabularDataset)}
        self.state = StateStore(Location(spec.output_url, spec.output_storage_options))
        self.health = _Health(client)
        self.ledger = AttemptLedger(lambda mb_id: mb_id in sink.seen)
        sink.running = self.ledger.running  # for the progress snapshot (daskprs.status)
        self.pending: dict[str, tuple[Any, _Task]] = {}
        self.again: deque[tuple[list[MiniBatch], list[str] | None, int]] = deque()
        self.resubmits: dict[str, int] = {}
        self.carried: dict[str, list[dict[str, Any]]] = {}  # attempts on unhealthy workers
        self.held: list[MiniBatch] = []
        self.workers = max(len(client.scheduler_info()["workers"]), 1)
        self.counted = time.monotonic()
        self.guard = StallGuard(
            client, spec.plugin_name,
            guards.first_mini_batch_timeout or default_first_mini_batch_timeout(
                spec.init_timeout),
            guards.no_progress_timeout or default_no_progress_timeout(
                spec.run_invocation_timeout, spec.init_timeout))
        self.stragglers = StragglerWatch(guards.straggler_factor) \
            if guards.straggler_factor else None
        self.backups: dict[str, Backup] = {}  # task name -> its two executions
        self.submitted_all = False
        self.watched = time.monotonic()

    def run(self, todo: Iterator[MiniBatch], count: int) -> str:
        from distributed import as_completed

        first = 1 if self.plan.kind == "tabular" else 4
        self.sizer = TaskSizer(first, count)
        self.todo = todo
        topic = event_topic(self.spec.run_id)
        self.client.subscribe_topic(topic, self._on_event)
        self.stream = as_completed([], with_results=True, raise_errors=False)
        idle_since = time.monotonic()
        try:
            self._fill()
            while self.pending:
                finished = self.stream.next_batch(block=False)
                if not finished:
                    if time.monotonic() - idle_since > min(WATCH_SECONDS,
                                                           no_worker_timeout() / 4):
                        self.health.check_workers()
                        idle_since = time.monotonic()
                    reason = self._watch()
                    if reason:
                        self._cancel()
                        self._abandon_in_flight()
                        return reason
                    time.sleep(POLL_SECONDS)
                    continue
                idle_since = time.monotonic()
                for future, value in finished:
                    reason = self._finished(future, value)
                    if reason:
                        self._cancel()
                        return reason
                self._fill()
        except BaseException:
            self._cancel()
            raise
        finally:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)
        return ""

    def _fill(self) -> None:
        if time.monotonic() - self.counted > 1.0:  # workers that joined widen the window
            self.workers = max(len(self.client.scheduler_info()["workers"]), 1)
            self.counted = time.monotonic()
        while len(self.pending) < window_size(self.workers):
            if self.again:
                batches, workers, submission = self.again.popleft()
            else:
                batches = next_group(self.todo, self.sizer.size(self.workers), self.held)
                workers, submission = None, 0
                if not batches:
                    self.submitted_all = True
                    return
                self.sizer.remaining -= len(batches)
            self._submit(batches, workers, submission)

    def _submit(self, batches: list[MiniBatch], workers: list[str] | None,
                submission: int, backup_on: str | None = None) -> str:
        """Submit a task; ``backup_on``: a second execution of the same task (same bundle
        name) on that worker only. Return the future's key."""
        from daskprs.worker.wrapper import run_file_task, run_tabular_task

        task = _Task(batches, task_name(batches, submission), submission)
        key = f"{self.spec.plugin_name}-{task.name}" + ("-backup" if backup_on else "")
        options = self.gpus.submit_options(workers)
        if backup_on:
            options = {**self.gpus.submit_options([backup_on]), "workers": [backup_on],
                       "allow_other_workers": False}
        dataset = self.frames.get(batches[0].input_name)
        if dataset is not None and dataset.format == "dask":
            future = self.client.compute(self._dask_partition(dataset, task), **options)
        else:
            function = run_file_task if self.plan.kind == "file" else run_tabular_task
            spent = {mb.id: len(self.carried[mb.id]) for mb in batches if mb.id in self.carried}
            future = self.client.submit(function, self.spec.plugin_name, task.name, batches,
                                        spent or None, key=key, pure=False, **options)
        self.pending[future.key] = (future, task)
        self.stream.add(future)
        return future.key

    def _on_event(self, event: Any) -> None:
        """An attempt started: tell the ledger, the stall guard and the straggler watch."""
        self.ledger.on_event(event)
        message = event[1] if isinstance(event, tuple) else event
        self.guard.on_event(message)
        if self.stragglers is not None:
            self.stragglers.on_event(message)

    def _watch(self) -> str | None:
        """Every :data:`GUARD_SECONDS` while no result arrives: the stall guards, then
        backups for stragglers."""
        if time.monotonic() - self.watched < GUARD_SECONDS:
            return None
        self.watched = time.monotonic()
        reason = self.guard.check()
        if reason is None and self.stragglers is not None and self.submitted_all \
                and not self.again:
            self._back_up_stragglers()
        return reason

    def _back_up_stragglers(self) -> None:
        """Start a backup of each straggling task on an idle worker (one backup a task)."""
        assert self.stragglers is not None
        backed = {b.primary_key for b in self.backups.values()} | {
            b.backup_key for b in self.backups.values()}
        for key, (_, task) in list(self.pending.items()):
            if key in backed or task.name in self.backups:
                continue
            dataset = self.frames.get(task.batches[0].input_name)
            if dataset is not None and dataset.format == "dask":
                continue  # a Dask DataFrame partition is computed, not resubmitted
            straggling = self.stragglers.straggling(mb.id for mb in task.batches)
            if straggling is None:
                continue
            idle = idle_workers(self.client, [straggling[1], *self.health.unhealthy])
            if not idle:
                return
            logger.info("mini-batch of task %s has run %.1f s (> %g × the median %.3f s): "
                        "starting a backup on %s", task.name, straggling[0],
                        self.stragglers.factor, self.stragglers.median() or 0, idle[0])
            backup = self._submit(task.batches, None, task.submission, backup_on=idle[0])
            self.backups[task.name] = Backup(key, straggling[1], backup, idle[0])
            self.sink.counter.stragglers["backups"] += 1

    def _abandon_in_flight(self) -> None:
        """A stall guard failed the job: the workers kill the runners of the mini-batches
        in flight (and of ``init()`` calls still running), so that the job ends now rather
        than when those attempts time out."""
        with contextlib.suppress(Exception):
            run_on_workers(self.client, abandon_attempts, self.spec.plugin_name,
                           sorted(self.guard.in_flight), True)

    def _settle_backup(self, key: str, task: _Task, failed: bool
                       ) -> tuple[bool, Backup | None]:
        """One execution of a backed-up task ended: ``(skip, backup)``. ``skip`` when it
        failed and its twin still runs (the twin decides); else the twin is canceled and
        its worker abandons it."""
        backup = self.backups.get(task.name)
        if backup is None:
            return False, None
        twin_key = backup.backup_key if key == backup.primary_key else backup.primary_key
        twin_worker = backup.backup_worker if key == backup.primary_key \
            else backup.primary_worker
        if failed and twin_key in self.pending:
            return True, backup
        del self.backups[task.name]
        twin = self.pending.pop(twin_key, None)
        if twin is not None:
            with contextlib.suppress(Exception):
                self.client.cancel([twin[0]])
            with contextlib.suppress(Exception):
                run_on_workers(self.client, abandon_attempts, self.spec.plugin_name,
                               [mb.id for mb in task.batches], workers=[twin_worker])
        return False, backup

    def _dask_partition(self, dataset: TabularDataset, task: _Task) -> Any:
        from daskprs.inputs.tabular import tag_partition
        from daskprs.worker.wrapper import STATUS_META, run_tabular_partition

        frame = dataset.frame.partitions[[mb.start for mb in task.batches]]
        frame = frame.map_partitions(tag_partition, task.batches, task.name, meta=frame._meta,
                                     enforce_metadata=False)
        records = frame.map_partitions(run_tabular_partition, self.spec.plugin_name,
                                       task.name, meta=STATUS_META, enforce_metadata=False)
        return records.to_delayed()[0]

    def _finished(self, future: Any, value: Any) -> str | None:
        entry = self.pending.pop(future.key, None)
        if entry is None:
            return None
        task = entry[1]
        status = future.status
        future.release()
        skip, backup = self._settle_backup(future.key, task, status != "finished")
        if skip:
            return None
        if status == "error":
            records = self.state.read_commit(self.spec.run_id, task.name)
            if records is None:
                self._resubmit_after_error(task, value)
                return None
        elif status != "finished":
            raise scheduler_lost()
        else:
            records = _records_of(value)
        won = False
        for record in records:
            if record["status"] == "unhealthy":
                self.carried.setdefault(record["id"], []).extend(record.get("attempts") or [])
                self.ledger.settle(record["id"])  # its attempts are carried, not lost
                workers = self.health.mark(record)
                self.again.append(([mb for mb in task.batches if mb.id == record["id"]],
                                   workers, task.submission + 1))
                continue
            if record.get("elapsed") is not None:
                self.sizer.observe(record["elapsed"])
            self.guard.on_record(record["id"])
            if self.stragglers is not None:
                self.stragglers.observe(record["id"], record.get("elapsed"))
            if record["id"] in self.carried:
                record = {**record, "attempts": [*self.carried.pop(record["id"]),
                                                 *record.get("attempts", [])]}
            merged = self.ledger.merge(record)
            if backup is not None:
                merged = mark_overtaken(merged)
                if not won and self.stragglers is not None and self.stragglers.worker_of(
                        record.get("execution")) == backup.backup_worker:
                    self.sink.counter.stragglers["backups_won"] += 1
                    won = True  # once per task
            reason = self.sink.add(merged)
            if reason:
                return reason
        return None

    def _resubmit_after_error(self, task: _Task, error: Any) -> None:
        """Fail mini-batches lost with their worker too often; resubmit the others."""
        again = []
        for mb in task.batches:
            lost = self.ledger.lost(mb.id)
            if len(lost) >= MAX_WORKER_LOSSES:
                self.sink.add(self.ledger.merge(_lost_record(mb, len(lost), self.spec.run_id)))
                continue
            self.resubmits[mb.id] = self.resubmits.get(mb.id, 0) + 1
            if self.resubmits[mb.id] > MAX_RESUBMITS:
                raise ClusterError(f"mini-batch {mb.id} could not be run: its task failed "
                                   f"{MAX_RESUBMITS + 1} times ({type(error).__name__}: "
                                   f"{error}). See logs/sys/client.txt.") from error
            again.append(mb)
        if again:
            logger.warning("resubmitting %s after %s: %s", ", ".join(mb.id for mb in again),
                           type(error).__name__, error)
            self.again.append((again, None, task.submission + 1))

    def _cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.client.cancel([future for future, _ in self.pending.values()])


def _lost_record(mb: MiniBatch, losses: int, run_id: str) -> dict[str, Any]:
    first, last = mb.item_labels(mb.items)
    items = mb.items or 0
    error = f"WorkerLost: {losses} workers were lost while running {mb.id}"
    return {"id": mb.id, "index": mb.index, "input": mb.input_name, "first_item": first,
            "last_item": last, "items": items, "succeeded": 0, "failed": items,
            "status": "failed", "error": error, "reused": False, "result_rows": 0,
            "columns": None, "attempts": [], "execution": None, "run_id": run_id}


def _records_of(value: Any) -> list[dict[str, Any]]:
    if hasattr(value, "columns"):  # a Dask DataFrame input's partition
        return [record for text in value["record"] for record in json.loads(text)]
    return list(value)


__all__ = ["input_roots", "remove_stale_runs", "run_on_cluster"]
