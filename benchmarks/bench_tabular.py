"""Benchmark: score a Parquet table with a CPU-bound model, plain loop versus daskprs.

Run by hand (not part of the test suite)::

    python benchmarks/bench_tabular.py [--rows 1000000] [--repeat 1] [--json out.json]

It makes its own data (Parquet files of numeric features) and a scikit-learn
HistGradientBoostingClassifier, then times, on exactly the same mini-batches:

* the loop: one process (OMP/OPENBLAS/MKL_NUM_THREADS=1, set before numpy is imported)
  plans the mini-batches with daskprs' planner, reads each with daskprs' reader, calls the
  entry script's ``run()`` and appends the result to one text file as ``append_row`` does;
* daskprs: ``ParallelRunStep(...).run(progress=False)`` on the embedded LocalCluster with
  ``process_count_per_node=2``, end to end (cluster start-up included), ``append_row``,
  a fresh output folder each repetition.

It prints (and with ``--json`` writes) the medians over ``--repeat`` repetitions and checks
that both outputs have the same number of lines. See benchmarks/README.md.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import csv
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SEPARATOR = ","
OUTPUT_FILE = "parallel_run_step.txt"
THREADS_TAG = "bench-openmp-threads:"

ENTRY_SCRIPT = '''\
"""Entry script of benchmarks/bench_tabular.py (written by it): score rows with a model."""

import argparse

import joblib
import pandas as pd


def init():
    global model, features
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, _ = parser.parse_known_args()
    model = joblib.load(args.model)
    features = list(model.feature_names_in_)
    try:
        from threadpoolctl import threadpool_info

        threads = max((p["num_threads"] for p in threadpool_info()
                       if p.get("user_api") == "openmp"), default=None)
    except Exception:
        threads = None
    print("''' + THREADS_TAG + ''' %s" % threads, flush=True)


def run(mini_batch):
    probability = model.predict_proba(mini_batch[features])[:, 1]
    return pd.DataFrame({"id": mini_batch["id"].to_numpy(),
                         "prediction": (probability > 0.5).astype("int8"),
                         "probability": probability.round(6)})
'''


# ----------------------------------------------------------------------------- data


def prepare_data(workdir: str, args: argparse.Namespace) -> dict[str, str]:
    """Write the table, the model and the entry script under ``workdir`` (reused if unchanged)."""
    paths = {"table": os.path.join(workdir, "table"),
             "model": os.path.join(workdir, "model.joblib"),
             "source": os.path.join(workdir, "script"),
             "manifest": os.path.join(workdir, "manifest.json")}
    paths["script"] = os.path.join(paths["source"], "score.py")
    wanted = {"rows": args.rows, "files": args.files, "features": args.features,
              "row_group_rows": args.row_group_rows, "iterations": args.iterations,
              "leaves": args.leaves, "script": hashlib.sha256(ENTRY_SCRIPT.encode()).hexdigest()}
    os.makedirs(paths["source"], exist_ok=True)
    with open(paths["script"], "w", encoding="utf-8") as handle:
        handle.write(ENTRY_SCRIPT)
    if os.path.exists(paths["manifest"]):
        with open(paths["manifest"], encoding="utf-8") as handle:
            if json.load(handle) == wanted and os.path.exists(paths["model"]):
                print(f"reusing the data in {workdir}")
                return paths

    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    clock = time.perf_counter()
    names = [f"f{i}" for i in range(args.features)]
    informative = max(2, args.features // 2)
    shutil.rmtree(paths["table"], ignore_errors=True)
    os.makedirs(paths["table"])
    bounds = np.linspace(0, args.rows, args.files + 1).astype(int)
    for number in range(args.files):
        start, stop = int(bounds[number]), int(bounds[number + 1])
        features, _ = make_classification(n_samples=stop - start, n_features=args.features,
                                          n_informative=informative, random_state=100 + number)
        frame = pd.DataFrame(features, columns=names)
        frame.insert(0, "id", np.arange(start, stop, dtype="int64"))
        frame.to_parquet(os.path.join(paths["table"], f"part-{number:03d}.parquet"),
                         row_group_size=args.row_group_rows, index=False)
    features, label = make_classification(n_samples=20_000, n_features=args.features,
                                          n_informative=informative, random_state=7)
    model = HistGradientBoostingClassifier(max_iter=args.iterations,
                                           max_leaf_nodes=args.leaves, early_stopping=False,
                                           random_state=0)
    model.fit(pd.DataFrame(features, columns=names), label)

    import joblib

    joblib.dump(model, paths["model"])
    with open(paths["manifest"], "w", encoding="utf-8") as handle:
        json.dump(wanted, handle)
    print(f"wrote {args.rows:,} rows in {args.files} files and a model with "
          f"{args.iterations} trees in {time.perf_counter() - clock:.1f} s")
    return paths


# ----------------------------------------------------------------------------- the loop


def loop_child(config_path: str) -> None:
    """The plain loop, in a process whose thread variables were set before numpy loaded."""
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    from daskprs.datasets import Dataset
    from daskprs.inputs.tabular import READ_ERROR, plan_tabular, read_mini_batch
    from daskprs.sizes import parse_tabular_size

    timing = {"plan": 0.0, "init": 0.0, "read": 0.0, "score": 0.0, "write": 0.0}
    clock = time.perf_counter()
    dataset = Dataset.Tabular.from_parquet_files(config["table"]).as_named_input("table")
    plan = plan_tabular([dataset], parse_tabular_size(config["mini_batch_size"]))
    timing["plan"] = time.perf_counter() - clock

    mark = time.perf_counter()
    spec = importlib.util.spec_from_file_location("bench_score", config["script"])
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.argv = [config["script"], "--model", config["model"]]
    spec.loader.exec_module(script)
    script.init()
    timing["init"] = time.perf_counter() - mark

    items = 0
    with open(config["output"], "w", encoding="utf-8", newline="") as out:
        for mini_batch in plan.mini_batches:
            mark = time.perf_counter()
            frame = read_mini_batch(mini_batch)
            if frame.attrs.get(READ_ERROR):
                raise RuntimeError(f"{mini_batch.id}: {frame.attrs[READ_ERROR]}")
            frame.attrs = {}
            items += len(frame)
            read_done = time.perf_counter()
            result = script.run(frame)
            score_done = time.perf_counter()
            result.to_csv(out, sep=SEPARATOR, header=False, index=False, lineterminator="\n")
            timing["read"] += read_done - mark
            timing["score"] += score_done - read_done
            timing["write"] += time.perf_counter() - score_done
    seconds = time.perf_counter() - clock
    with open(config["result"], "w", encoding="utf-8") as handle:
        json.dump({"seconds": seconds, "mini_batches": len(plan.mini_batches), "items": items,
                   "phases": timing}, handle)


def run_loop(paths: dict[str, str], mini_batch_size: str, output: str) -> dict[str, Any]:
    """Run the loop in a child process with one thread per library; return its figures."""
    config_path = output + ".config.json"
    result_path = output + ".result.json"
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump({"table": paths["table"], "model": paths["model"], "script": paths["script"],
                   "mini_batch_size": mini_batch_size, "output": output,
                   "result": result_path}, handle)
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")}
    clock = time.perf_counter()
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--loop-child",
                            config_path], env=env, capture_output=True, text=True, check=False)
    process_seconds = time.perf_counter() - clock
    if child.returncode != 0:
        sys.stderr.write(child.stdout + child.stderr)
        raise SystemExit(f"the loop failed (exit {child.returncode})")
    with open(result_path, encoding="utf-8") as handle:
        figures = json.load(handle)
    figures["process_seconds"] = process_seconds
    figures["openmp_threads"] = _threads_seen(child.stdout)
    return figures


# ----------------------------------------------------------------------------- daskprs


class ClusterClock:
    """Times the embedded LocalCluster's start-up and close, by wrapping the class daskprs uses.

    Only observes: the wrapped class is a subclass that calls the original unchanged. When
    daskprs no longer exposes ``daskprs.cluster.LocalCluster`` the figures stay None.
    """

    def __init__(self) -> None:
        self.start_seconds: float | None = None
        self.close_seconds: float | None = None

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        try:
            import daskprs.cluster as cluster_module
        except ImportError:
            yield
            return
        original = getattr(cluster_module, "LocalCluster", None)
        if not isinstance(original, type):
            yield
            return
        clock = self

        class TimedLocalCluster(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                mark = time.perf_counter()
                super().__init__(*args, **kwargs)
                clock.start_seconds = time.perf_counter() - mark

            def close(self, *args: Any, **kwargs: Any) -> Any:
                mark = time.perf_counter()
                try:
                    return super().close(*args, **kwargs)
                finally:
                    if clock.close_seconds is None:
                        clock.close_seconds = time.perf_counter() - mark

        cluster_module.LocalCluster = TimedLocalCluster
        try:
            yield
        finally:
            cluster_module.LocalCluster = original


def run_daskprs(paths: dict[str, str], mini_batch_size: str, output: str,
                timeout: float) -> dict[str, Any]:
    """Run the step end to end on a fresh output folder; return its figures.

    After ``timeout`` seconds a watchdog interrupts the main thread as Ctrl-C would (daskprs
    then cancels, writes ``Canceled`` and re-raises), so a job that stops making progress
    ends the benchmark with a message instead of hanging it.
    """
    from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

    shutil.rmtree(output, ignore_errors=True)
    clock = ClusterClock()
    wall_start = time.time()
    mark = time.perf_counter()
    with clock.watch():
        config = ParallelRunConfig(
            source_directory=paths["source"], entry_script="score.py",
            mini_batch_size=mini_batch_size, error_threshold=0, output_action="append_row",
            append_row_separator=SEPARATOR, process_count_per_node=2,
            run_invocation_timeout=600, run_max_try=1, compute_target="local")
        table = Dataset.Tabular.from_parquet_files(paths["table"]).as_named_input("table")
        step = ParallelRunStep(name="bench-tabular", parallel_run_config=config,
                               inputs=[table], output=output,
                               arguments=["--model", paths["model"]], allow_reuse=False)
        fired = threading.Event()

        def interrupt() -> None:
            fired.set()
            _thread.interrupt_main()

        watchdog = threading.Timer(timeout, interrupt)
        watchdog.daemon = True
        watchdog.start()
        try:
            result = step.run(progress=False)
        except KeyboardInterrupt:
            if not fired.is_set():
                raise
            raise SystemExit(_stalled_message(output, timeout)) from None
        finally:
            watchdog.cancel()
    seconds = time.perf_counter() - mark
    wall_end = wall_start + seconds
    result.raise_for_status()
    figures: dict[str, Any] = {
        "seconds": seconds, "job_result_seconds": result.seconds,
        "mini_batches": result.mini_batches.get("total"),
        "items": result.items.get("succeeded"),
        "cluster_start_seconds": clock.start_seconds,
        "cluster_close_seconds": clock.close_seconds,
    }
    if clock.start_seconds is not None:
        figures["seconds_excluding_cluster_start"] = seconds - clock.start_seconds
    figures.update(_attempt_figures(output, wall_start, wall_end))
    stdout_logs = os.path.join(output, "logs", "user", "stdout")
    seen: list[Any] = []
    if os.path.isdir(stdout_logs):
        for name in sorted(os.listdir(stdout_logs)):
            with open(os.path.join(stdout_logs, name), encoding="utf-8",
                      errors="replace") as handle:
                seen.extend(_threads_seen(handle.read()))
    figures["openmp_threads"] = seen
    return figures


def _stalled_message(output: str, timeout: float) -> str:
    table = os.path.join(output, "logs", "sys", "mini_batches.csv")
    attempts = 0
    if os.path.exists(table):
        with open(table, encoding="utf-8") as handle:
            attempts = max(0, sum(1 for _ in handle) - 1)
    return (f"daskprs did not finish within --timeout {timeout:g} s ({attempts} attempts in "
            f"{table}); it was interrupted and wrote Canceled. See {output}/logs/ (kept with "
            f"--workdir). If all Dask workers died, the job waits forever: its tasks are pinned "
            f"to the dead workers' addresses (see benchmarks/README.md).")


def _attempt_figures(output: str, wall_start: float, wall_end: float) -> dict[str, Any]:
    """Split the job's wall time around the attempts recorded in mini_batches.csv."""
    path = os.path.join(output, "logs", "sys", "mini_batches.csv")
    if not os.path.exists(path):
        return {}
    starts, ends, busy = [], [], 0.0
    per_worker: dict[str, float] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("seconds"):
                continue
            start = datetime.fromisoformat(row["start_utc"])
            if start.tzinfo is None:
                start = start.replace(tzinfo=timezone.utc)
            begin, took = start.timestamp(), float(row["seconds"])
            starts.append(begin)
            ends.append(begin + took)
            busy += took
            per_worker[row["worker"]] = per_worker.get(row["worker"], 0.0) + took
    if not starts:
        return {}
    return {"attempts": len(starts),
            "before_first_attempt_seconds": min(starts) - wall_start,
            "attempt_span_seconds": max(ends) - min(starts),
            "after_last_attempt_seconds": wall_end - max(ends),
            "attempt_seconds_sum": busy,
            "attempt_seconds_per_worker": per_worker}


