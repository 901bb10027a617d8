"""Know the cost before the run: ``init()`` once and a sample of mini-batches, projected.

:func:`estimate_step` plans the job as ``run()`` would (nothing is written to the output),
starts one runner process on this machine as a worker would (the same environment,
arguments and thread limits), times ``init()``, then reads and runs ``sample``
mini-batches spread over the input (their results are serialized as the output action
would, to count bytes, then dropped). From the seconds per item it projects the wall time
of the whole job at 1, 2, 4, ... workers:

    cluster start + job start + init + waves x seconds per mini-batch + tail

``waves`` = ceil(mini-batches / workers); on the embedded LocalCluster the workers share
this machine's cores, so CPU-bound work goes no faster than the cores allow (the runner's
CPU time over its wall time tells how CPU-bound ``run()`` is). The embedded cluster's
start and close (:data:`LOCAL_CLUSTER_SECONDS`) and the job's own fixed cost
(:data:`JOB_SECONDS`) are constants measured by ``benchmarks/bench_fixed_cost.py`` on 2
idle cores; ``tail`` is the assembly of the output.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from daskprs.cluster import starts_local_cluster
from daskprs.entry_script import (
    MiniBatchContext,
)
from daskprs.inputs.plan import MiniBatch
from daskprs.serialize import result_length
from daskprs.worker.downloads import local_arguments
from daskprs.worker.plugin import runner_env, runner_settings
from daskprs.worker.runner_client import RunnerProcess
from daskprs.worker.wrapper import _serialize, file_loader, tabular_loader

if TYPE_CHECKING:
    from daskprs.job import PreparedJob
    from daskprs.step import ParallelRunStep

DEFAULT_SAMPLE = 5
AGENT = "estimate"
LOCAL_CLUSTER_SECONDS = 0.7   # LocalCluster of 2 processes, start and close, idle 2 cores
JOB_SECONDS = 0.6             # plan, runners' start, first hand-off, assembly, plugin removal
ENGINE_SECONDS = 0.003        # daskprs' worker time per mini-batch (bench_files.py)
WRITE_BYTES_PER_SECOND = 200e6  # assembling the output from the committed results


@dataclass
class Estimate:
    """What a sample of a job cost, and the projected wall time of the whole job.

    ``sampled``: one dict per sampled mini-batch (``id``, ``items``, ``read_seconds``,
    ``run_seconds``, ``result_bytes``, ``status``, ``error``).
    """

    name: str
    mini_batches: int
    items: int | None
    input_files: int
    init_seconds: float
    peak_memory: int
    cpu_share: float
    sampled: list[dict[str, Any]] = field(default_factory=list)
    cores: int = 1
    processes: int = 1
    node_count: int = 1
    local_cluster: bool = True

    @property
    def ok(self) -> list[dict[str, Any]]:
        """The sampled mini-batches that succeeded."""
        return [s for s in self.sampled if s["status"] == "succeeded"]

    @property
    def seconds_per_item(self) -> float | None:
        """Read + run + serialize seconds per item over the succeeded sample."""
        items = sum(s["items"] for s in self.ok)
        return sum(_busy(s) for s in self.ok) / items if items else None

    @property
    def seconds_per_mini_batch(self) -> float | None:
        """Mean read + run + serialize seconds of a succeeded sampled mini-batch."""
        return sum(_busy(s) for s in self.ok) / len(self.ok) if self.ok else None

    @property
    def result_bytes_per_item(self) -> float | None:
        """Bytes of output per item."""
        items = sum(s["items"] for s in self.ok)
        return sum(s["result_bytes"] for s in self.ok) / items if items else None

    def work_seconds(self) -> float | None:
        """Worker-seconds of the whole job (from the items when the plan counts them)."""
        per_item, per_batch = self.seconds_per_item, self.seconds_per_mini_batch
        if per_batch is None:
            return None
        if self.items is not None and per_item is not None:
            busy = self.items * per_item
        else:
            busy = self.mini_batches * per_batch
        return busy + self.mini_batches * ENGINE_SECONDS

    def projected_seconds(self, workers: int, startup: bool = True) -> float | None:
        """The projected wall time of the job on ``workers`` worker processes.

        Parameters
        ----------
        workers
            Worker processes (nodes x processes per node).
        startup
            Include the embedded LocalCluster's start and close (False: a cluster that
            runs already, as with ``client=``).
        """
        work = self.work_seconds()
        if work is None or self.mini_batches == 0:
            return None
        waves = math.ceil(self.mini_batches / max(workers, 1))
        wall = waves * work / self.mini_batches
        if self.local_cluster:  # the workers share this machine's cores
            wall = max(wall, work * self.cpu_share / max(self.cores, 1))
        tail = (self.result_bytes_per_item or 0) * (self.items or 0) / WRITE_BYTES_PER_SECOND
        fixed = LOCAL_CLUSTER_SECONDS if startup and self.local_cluster else 0.0
        return fixed + JOB_SECONDS + self.init_seconds + wall + tail

    def projection(self) -> list[tuple[int, int, float | None]]:
        """``(nodes, workers, seconds)`` for 1, 2, 4, ... workers up to twice the job's,
        and for 1, 2, 4, ... nodes of a cluster."""
        rows: list[tuple[int, int, float | None]] = []
        most = max(2 * self.processes, 2)
        workers = 1
        while workers <= most:
            rows.append((1, workers, self.projected_seconds(workers)))
            workers *= 2
        if not self.local_cluster or self.node_count > 1:
            per_node = max(self.processes // max(self.node_count, 1), 1)
            nodes = 2
            while nodes <= max(4, 2 * self.node_count):
                rows.append((nodes, nodes * per_node, self.projected_seconds(nodes * per_node)))
                nodes *= 2
        return rows

    def text(self) -> str:
        """The lines ``daskprs estimate`` prints."""
        items = f"{self.items:,}" if self.items is not None else "?"
        lines = [f"{self.name}: {self.input_files:,} input files, {self.mini_batches:,} "
                 f"mini-batches, {items} items",
                 f"sample: {len(self.sampled)} mini-batches ({len(self.ok)} succeeded), "
                 f"{sum(s['items'] for s in self.sampled):,} items; nothing was written to "
                 f"the output",
                 f"init(): {self.init_seconds:.2f} s (runner start, imports, init())",
                 f"peak memory of a runner: {self.peak_memory / 2**20:,.0f} MiB"]
        per_item, result = self.seconds_per_item, self.result_bytes_per_item
        if per_item is not None:
            lines.append(f"per item: {per_item * 1000:,.3f} ms (read + run + serialize; "
                         f"run() {100 * self.cpu_share:.0f}% on CPU), "
                         f"{result or 0:,.1f} result bytes")
        for sample in self.sampled:
            if sample["status"] != "succeeded":
                lines.append(f"failed in the sample: {sample['id']}: {sample['error']}")
        if self.work_seconds() is None:
            lines.append("no projection: no sampled mini-batch succeeded")
            return "\n".join(lines)
        where = f"embedded LocalCluster, {self.cores} cores" if self.local_cluster \
            else "a cluster, one core per worker"
        lines.append(f"projected wall time ({where}; this job runs {self.processes} "
                     f"workers):")
        for nodes, workers, seconds in self.projection():
            where = f"{nodes} nodes, " if nodes > 1 else ""
            mark = "  <- this job" if workers == self.processes and nodes == max(
                self.node_count, 1) else ""
            lines.append(f"  {where}{workers:>3} workers: {_duration(seconds)}{mark}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def estimate_step(step: ParallelRunStep, sample: int = DEFAULT_SAMPLE) -> Estimate:
    """Time ``init()`` and ``sample`` mini-batches of ``step``; project the whole job.

    Raises
    ------
    ValueError
        When ``sample`` is below 1.
    EntryScriptError
        When ``init()`` fails.
    """
    from daskprs.errors import EntryScriptError
    from daskprs.job import _job_spec, prepare

    if not isinstance(sample, int) or sample < 1:
        raise ValueError(f"sample: must be a whole number of mini-batches >= 1, got "
                         f"{sample!r}. Use sample=5.")
    prepared = prepare(step)
    config = step.parallel_run_config
    spec = _job_spec(prepared, f"estimate-{os.getpid()}")
    cores = os.cpu_count() or 1
    target = config.compute_target
    local = starts_local_cluster(target) and target != "inline"
    threads = max(1, cores // max(config.processes, 1)) if local else None
    chosen = spread(prepared.plan.mini_batches, sample)
    with _scratch() as folder, _runner(spec, folder, threads) as (runner, init):
        if init.status != "ok":
            raise EntryScriptError(f"init() failed while estimating: {init.error}\n"
                                   f"{init.traceback}".strip())
        process = psutil.Process(runner.pid)
        sampled, cpu, wall = [], 0.0, 0.0
        for mini_batch in chosen:
            before = process.cpu_times()
            entry = _run_one(spec, prepared, runner, mini_batch, folder)
            after = process.cpu_times()
            cpu += (after.user - before.user) + (after.system - before.system)
            wall += entry["run_seconds"]
            sampled.append(entry)
        peak = _peak_memory(process)
    return Estimate(name=step.name, mini_batches=len(prepared.plan.mini_batches),
                    items=prepared.plan.total_items,
                    input_files=prepared.plan.file_count or len(step.inputs),
                    init_seconds=init.seconds, peak_memory=peak,
                    cpu_share=min(cpu / wall, 1.0) if wall > 0 else 1.0, sampled=sampled,
                    cores=cores, processes=config.processes, node_count=config.node_count,
                    local_cluster=local)


def spread(mini_batches: list[MiniBatch], count: int) -> list[MiniBatch]:
    """``count`` mini-batches evenly spread from the first to the last."""
    total = len(mini_batches)
    if total <= count:
        return list(mini_batches)
    if count == 1:
        return [mini_batches[total // 2]]
    picks = sorted({round(k * (total - 1) / (count - 1)) for k in range(count)})
    return [mini_batches[i] for i in picks]


def _run_one(spec: Any, prepared: PreparedJob, runner: RunnerProcess, mini_batch: MiniBatch,
             folder: str) -> dict[str, Any]:
    clock = time.perf_counter()
    with _loader(prepared, mini_batch, folder)() as (data, read_error):
        read = time.perf_counter() - clock
        items = len(data)
        entry: dict[str, Any] = {"id": mini_batch.id, "items": items, "read_seconds": read,
                                 "run_seconds": 0.0, "serialize_seconds": 0.0,
                                 "result_bytes": 0, "status": "failed", "error": read_error}
        if read_error is not None:
            return entry
        context = MiniBatchContext(mini_batch.id, 1, mini_batch.input_name,
                                   mini_batch.partition_key_value)
        outcome = runner.run(data, context, spec.run_invocation_timeout)
    entry["run_seconds"] = outcome.seconds
    if outcome.status != "ok":
        entry["error"] = outcome.error
        return entry
    clock = time.perf_counter()
    payload, _ = _serialize(spec, outcome.value)
    entry.update(serialize_seconds=time.perf_counter() - clock, result_bytes=len(payload or b""),
                 status="succeeded", error=None, result_rows=result_length(outcome.value))
    return entry


def _loader(prepared: PreparedJob, mini_batch: MiniBatch, folder: str) -> Any:
    if prepared.plan.kind == "file":
        return file_loader(mini_batch, folder)
    dataset = next((d for d in prepared.inputs if d.name == mini_batch.input_name), None)
    if dataset is not None and getattr(dataset, "format", None) == "dask":
        return tabular_loader(dataset.frame.partitions[mini_batch.start].compute(), mini_batch)
    return tabular_loader(None, mini_batch)


@contextlib.contextmanager
def _scratch() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="daskprs-estimate-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _runner(spec: Any, folder: str, threads: int | None) -> Iterator[tuple[RunnerProcess, Any]]:
    """A runner set up as :class:`~daskprs.worker.plugin.RunnerPlugin` sets up a worker's,
    its logs and ``output_dir`` in ``folder`` (never the job's output)."""
    logs, output_dir = os.path.join(folder, "logs"), os.path.join(folder, "output_dir")
    for sub in ("stdout", "stderr", "error", "entry_script_log"):
        os.makedirs(os.path.join(logs, "user", sub), exist_ok=True)
    os.makedirs(output_dir, exist_ok=True)
    arguments = local_arguments(spec.arguments, spec.remote_side_inputs,
                                os.path.join(folder, "side_inputs"))
    settings = runner_settings(spec, arguments, folder,
                               os.path.join(logs, "user", "error", f"{AGENT}.txt"))
    env = runner_env(spec, AGENT, logs, output_dir, folder, threads)
    runner = RunnerProcess(settings, env, os.path.join(logs, "user", "stdout", f"{AGENT}.txt"),
                           os.path.join(logs, "user", "stderr", f"{AGENT}.txt"))
    clock = time.perf_counter()
    outcome = runner.start(spec.init_timeout)
    outcome.seconds = time.perf_counter() - clock
    try:
        yield runner, outcome
    finally:
        runner.stop(timeout=spec.run_invocation_timeout)


def _peak_memory(process: psutil.Process) -> int:
    """The runner's peak resident memory (Linux ``VmHWM``), else its current RSS."""
    with contextlib.suppress(OSError), open(f"/proc/{process.pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(psutil.Error):
        return int(process.memory_info().rss)
    return 0


def _busy(sample: dict[str, Any]) -> float:
    return sample["read_seconds"] + sample["run_seconds"] + sample["serialize_seconds"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:,.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d} ({seconds:,.0f} s)"


__all__ = ["DEFAULT_SAMPLE", "Estimate", "estimate_step", "spread"]
