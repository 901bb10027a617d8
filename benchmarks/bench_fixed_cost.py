"""Benchmark: a job's fixed cost, end to end through the CLI (one tiny mini-batch).

Run by hand (not part of the test suite)::

    python benchmarks/bench_fixed_cost.py [--repeat 5] [--processes 2] [--compare /work/main]
                                          [--profile] [--json out.json]

It writes a job of one file, one mini-batch and a no-op ``run()`` (``mini_batch_size: 1``,
an embedded LocalCluster of ``--processes`` workers, ``allow_reuse: false``), then runs
``daskprs run --no-progress job.yaml`` as a child process ``--repeat`` times and reports,
median over the repetitions:

* ``wall``: from starting the child to its exit (interpreter start, imports, planning,
  cluster start, runners' start and ``init()``, the mini-batch, assembly, teardown);
* ``cpu``: user + system seconds of the whole process tree (the CLI, its Dask workers,
  their runners; sampled every 50 ms with psutil, so the last instants of each process are
  missed), the figure that load from other processes changes least; ``peak_mib``: the
  tree's peak resident memory;
* with ``--compare PYTHONPATH`` the runs alternate with runs of another source tree (e.g.
  ``/work/main``, the code before a change), under the same load;
* phases, from the job's own logs: ``to runners`` (start to the last ``init() done`` in
  ``logs/sys/workers/``: imports, plan, cluster start, runners' start), ``to attempt`` (to
  the attempt's start in ``mini_batches.csv``) and ``after`` (the attempt's end to the
  child's exit: assembly, plugin removal, cluster close, interpreter exit);
* ``import``: ``python -c "import daskprs.cli"`` and ``daskprs --help``, wall.

``--profile`` also prints the CLI process' cProfile (cumulative) and the slowest imports
(``-X importtime``) of one run. The goal (issue 15): under 2 s wall on 2 idle cores.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile  # noqa: F401  (the child is profiled with python -m cProfile)
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from typing import Any

import psutil

SCRIPT = "def run(mini_batch):\n    return mini_batch\n"
JOB = """\
name: fixed-cost
inputs:
  - {{name: files, type: file, path: {data}}}
output: {output}
parallel_run_config:
  source_directory: {source}
  entry_script: score.py
  mini_batch_size: 1
  process_count_per_node: {processes}
allow_reuse: false
"""
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def make_job(root: str, processes: int) -> str:
    """The tiny job's data, script and YAML under ``root``; return the YAML's path."""
    data, source = os.path.join(root, "data"), os.path.join(root, "src")
    os.makedirs(data, exist_ok=True)
    os.makedirs(source, exist_ok=True)
    with open(os.path.join(data, "a.txt"), "w") as handle:
        handle.write("x\n")
    with open(os.path.join(source, "score.py"), "w") as handle:
        handle.write(SCRIPT)
    path = os.path.join(root, "job.yaml")
    with open(path, "w") as handle:
        handle.write(JOB.format(data=data, source=source, processes=processes,
                                output=os.path.join(root, "out")))
    return path


def _cli() -> list[str]:
    return [sys.executable, "-m", "daskprs"]


class TreeWatch:
    """Sample a process and its descendants every ``interval`` s: the CPU seconds of every
    process seen (its last sample) and the peak of their summed resident memory."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    def sample(self) -> None:
        """Take one sample of the tree."""
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss = 0
        for process in processes:
            with contextlib.suppress(psutil.Error), process.oneshot():
                times = process.cpu_times()
                self.cpu[process.pid] = times.user + times.system
                rss += process.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)

    def stop(self) -> dict[str, float]:
        """Stop sampling; the tree's CPU seconds and peak memory (MiB)."""
        self.done.set()
        self.thread.join()
        return {"cpu": sum(self.cpu.values()), "peak_mib": self.peak_rss / 2**20}


