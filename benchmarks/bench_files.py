"""Benchmark: a no-op ``run()`` over file mini-batches, plain loop versus daskprs.

Run by hand (not part of the test suite)::

    python benchmarks/bench_files.py [--files 20000] [--mini-batch-size 10] [--repeat 1]
                                     [--profile] [--json out.json]

It makes ``--files`` empty files (folders of 1,000) and an entry script whose ``run()``
returns its mini-batch (one line per file: no work, only the engine's cost). Then it times,
on exactly the same mini-batches (daskprs' own planner, ``plan_files``):

* the loop: this process imports the entry script, calls ``run()`` on each mini-batch and
  writes the results to one text file as ``append_row`` does (planning included);
* daskprs: ``ParallelRunStep(...).run(progress=False)`` on the embedded LocalCluster with
  ``process_count_per_node=--processes`` (2), ``append_row``, a fresh output each repetition.
  Three rates: end to end (config built to ``run()`` returned: planning, cluster start and
  close included), ``job_result.json``'s ``seconds`` (from the output lock to the report:
  cluster start included), and steady (first attempt's start to last attempt's end in
  ``logs/sys/mini_batches.csv``: only the mini-batches), with the time before the first
  attempt (planning, cluster start, runners, ``init()``) and after the last (assembly of the
  output, logs, cluster close).

Overheads per mini-batch: ``wall`` = (daskprs end to end - loop) / mini-batches;
``worker`` = steady window x processes / mini-batches - loop per mini-batch, the time a
worker process spends on one mini-batch beyond what the loop spends. ``runner`` = the
median attempt ``seconds`` (the wrapper's round trip to the runner process around ``run()``).

``--profile`` adds a run on a LocalCluster the benchmark starts itself (same size), with
cProfile on this (client) process and Dask's statistical profiler on the workers' task
threads (``Client.profile``), and prints where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import importlib.util
import io
import json
import os
import pstats
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

ENTRY_SCRIPT = '''\
"""Entry script of benchmarks/bench_files.py: a no-op, one result per file."""


def run(mini_batch):
    return mini_batch
'''
PER_FOLDER = 1_000


def make_files(root: str, count: int) -> str:
    """``count`` empty files in folders of 1,000 below ``root/data`` (kept when the count
    matches); the entry script in ``root/src``. Return the data folder."""
    data = os.path.join(root, "data")
    stamp = os.path.join(root, "files.txt")
    if not (os.path.exists(stamp) and _read(stamp) == str(count)):
        shutil.rmtree(data, ignore_errors=True)
        for number in range(count):
            folder = os.path.join(data, f"d{number // PER_FOLDER:04d}")
            if number % PER_FOLDER == 0:
                os.makedirs(folder)
            open(os.path.join(folder, f"f{number:07d}.bin"), "wb").close()
        with open(stamp, "w") as handle:
            handle.write(str(count))
    os.makedirs(os.path.join(root, "src"), exist_ok=True)
    with open(os.path.join(root, "src", "score.py"), "w") as handle:
        handle.write(ENTRY_SCRIPT)
    return data


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def run_loop(root: str, data: str, mini_batch_size: int, output: str) -> dict[str, Any]:
    """Plan, call ``run()`` on every mini-batch, write ``append_row`` lines; timed."""
    from daskprs import Dataset
    from daskprs.inputs.files import plan_files
    from daskprs.sizes import parse_file_size

    start = time.perf_counter()
    dataset = Dataset.File.from_files(data).as_named_input("files")
    plan = plan_files([dataset], parse_file_size(mini_batch_size))
    spec = importlib.util.spec_from_file_location("bench_score",
                                                  os.path.join(root, "src", "score.py"))
    script = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(script)  # type: ignore[union-attr]
    with open(output, "w", encoding="utf-8") as handle:
        for mini_batch in plan.mini_batches:
            for item in script.run(list(mini_batch.paths)):
                handle.write(f"{item}\n")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "mini_batches": len(plan.mini_batches)}


def run_daskprs(root: str, data: str, mini_batch_size: int, processes: int, output: str,
                client: Any = None) -> dict[str, Any]:
    """One job, timed end to end; figures from its ``logs/``."""
    from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

    start, wall_start = time.perf_counter(), datetime.now(timezone.utc)
    config = ParallelRunConfig(source_directory=os.path.join(root, "src"),
                               entry_script="score.py", mini_batch_size=mini_batch_size,
                               process_count_per_node=processes, compute_target="local",
                               output_action="append_row")
    step = ParallelRunStep(name="bench-files", parallel_run_config=config,
                           inputs=[Dataset.File.from_files(data).as_named_input("files")],
                           output=output, allow_reuse=False)
    result = step.run(client=client, progress=False)
    seconds, wall_end = time.perf_counter() - start, datetime.now(timezone.utc)
    result.raise_for_status()
    attempts = attempt_figures(output)
    first, last = attempts.pop("first_start"), attempts.pop("last_end")
    return {"seconds": seconds, "job_seconds": result.seconds,
            "mini_batches": result.mini_batches["total"],
            "startup_seconds": (first - wall_start).total_seconds(),
            "tail_seconds": (wall_end - last).total_seconds(), **attempts}


def attempt_figures(output: str) -> dict[str, Any]:
    """The steady window and the runner round trips, from ``logs/sys/mini_batches.csv``."""
    with open(os.path.join(output, "logs", "sys", "mini_batches.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    starts = [datetime.fromisoformat(r["start_utc"]) for r in rows]
    ends = [s + timedelta(seconds=float(r["seconds"])) for s, r in zip(starts, rows, strict=True)]
    attempt = [float(r["seconds"]) for r in rows]
    return {"steady_seconds": (max(ends) - min(starts)).total_seconds(),
            "first_start": min(starts), "last_end": max(ends),
            "attempts": len(rows), "runner_median": statistics.median(attempt),
            "runner_total": sum(attempt), "workers": len({r["worker"] for r in rows})}


def summarise(loops: list[dict[str, Any]], jobs: list[dict[str, Any]],
              processes: int) -> dict[str, Any]:
    """Medians over the repetitions, as rates and per-mini-batch overheads."""
    def median(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    count = jobs[0]["mini_batches"]
    loop, wall = median(loops, "seconds"), median(jobs, "seconds")
    steady, job = median(jobs, "steady_seconds"), median(jobs, "job_seconds")
    return {
        "mini_batches": count, "processes": processes,
        "loop_seconds": loop, "loop_per_second": count / loop,
        "daskprs_seconds": wall, "daskprs_per_second": count / wall,
        "job_seconds": job, "job_per_second": count / job,
        "steady_seconds": steady, "steady_per_second": count / steady,
        "startup_seconds": median(jobs, "startup_seconds"),
        "tail_seconds": median(jobs, "tail_seconds"),
        "overhead_wall_ms": 1000 * (wall - loop) / count,
        "overhead_worker_ms": 1000 * (steady * processes / count - loop / count),
        "runner_median_ms": 1000 * median(jobs, "runner_median"),
        "runner_share_of_worker_time": median(jobs, "runner_total") / (steady * processes),
    }


def print_summary(summary: dict[str, Any]) -> None:
    s = summary
    print(f"{s['mini_batches']} mini-batches, no-op run(), {s['processes']} worker processes")
    print(f"  plain loop           {s['loop_seconds']:7.2f} s  {s['loop_per_second']:9.0f} /s")
    print(f"  daskprs end to end   {s['daskprs_seconds']:7.2f} s  "
          f"{s['daskprs_per_second']:9.0f} /s")
    print(f"  job_result seconds   {s['job_seconds']:7.2f} s  {s['job_per_second']:9.0f} /s")
    print(f"  steady (attempts)    {s['steady_seconds']:7.2f} s  "
          f"{s['steady_per_second']:9.0f} /s")
    print(f"  end to end = {s['startup_seconds']:.2f} s before the first attempt (planning, "
          f"cluster, runners, init) + steady + {s['tail_seconds']:.2f} s after the last "
          f"(assembly, logs, cluster close)")
    print(f"  overhead per mini-batch: {s['overhead_wall_ms']:.2f} ms wall, "
          f"{s['overhead_worker_ms']:.2f} ms of worker time; runner round trip (median) "
          f"{s['runner_median_ms']:.2f} ms, {100 * s['runner_share_of_worker_time']:.0f}% of "
          f"worker time")


def profile_run(root: str, data: str, args: argparse.Namespace, output: str) -> None:
    """A run on a cluster started here: cProfile of the client, Dask's profile of workers."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.processes, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        profiler = cProfile.Profile()
        profiler.enable()
        figures = run_daskprs(root, data, args.mini_batch_size, args.processes, output, client)
        profiler.disable()
        workers = client.profile()
        scheduler = client.profile(scheduler=True)
    print(f"\nprofiled run (cluster started by the benchmark): {figures['seconds']:.2f} s, "
          f"{figures['mini_batches'] / figures['steady_seconds']:.0f} mini-batches/s steady")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(18)
    print("\nclient process (cProfile, cumulative):")
    print("\n".join(line for line in text.getvalue().splitlines()[6:] if line.strip()))
    for name, state in (("worker task threads", workers), ("scheduler", scheduler)):
        print(f"\n{name} (Dask's sampling profiler, share of samples, top functions):")
        frames = top_frames(state, args.profile_top)
        for label, share in frames:
            print(f"  {100 * share:5.1f}%  {label}")
        if not frames:
            print("  (no samples)")