# ----------------------------------------------------------------------------- report


def _threads_seen(text: str) -> list[Any]:
    values = []
    for line in text.splitlines():
        if THREADS_TAG in line:
            value = line.split(THREADS_TAG, 1)[1].strip()
            values.append(int(value) if value.isdigit() else value)
    return values


def count_lines(path: str) -> tuple[int, str]:
    """Lines and SHA-256 of a file, streamed."""
    lines, digest = 0, hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            lines += chunk.count(b"\n")
            digest.update(chunk)
    return lines, digest.hexdigest()


def _median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.median(numbers) if numbers else None


def summarise(loops: list[dict[str, Any]], jobs: list[dict[str, Any]],
              checks: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Medians over repetitions, the ratio and the overhead per mini-batch."""
    loop_s = _median([r["seconds"] for r in loops])
    dask_s = _median([r["seconds"] for r in jobs])
    excl = _median([r.get("seconds_excluding_cluster_start") for r in jobs])
    batches = loops[0]["mini_batches"]
    workers = 2
    summary: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "processor": _cpu_name()},
        "versions": _versions(),
        "load_average": {"before": args.load_before, "after": _load_average()},
        "parameters": {"rows": args.rows, "files": args.files, "features": args.features,
                       "row_group_rows": args.row_group_rows, "iterations": args.iterations,
                       "leaves": args.leaves, "mini_batch_size": args.mini_batch_size,
                       "process_count_per_node": workers, "repeat": args.repeat},
        "mini_batches": batches,
        "rows_per_mini_batch": args.rows / batches if batches else None,
        "loop_seconds": loop_s,
        "daskprs_seconds": dask_s,
        "ratio": loop_s / dask_s if dask_s else None,
        "overhead_per_mini_batch_seconds": (dask_s * workers - loop_s) / batches,
        "daskprs_seconds_excluding_cluster_start": excl,
        "ratio_excluding_cluster_start": loop_s / excl if excl else None,
        "overhead_per_mini_batch_excluding_cluster_start_seconds":
            (excl * workers - loop_s) / batches if excl else None,
        "daskprs_job_result_seconds": _median([r["job_result_seconds"] for r in jobs]),
        "cluster_start_seconds": _median([r.get("cluster_start_seconds") for r in jobs]),
        "cluster_close_seconds": _median([r.get("cluster_close_seconds") for r in jobs]),
        "before_first_attempt_seconds":
            _median([r.get("before_first_attempt_seconds") for r in jobs]),
        "attempt_span_seconds": _median([r.get("attempt_span_seconds") for r in jobs]),
        "after_last_attempt_seconds":
            _median([r.get("after_last_attempt_seconds") for r in jobs]),
        "attempt_seconds_sum": _median([r.get("attempt_seconds_sum") for r in jobs]),
        "loop_phases": {k: _median([r["phases"][k] for r in loops])
                        for k in loops[0]["phases"]},
        "loop_process_seconds": _median([r["process_seconds"] for r in loops]),
        "openmp_threads": {"loop": loops[0]["openmp_threads"],
                           "daskprs_runners": jobs[0].get("openmp_threads")},
        "same_line_count": all(c["same_line_count"] for c in checks),
        "identical_output": all(c["identical"] for c in checks),
        "output_lines": checks[0]["daskprs_lines"],
        "repetitions": {"loop": loops, "daskprs": jobs, "checks": checks},
    }
    # Per repetition (loop i paired with daskprs i), then medians: where the worker-seconds
    # beyond the loop go. In-attempt: attempt seconds (runner round trip + run(), slowed by
    # whatever else shares the 2 cores) minus the loop's scoring. Between attempts: worker-
    # seconds from first to last attempt outside attempts (read, markers, append_row bytes,
    # commit, Dask hand-off). Steady state: the loop's per-mini-batch work (read, score,
    # write) over the time from the first attempt's start to the last one's end.
    derived: dict[str, list[float]] = {"in_attempt": [], "between": [], "steady": []}
    for loop, job in zip(loops, jobs, strict=True):
        span, busy = job.get("attempt_span_seconds"), job.get("attempt_seconds_sum")
        if not span or busy is None:
            continue
        phases = loop["phases"]
        derived["in_attempt"].append((busy - phases["score"]) / batches)
        derived["between"].append((span * workers - busy) / batches)
        derived["steady"].append((phases["read"] + phases["score"] + phases["write"]) / span)
    summary["in_attempt_overhead_per_mini_batch_seconds"] = _median(derived["in_attempt"])
    summary["between_attempts_per_mini_batch_seconds"] = _median(derived["between"])
    summary["steady_state_ratio"] = _median(derived["steady"])
    summary["ratio_per_repetition"] = [loop["seconds"] / job["seconds"]
                                       for loop, job in zip(loops, jobs, strict=True)]
    return summary


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _load_average() -> str | None:
    """1-, 5- and 15-minute load averages: how busy the machine was (others' work too)."""
    with contextlib.suppress(OSError), open("/proc/loadavg", encoding="utf-8") as handle:
        return " ".join(handle.read().split()[:3])
    return None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("daskprs", "dask", "distributed", "pandas", "pyarrow", "scikit-learn"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def print_summary(summary: dict[str, Any]) -> None:
    def fmt(value: Any, unit: str = " s", digits: int = 2) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    s = summary
    phases = ", ".join(f"{k} {v:.2f}" for k, v in s["loop_phases"].items())
    lines = [
        "",
        f"mini-batches                  {s['mini_batches']} "
        f"({s['rows_per_mini_batch']:,.0f} rows each on average)",
        f"loop (1 process)              {fmt(s['loop_seconds'])}   [{phases}]",
        f"daskprs (2 workers)           {fmt(s['daskprs_seconds'])}   end to end",
        f"ratio loop/daskprs            {fmt(s['ratio'], 'x')}   (limit 2.00x, goal >= 1.80x; "
        f"per repetition {', '.join(f'{r:.2f}x' for r in s['ratio_per_repetition'])})",
        f"overhead per mini-batch       {fmt(_ms(s['overhead_per_mini_batch_seconds']), ' ms', 1)}"
        f"   (daskprs_s*2 - loop_s) / mini_batches",
        f"daskprs without cluster start {fmt(s['daskprs_seconds_excluding_cluster_start'])}   "
        f"ratio {fmt(s['ratio_excluding_cluster_start'], 'x')}, overhead per mini-batch "
        f"{fmt(_ms(s['overhead_per_mini_batch_excluding_cluster_start_seconds']), ' ms', 1)}",
        f"  cluster start / close       {fmt(s['cluster_start_seconds'])} / "
        f"{fmt(s['cluster_close_seconds'])}",
        f"  job_result.json seconds     {fmt(s['daskprs_job_result_seconds'])}",
        f"  before first attempt        {fmt(s['before_first_attempt_seconds'])}"
        f"   (plan, cluster, runners' init)",
        f"  first to last attempt       {fmt(s['attempt_span_seconds'])}"
        f"   (steady-state ratio {fmt(s['steady_state_ratio'], 'x')})",
        f"  after last attempt          {fmt(s['after_last_attempt_seconds'])}"
        f"   (assembly, teardown)",
        f"  in-attempt overhead / mb    "
        f"{fmt(_ms(s.get('in_attempt_overhead_per_mini_batch_seconds')), ' ms', 1)}"
        f"   (attempt seconds - loop scoring)",
        f"  between attempts / mb       "
        f"{fmt(_ms(s.get('between_attempts_per_mini_batch_seconds')), ' ms', 1)}"
        f"   (worker-seconds outside attempts)",
        f"OpenMP threads                loop {s['openmp_threads']['loop']}, daskprs runners "
        f"{s['openmp_threads']['daskprs_runners']}",
        f"output lines                  {s['output_lines']:,} "
        f"(same count: {s['same_line_count']}, identical: {s['identical_output']})",
        f"load average                  before {s['load_average']['before']}, "
        f"after {s['load_average']['after']}",
    ]
    print("\n".join(lines))


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the table (the loop takes ~30 us per row on 2-core EPYC)")
    parser.add_argument("--files", type=int, default=5, help="Parquet files")
    parser.add_argument("--features", type=int, default=20, help="numeric feature columns")
    parser.add_argument("--row-group-rows", type=int, default=12_500,
                        help="rows per Parquet row group")
    parser.add_argument("--iterations", type=int, default=500,
                        help="trees of the HistGradientBoostingClassifier")
    parser.add_argument("--leaves", type=int, default=63, help="max_leaf_nodes of each tree")
    parser.add_argument("--mini-batch-size", default="12500 rows",
                        help="mini_batch_size, as daskprs accepts it ('12500 rows', '2MB')")
    parser.add_argument("--repeat", type=int, default=1,
                        help="repetitions of each side; medians are reported")
    parser.add_argument("--workdir", help="folder for data and outputs (kept; data reused when "
                        "the parameters match); default: a temporary folder, removed")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds after which a daskprs run is interrupted (Ctrl-C) and "
                        "the benchmark stops")
    parser.add_argument("--loop-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rows < 1 or args.files < 1:
        parser.error("--repeat, --rows and --files must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.loop_child:
        loop_child(args.loop_child)
        return
    from daskprs.sizes import parse_tabular_size

    parse_tabular_size(args.mini_batch_size)  # fail early on a bad size
    args.load_before = _load_average()
    temporary = args.workdir is None
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="daskprs-bench-"))
    os.makedirs(workdir, exist_ok=True)
    try:
        paths = prepare_data(workdir, args)
        # Import Dask and daskprs in this process before timing (the loop's child imports
        # daskprs before its clock starts, too).
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401

        import daskprs.job  # noqa: F401

        loops, jobs, checks = [], [], []
        for repetition in range(1, args.repeat + 1):
            loop_output = os.path.join(workdir, f"loop-{repetition}.txt")
            loop = run_loop(paths, args.mini_batch_size, loop_output)
            loops.append(loop)
            print(f"[{repetition}/{args.repeat}] loop    {loop['seconds']:.2f} s "
                  f"({loop['mini_batches']} mini-batches)", flush=True)
            output = os.path.join(workdir, f"daskprs-out-{repetition}")
            job = run_daskprs(paths, args.mini_batch_size, output, args.timeout)
            jobs.append(job)
            print(f"[{repetition}/{args.repeat}] daskprs {job['seconds']:.2f} s "
                  f"({job['mini_batches']} mini-batches)", flush=True)
            loop_lines, loop_hash = count_lines(loop_output)
            job_lines, job_hash = count_lines(os.path.join(output, OUTPUT_FILE))
            checks.append({"loop_lines": loop_lines, "daskprs_lines": job_lines,
                           "same_line_count": loop_lines == job_lines,
                           "identical": loop_hash == job_hash})
            if loop["mini_batches"] != job["mini_batches"]:
                raise SystemExit(f"different plans: loop {loop['mini_batches']} mini-batches, "
                                 f"daskprs {job['mini_batches']}")
            if loop_lines != job_lines:
                raise SystemExit(f"different outputs: loop {loop_lines} lines, daskprs "
                                 f"{job_lines} lines")
        summary = summarise(loops, jobs, checks, args)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    print_summary(summary)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