def run_once(job: str, extra: list[str] | None = None,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``daskprs run`` in a child process: wall, CPU of the tree, phases."""
    output = os.path.join(os.path.dirname(job), "out")
    shutil.rmtree(output, ignore_errors=True)
    start_utc = datetime.now(timezone.utc)
    clock = time.perf_counter()
    child = subprocess.Popen([*(extra or _cli()), "run", "--no-progress", job],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    watch = TreeWatch(child.pid)
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - clock
    tree = watch.stop()
    if child.returncode != 0:
        raise SystemExit(f"the job failed (exit {child.returncode}):\n{stdout}\n{stderr}")
    return {"wall": wall, **tree, **phases(output, start_utc, wall)}


def phases(output: str, start: datetime, wall: float) -> dict[str, float | None]:
    """Seconds from the child's start to the runners and the attempt, and after it."""
    logs = os.path.join(output, "logs")
    workers = os.path.join(logs, "sys", "workers")
    ready = [_first_stamp(os.path.join(workers, name), "init() done")
             for name in (os.listdir(workers) if os.path.isdir(workers) else [])]
    attempt_start, attempt_seconds = None, None
    with contextlib.suppress(OSError, StopIteration), \
            open(os.path.join(logs, "sys", "mini_batches.csv")) as handle:
        header = next(handle).strip().split(",")
        row = dict(zip(header, next(handle).strip().split(","), strict=False))
        attempt_start = datetime.fromisoformat(row["start_utc"])
        attempt_seconds = float(row["seconds"])

    def since(moment: datetime | None) -> float | None:
        return None if moment is None else (moment - start).total_seconds()

    ready_at = max((r for r in ready if r is not None), default=None)
    after = None
    if attempt_start is not None and attempt_seconds is not None:
        after = wall - since(attempt_start) - attempt_seconds
    return {"to_runners": since(ready_at),
            "to_attempt": since(attempt_start), "after": after}


def _first_stamp(path: str, text: str) -> datetime | None:
    """The time of the first log line holding ``text`` (local time stamps)."""
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as handle:
        for line in handle:
            match = _STAMP.match(line)
            if match and text in line:
                local = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                return local.astimezone(timezone.utc)
    return None


def import_seconds() -> dict[str, float]:
    """Wall of ``import daskprs.cli`` and of ``daskprs --help`` (child processes)."""
    figures = {}
    for name, command in (("import_cli", [sys.executable, "-c", "import daskprs.cli"]),
                          ("help", [*_cli(), "--help"])):
        clock = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        figures[name] = time.perf_counter() - clock
    return figures


def profile(job: str, top: int) -> None:
    """cProfile of one CLI run, and its slowest imports."""
    folder = os.path.dirname(job)
    stats = os.path.join(folder, "run.prof")
    run_once(job, [sys.executable, "-m", "cProfile", "-o", stats, "-m", "daskprs"])
    print("\nCLI process, cProfile (cumulative):")
    pstats.Stats(stats).sort_stats("cumulative").print_stats(top)
    shutil.rmtree(os.path.join(folder, "out"), ignore_errors=True)
    child = subprocess.run([sys.executable, "-X", "importtime", "-m", "daskprs", "run",
                            "--no-progress", job], capture_output=True, text=True, check=False)
    rows = []
    for line in child.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    print(f"\nslowest imports of the CLI process (cumulative, of {len(rows)}):")
    for micros, name in sorted(rows, reverse=True)[:top]:
        print(f"  {micros / 1e6:6.3f} s {name}")


def _median(values: list[float | None]) -> float | None:
    numbers = [v for v in values if v is not None]
    return statistics.median(numbers) if numbers else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs (medians reported)")
    parser.add_argument("--processes", type=int, default=2, help="process_count_per_node")
    parser.add_argument("--profile", action="store_true", help="also profile one run")
    parser.add_argument("--compare", metavar="PYTHONPATH",
                        help="alternate with runs of the daskprs found on this PYTHONPATH")
    parser.add_argument("--top", type=int, default=30, help="lines of the profile")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="daskprs-fixed-") as root:
        job = make_job(root, args.processes)
        runs, others = [], []
        other_env = {**os.environ, "PYTHONPATH": args.compare} if args.compare else None
        for number in range(args.repeat):
            runs.append(run_once(job))
            shown = ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items() if v is not None)
            print(f"[{number + 1}/{args.repeat}] {shown}", flush=True)
            if other_env is not None:
                others.append(run_once(job, env=other_env))
                shown = ", ".join(f"{k} {v:.2f}" for k, v in others[-1].items()
                                  if v is not None)
                print(f"[{number + 1}/{args.repeat}] {args.compare}: {shown}", flush=True)
        if others:
            compared = {key: _median([r[key] for r in others]) for key in others[0]}
            print(f"\nmedian of {args.compare}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in compared.items() if v is not None))
        summary = {key: _median([r[key] for r in runs]) for key in runs[0]}
        summary.update(import_seconds())
        summary["load_average"] = os.getloadavg()
        print("\nmedian (seconds; peak_mib in MiB): " + ", ".join(
            f"{k} {v:.2f}" for k, v in summary.items() if isinstance(v, float)))
        print(f"load average: {' '.join(f'{x:.2f}' for x in summary['load_average'])}")
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({"summary": summary, "runs": runs}, handle, indent=2)
        if args.profile:
            profile(job, args.top)


if __name__ == "__main__":
    main()
