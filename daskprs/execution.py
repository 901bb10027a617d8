"""Run mini-batches on a Dask cluster and stream their records to a RecordSink.

One Dask task per tabular mini-batch (``dd.from_map`` + ``map_partitions``); file
mini-batches grouped a few per task (a Dask bag). A task that fails for a reason other
than the mini-batch (a ``KilledWorker`` after worker deaths) is resubmitted under a new
key: the commit protocol makes a rerun safe, and attempt markers keep the count.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid
from dataclasses import replace
from typing import Any

from daskprs.cluster import connect
from daskprs.datasets import TabularDataset
from daskprs.errors import ClusterError, InitFailedError
from daskprs.inputs.plan import MiniBatch, Plan
from daskprs.reachability import check_reachable
from daskprs.sink import RecordSink
from daskprs.storage import Location
from daskprs.worker.plugin import RunnerPlugin
from daskprs.worker.spec import JobSpec

logger = logging.getLogger("daskprs")
MAX_RESUBMITS = 3
NO_WORKER_SECONDS = 120
WATCH_SECONDS = 5.0
POLL_SECONDS = 0.02


def run_on_cluster(spec: JobSpec, plan: Plan, inputs: list[Any], todo: list[MiniBatch],
                   target: Any, processes: int, node_count: int, sink: RecordSink,
                   requirements: list[str]) -> str:
    """Run ``todo``; return the failure reason, or an empty string."""
    with connect(target, processes, node_count) as connection:
        client = connection.client
        if client.dashboard_link:
            logger.info("Dask dashboard: %s", client.dashboard_link)
            sink.progress.note(f"Dask dashboard: {client.dashboard_link}")
        if not connection.local:
            output = Location(spec.output_url, spec.output_storage_options)
            check_reachable(client, output, input_roots(inputs))
        owned_spec = replace(spec, owned_cluster=connection.owned)
        if requirements and not connection.local:
            _install_requirements(client, requirements)
        plugin = RunnerPlugin(owned_spec, connection.threads_per_runner)
        client.register_plugin(plugin)
        try:
            submitter = _Submitter(client, owned_spec, plan, inputs)
            return _stream(client, submitter, todo, sink)
        finally:
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(owned_spec.plugin_name)


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
        """Fail when the cluster has had no worker for ``NO_WORKER_SECONDS``."""
        if self.client.scheduler_info()["workers"]:
            self.no_workers_since = None
            return
        now = time.monotonic()
        self.no_workers_since = self.no_workers_since or now
        if now - self.no_workers_since > NO_WORKER_SECONDS:
            raise ClusterError(f"the cluster has had no worker for {NO_WORKER_SECONDS} s; "
                               f"the remaining mini-batches cannot run. Start workers (or "
                               f"check why they died: logs/sys/client.txt) and run again: "
                               f"committed mini-batches are kept.")


class _Submitter:
    """Build and submit the tasks of a list of mini-batches; each call gets new keys."""

    def __init__(self, client: Any, spec: JobSpec, plan: Plan, inputs: list[Any]) -> None:
        self.client = client
        self.spec = spec
        self.plan = plan
        self.frames = {d.name: d for d in inputs if isinstance(d, TabularDataset)}
        self.workers = list(client.scheduler_info()["workers"]) or [None]

    def submit(self, batches: list[MiniBatch], workers: list[str] | None = None
               ) -> dict[Any, list[MiniBatch]]:
        """Submit ``batches`` (preferably to ``workers``; others may take them when those
        are gone, so that nothing waits for a lost worker); return each future with the
        mini-batches it runs."""
        tasks: list[tuple[Any, list[MiniBatch]]] = []
        if self.plan.kind == "file":
            per_task = max(1, min(10, math.ceil(len(batches) / (8 * len(self.workers)))))
            groups = [batches[i:i + per_task] for i in range(0, len(batches), per_task)]
            tasks = in_run_order(groups, self._file_tasks)
        else:
            for name in dict.fromkeys(mb.input_name for mb in batches):
                chosen = [[mb] for mb in batches if mb.input_name == name]
                dataset = self.frames[name]
                if dataset.format == "dask":  # partitions are fixed: no reordering
                    tasks.extend(zip(self._tabular_tasks(dataset, chosen), chosen, strict=True))
                else:
                    tasks.extend(in_run_order(
                        chosen, lambda items, d=dataset: self._tabular_tasks(d, items)))
        futures = self.client.compute([task for task, _ in tasks], workers=workers,
                                      allow_other_workers=True)
        return dict(zip(futures, [group for _, group in tasks], strict=True))

    def _file_tasks(self, groups: list[Any]) -> list[Any]:
        import dask.bag as db

        from daskprs.worker.wrapper import run_file_partition

        bag = db.from_sequence(groups, npartitions=max(len(groups), 1))
        records = bag.map_partitions(run_file_partition, self.spec.plugin_name,
                                     uuid.uuid4().hex)
        # unoptimized: one task per group, without the alias task that would hold each
        # result on the worker until its next task ends
        return records.to_delayed(optimize_graph=False)

    def _tabular_tasks(self, dataset: TabularDataset, groups: list[Any]) -> list[Any]:
        import dask.dataframe as dd

        from daskprs.inputs.tabular import read_mini_batch, tag_partition
        from daskprs.worker.wrapper import STATUS_META, run_tabular_partition

        batches = [group[0] if isinstance(group, list) else group for group in groups]
        submission = uuid.uuid4().hex  # new keys, so a resubmitted mini-batch runs again
        if dataset.format == "dask":
            frame = dataset.frame.partitions[[mb.start for mb in batches]]
            frame = frame.map_partitions(tag_partition, batches, submission, meta=frame._meta,
                                         enforce_metadata=False)
        else:
            frame = dd.from_map(read_mini_batch, batches, args=[submission], meta=self.plan.meta,
                                enforce_metadata=False, label="daskprs-read")
        records = frame.map_partitions(run_tabular_partition, self.spec.plugin_name, submission,
                                       meta=STATUS_META, enforce_metadata=False)
        return records.to_delayed()


def in_run_order(groups: list[Any], build: Any) -> list[tuple[Any, Any]]:
    """Tasks for ``groups`` (one each), placed so that Dask runs them in the groups' order.

    Dask orders a collection's independent tasks by their position's key, not by the
    position (9, 8, ..., 2, 11, 10, 1, 0). The order depends only on the graph's shape,
    so a stand-in built from integers tells which position runs when; group k then goes
    to the position that runs k-th. The output is ordered either way: this is so that
    results stream into the ordered assembly, and early failures are found early.
    """
    from dask.order import order

    if len(groups) < 2:
        return list(zip(build(groups), groups, strict=True))
    probe = build(list(range(len(groups))))
    graph: dict[Any, Any] = {}
    for task in probe:
        graph.update(task.__dask_graph__())
    priorities = order(graph)
    ranks = [_priority(priorities[task.key]) for task in probe]
    positions = sorted(range(len(groups)), key=ranks.__getitem__)
    placed: list[Any] = [None] * len(groups)
    for group, position in zip(groups, positions, strict=True):
        placed[position] = group
    return list(zip(build(placed), placed, strict=True))


def _priority(value: Any) -> Any:
    return getattr(value, "priority", value)


def _stream(client: Any, submitter: _Submitter, todo: list[MiniBatch], sink: RecordSink) -> str:
    from distributed import as_completed

    pending = submitter.submit(todo)
    by_id = {mb.id: mb for mb in todo}
    resubmits: dict[str, int] = {}
    health = _Health(client)
    stream = as_completed(list(pending))
    idle_since = time.monotonic()
    try:
        while not stream.is_empty():
            finished = stream.next_batch(block=False)
            if not finished:
                if time.monotonic() - idle_since > WATCH_SECONDS:
                    health.check_workers()
                    idle_since = time.monotonic()
                time.sleep(POLL_SECONDS)
                continue
            idle_since = time.monotonic()
            for future in finished:
                batches = pending.pop(future)
                if future.status == "error":
                    again, workers = _retry_batches(future, batches, resubmits), None
                    future.release()
                    _add(stream, pending, submitter.submit(again, workers))
                    continue
                value = future.result()
                future.release()
                for record in _records_of(value):
                    if record["status"] == "unhealthy":
                        workers = health.mark(record)
                        mb = by_id[record["id"]]
                        _add(stream, pending, submitter.submit([mb], workers))
                        continue
                    reason = sink.add(record)
                    if reason:
                        client.cancel(list(pending))
                        return reason
    except BaseException:
        client.cancel(list(pending))
        raise
    return ""


def _add(stream: Any, pending: dict[Any, list[MiniBatch]],
         submitted: dict[Any, list[MiniBatch]]) -> None:
    for future, group in submitted.items():
        pending[future] = group
        stream.add(future)


def _retry_batches(future: Any, batches: list[MiniBatch], resubmits: dict[str, int]
                   ) -> list[MiniBatch]:
    error = future.exception()
    for mb in batches:
        resubmits[mb.id] = resubmits.get(mb.id, 0) + 1
        if resubmits[mb.id] > MAX_RESUBMITS:
            raise ClusterError(f"mini-batch {mb.id} could not be run: its task failed "
                               f"{MAX_RESUBMITS + 1} times ({type(error).__name__}: {error}). "
                               f"See logs/sys/client.txt.") from error
    logger.warning("resubmitting %s after %s: %s", ", ".join(mb.id for mb in batches),
                   type(error).__name__, error)
    return batches


def _records_of(value: Any) -> list[dict[str, Any]]:
    if hasattr(value, "columns"):
        return [json.loads(text) for text in value["record"]]
    return [json.loads(text) for text in value]