def top_frames(state: dict[str, Any], top: int) -> list[tuple[str, float]]:
    """Functions by inclusive share of samples (each counted once per stack)."""
    inclusive: Counter[str] = Counter()
    total = state.get("count", 0) or 1

    def walk(node: dict[str, Any], seen: frozenset[str]) -> None:
        for child in node.get("children", {}).values():
            desc = child.get("description", {})
            label = f"{desc.get('name')} ({_short(desc.get('filename', ''))})"
            if label not in seen:
                inclusive[label] += child.get("count", 0)
            walk(child, seen | {label})

    walk(state, frozenset())
    return [(label, count / total) for label, count in inclusive.most_common(top)]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "daskprs/", "lib/python"):
        if marker in filename:
            return filename.split(marker, 1)[1] if marker != "daskprs/" else \
                "daskprs/" + filename.split(marker, 1)[1]
    return os.path.basename(filename)


@contextlib.contextmanager
def workdir(path: str | None) -> Iterator[str]:
    if path:
        os.makedirs(path, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bench-files-") as folder:
        yield folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000, help="empty files to score")
    parser.add_argument("--mini-batch-size", type=int, default=10, help="files per mini-batch")
    parser.add_argument("--processes", type=int, default=2, help="process_count_per_node")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions (medians reported)")
    parser.add_argument("--workdir", help="folder for data and outputs (kept, data reused)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile a run: client (cProfile) and workers (Dask)")
    parser.add_argument("--profile-top", type=int, default=25, help="functions shown")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import distributed  # noqa: F401  (imported before timing, as a user's script would)

    import daskprs.job  # noqa: F401

    with workdir(args.workdir) as root:
        data = make_files(root, args.files)
        loops, jobs = [], []
        for number in range(args.repeat):
            loops.append(run_loop(root, data, args.mini_batch_size,
                                  os.path.join(root, f"loop-{number}.txt")))
            output = os.path.join(root, f"out-{number}")
            shutil.rmtree(output, ignore_errors=True)
            jobs.append(run_daskprs(root, data, args.mini_batch_size, args.processes, output))
        summary = summarise(loops, jobs, args.processes)
        print_summary(summary)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({"summary": summary, "loops": loops, "jobs": jobs}, handle, indent=2)
        if args.profile:
            output = os.path.join(root, "out-profile")
            shutil.rmtree(output, ignore_errors=True)
            profile_run(root, data, args, output)


if __name__ == "__main__":
    main()
