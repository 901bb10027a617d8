"""Benchmark: how daskprs scales from 10,000 to 1,000,000 files (issue: millions of files).

Run by hand (not part of the test suite)::

    python benchmarks/bench_scale.py [--sizes 10000 100000 1000000] [--compare-max 100000]
                                     [--root /tmp/daskprs-bench-scale] [--json out.json]

For each size it makes that many empty files (folders of 1,000, by ``bench_files.py``; kept
between runs), then runs
a job of ``mini_batch_size`` 10 with a no-op ``run()`` (one result per file, ``append_row``)
on an embedded LocalCluster of 2 worker processes, **in a child process**, and reports:

* ``first``: seconds from the start of the child (before ``import daskprs``) to the start of
  the first mini-batch (from ``logs/sys/mini_batches.csv``);
* ``total``: the child's whole time, from its start until ``step.run()`` returned;
* ``tail``: seconds from the end of the last mini-batch to ``step.run()`` returning;
* ``rss``: the child's (the client's) peak resident memory;
* ``objects``: the most files seen under ``<output>/_daskprs/`` (sampled every second);
* ``steady``: mini-batches per second between the first attempt's start and the last's end.

Up to ``--compare-max`` files it also compares, on one 2-worker LocalCluster started here,
daskprs (``client=`` that cluster) with a plain ``dask.bag`` map of the same mini-batches
(``db.from_sequence(mini_batches, npartitions=len(mini_batches)).map_partitions(no-op)``,
one task per mini-batch, results gathered), both timed from submission to results.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from bench_files import make_files as make_files_in  # the same files and no-op script


def make_files(root: str, count: int) -> str:
    """``count`` empty files in folders of 1,000 below ``root/files-<count>/data`` (kept
    between runs), the no-op entry script in ``root/files-<count>/src``."""
    return make_files_in(os.path.join(root, f"files-{count}"), count)


# ---------------------------------------------------------------- child: one job

def child(data: str, source: str, output: str, scheduler: str | None) -> None:
    """Run one job; print its figures as JSON on the last line."""
    start = time.time()
    from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

    config = ParallelRunConfig(source_directory=source, entry_script="score.py",
                               mini_batch_size=10, process_count_per_node=2,
                               compute_target="local", output_action="append_row")
    step = ParallelRunStep(name="bench-scale", parallel_run_config=config,
                           inputs=[Dataset.File.from_files(data).as_named_input("files")],
                           output=output, allow_reuse=False)
    result = step.run(client=scheduler, progress=False)
    end = time.time()
    result.raise_for_status()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"start": start, "end": end, "rss": rss,
                      "mini_batches": result.mini_batches["total"],
                      "items": result.items["succeeded"]}))


def attempt_window(output: str) -> tuple[float, float, int]:
    """First attempt start, last attempt end (epoch seconds), attempts."""
    first, last, count = float("inf"), 0.0, 0
    with open(os.path.join(output, "logs", "sys", "mini_batches.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            began = datetime.fromisoformat(row["start_utc"])
            ended = began + timedelta(seconds=float(row["seconds"] or 0))
            first, last = min(first, began.timestamp()), max(last, ended.timestamp())
            count += 1
    return first, last, count


def count_objects(folder: str) -> int:
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += 1
        except FileNotFoundError:
            continue
    return total


def run_job(data: str, output: str, scheduler: str | None = None
            ) -> dict[str, Any]:
    """One job in a child process, sampled for objects under ``_daskprs/``."""
    shutil.rmtree(output, ignore_errors=True)
    source = os.path.join(os.path.dirname(data), "src")
    command = [sys.executable, __file__, "--child", data, source, output]
    if scheduler:
        command.append(scheduler)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            peak[0] = max(peak[0], count_objects(os.path.join(output, "_daskprs")))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    done.set()
    sampler.join()
    if finished.returncode != 0:
        raise RuntimeError(f"the job failed:\n{finished.stdout}\n{finished.stderr}")
    figures = json.loads(finished.stdout.strip().splitlines()[-1])
    first, last, attempts = attempt_window(output)
    count = figures["mini_batches"]
    return {"mini_batches": count, "items": figures["items"], "attempts": attempts,
            "first": first - figures["start"], "total": figures["end"] - figures["start"],
            "tail": figures["end"] - last, "rss_mb": figures["rss"] / 2**20,
            "objects": peak[0], "steady_per_second": count / max(last - first, 1e-9)}


# ---------------------------------------------------------------- daskprs vs dask.bag

def noop_partition(partition: list[list[str]]) -> list[str]:
    """The plain bag's task (a partition holds one mini-batch): the same no-op as the entry
    script, one result per path."""
    return [path for paths in partition for path in paths]


def compare(data: str, output: str) -> dict[str, Any]:
    """daskprs and a plain ``dask.bag`` map on one 2-worker cluster: seconds each."""
    import dask.bag as db
    from distributed import Client, LocalCluster

    from daskprs import Dataset
    from daskprs.inputs.files import plan_files
    from daskprs.sizes import parse_file_size

    plan = plan_files([Dataset.File.from_files(data).as_named_input("files")],
                      parse_file_size(10))
    batches = [list(mb.paths) for mb in plan.mini_batches]
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(lambda: None)
        start = time.perf_counter()
        bag = db.from_sequence(batches, npartitions=len(batches)).map_partitions(
            noop_partition)
        results = bag.compute()
        bag_seconds = time.perf_counter() - start
        assert len(results) == sum(len(b) for b in batches)
        job = run_job(data, output, cluster.scheduler_address)
    return {"bag_seconds": bag_seconds, "bag_per_second": len(batches) / bag_seconds,
            "daskprs_total": job["total"], "daskprs_steady_per_second": job["steady_per_second"],
            "steady_over_bag": job["steady_per_second"] / (len(batches) / bag_seconds)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--compare-max", type=int, default=100_000)
    parser.add_argument("--root", default="/tmp/daskprs-bench-scale")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        data = make_files(args.root, size)
        output = os.path.join(args.root, f"out-{size}")
        row = {"files": size, **run_job(data, output)}
        print(json.dumps(row), flush=True)
        if size <= args.compare_max:
            row.update(compare(data, output + "-shared"))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'files':>9} {'first s':>8} {'total s':>8} {'tail s':>7} {'RSS MB':>7} "
          f"{'objects':>8} {'steady/s':>9} {'bag/s':>7} {'x bag':>6}")
    for row in rows:
        print(f"{row['files']:>9,} {row['first']:>8.1f} {row['total']:>8.1f} "
              f"{row['tail']:>7.2f} {row['rss_mb']:>7.0f} {row['objects']:>8,} "
              f"{row['steady_per_second']:>9.0f} {row.get('bag_per_second', 0):>7.0f} "
              f"{row.get('steady_over_bag', 0):>6.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
