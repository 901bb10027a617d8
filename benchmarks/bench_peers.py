"""Benchmark: daskprs against Ray Data, Spark, plain Dask and a plain loop, side by side.

Run by hand (not part of the test suite; ``pip install -e '.[benchmarks]'`` brings Ray Data
and PySpark, Spark needs Java)::

    python benchmarks/bench_peers.py [--scale 1.0] [--rounds 3] [--workloads A B]
                                     [--tools daskprs ray spark dask loop]
                                     [--workdir /tmp/daskprs-bench-peers] [--json out.json]

Two workloads, each tool run as a whole process (interpreter start to exit), 2 worker
processes each, the model loaded once per worker, every output checked for exactly the
expected ids (each once):

* **A**: score a Parquet table with the CPU-bound model of ``bench_tabular.py``
  (``2,000,000 x scale`` rows in 5 files, row groups and mini-batches of 10,000 rows; a
  HistGradientBoostingClassifier, ~30 us per row, so the loop takes ~60 s at scale 1);
* **B**: ``20,000 x scale`` small files in mini-batches of 10, a trivial ``run()`` that
  returns each file's name.

Tools, each the way its documentation recommends for batch inference:

* ``daskprs``: ``daskprs run --no-progress job.yaml`` (embedded LocalCluster,
  ``process_count_per_node: 2``, ``append_row``);
* ``ray``: ``ray.init(num_cpus=3)`` (the 2 actors hold 2 logical CPUs; with 2 in all the
  listing, read and write tasks never got one and Ray Data hung); A
  ``read_parquet().map_batches(Scorer,
  batch_size=10000, compute=ActorPoolStrategy(size=2), batch_format="pandas")``, B
  ``from_items(paths)`` then the same with ``batch_size=10``; ``write_csv``;
* ``spark``: ``local[2]``, ``mapInPandas`` over an iterator of batches with a model cached
  per Python worker (``spark.sql.execution.arrow.maxRecordsPerBatch`` 10,000 for A, 10 for
  B), ``write.csv``;
* ``dask``: a LocalCluster of 2 single-threaded worker processes; A ``dd.read_parquet(
  split_row_groups=True).map_partitions(score).to_csv``, B ``db.from_sequence(paths,
  partition_size=10).map_partitions(names).to_textfiles``;
* ``loop``: one process, 10,000-row batches (``pyarrow`` ``iter_batches``) or 10 paths at a
  time, one output file.

Every child runs with ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
set to 1 (one thread per worker process on 2 cores; daskprs sets this for its runners
anyway). The tools alternate round-robin over ``--rounds``; the report gives the median
wall time, the peak resident memory of the whole process tree (psutil, every 50 ms), and
the ratios to the loop and to daskprs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
from bench_fixed_cost import TreeWatch

TOOLS = ("daskprs", "ray", "spark", "dask", "loop")
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
ROWS, FILES, BATCH_ROWS, BATCH_FILES = 2_000_000, 20_000, 10_000, 10

# Imported by every tool's workers (the workdir is on their PYTHONPATH): the model is
# loaded once per process, and the same functions score for every tool.
HELPER = '''\
"""Written by benchmarks/bench_peers.py: the model and the scoring shared by every tool."""
import functools
import os

import joblib
import pandas as pd


@functools.lru_cache(maxsize=None)
def model(path):
    return joblib.load(path)


def score(frame, path):
    m = model(path)
    probability = m.predict_proba(frame[list(m.feature_names_in_)])[:, 1]
    return pd.DataFrame({"id": frame["id"].to_numpy(),
                         "prediction": (probability > 0.5).astype("int8"),
                         "probability": probability.round(6)})


def names(paths):
    return [os.path.basename(p) for p in paths]


class Scorer:
    """Ray Data's callable class: the model loaded once per actor."""

    def __init__(self, path):
        self.path = path
        model(path)

    def __call__(self, frame):
        return score(frame, self.path)


class Namer:
    def __call__(self, frame):
        return pd.DataFrame({"name": names(frame["path"].tolist())})
'''

FILE_SCRIPT = '''\
import os


def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
'''


# ---------------------------------------------------------------- data


def prepare(workdir: str, scale: float, workloads: list[str]) -> dict[str, Any]:
    """Data of both workloads under ``workdir`` (kept and reused while the scale holds)."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "peers_helper.py"), "w") as handle:
        handle.write(HELPER)
    paths: dict[str, Any] = {"workdir": workdir}
    if "A" in workloads:
        from bench_tabular import prepare_data

        rows = max(BATCH_ROWS, int(ROWS * scale))
        table = argparse.Namespace(rows=rows, files=5, features=20, row_group_rows=BATCH_ROWS,
                                   iterations=500, leaves=63)
        paths["A"] = {**prepare_data(os.path.join(workdir, "tabular"), table), "rows": rows}
    if "B" in workloads:
        from bench_files import make_files

        count = max(BATCH_FILES, int(FILES * scale))
        root = os.path.join(workdir, f"files-{count}")
        data = make_files(root, count)
        with open(os.path.join(root, "src", "score.py"), "w") as handle:
            handle.write(FILE_SCRIPT)
        listing = sorted(os.path.join(folder, name) for folder, _, found in os.walk(data)
                         for name in found)
        with open(os.path.join(root, "paths.txt"), "w") as handle:
            handle.write("\n".join(listing))
        paths["B"] = {"data": data, "source": os.path.join(root, "src"),
                      "paths": os.path.join(root, "paths.txt"), "files": count}
    return paths


# ---------------------------------------------------------------- the tools (children)


def child_daskprs(workload: str, data: dict[str, Any], output: str) -> None:
    import yaml

    job = {"name": "bench-peers", "output": output, "allow_reuse": False}
    config = {"entry_script": "score.py", "process_count_per_node": 2,
              "output_action": "append_row", "error_threshold": 0}
    if workload == "A":
        job["inputs"] = [{"name": "table", "type": "tabular", "format": "parquet",
                          "path": data["table"]}]
        job["arguments"] = ["--model", data["model"]]
        config.update(source_directory=data["source"], mini_batch_size=f"{BATCH_ROWS} rows",
                      append_row_separator=",")
    else:
        job["inputs"] = [{"name": "files", "type": "file", "path": data["data"]}]
        config.update(source_directory=data["source"], mini_batch_size=BATCH_FILES)
    job["parallel_run_config"] = config
    path = output + ".yaml"
    with open(path, "w") as handle:
        yaml.safe_dump(job, handle)
    subprocess.run([sys.executable, "-m", "daskprs", "run", "--no-progress", path],
                   check=True, stdout=subprocess.DEVNULL)


def child_ray(workload: str, data: dict[str, Any], output: str) -> None:
    import peers_helper
    import ray
    from ray.data import ActorPoolStrategy

    # 3 logical CPUs: the 2 actors hold 2, and with num_cpus=2 the file listing, read and
    # write tasks never get one (a deadlock seen here with Ray 2.60)
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    if workload == "A":
        ds = ray.data.read_parquet(data["table"]).map_batches(
            peers_helper.Scorer, batch_size=BATCH_ROWS, compute=ActorPoolStrategy(size=2),
            batch_format="pandas", fn_constructor_args=(data["model"],))
    else:
        ds = ray.data.from_items([{"path": p} for p in _paths(data)]).map_batches(
            peers_helper.Namer, batch_size=BATCH_FILES, compute=ActorPoolStrategy(size=2),
            batch_format="pandas")
    ds.write_csv(output)
    ray.shutdown()


def child_spark(workload: str, data: dict[str, Any], output: str) -> None:
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # Spark's Python workers: this venv
    batch = BATCH_ROWS if workload == "A" else BATCH_FILES
    spark = (SparkSession.builder.master("local[2]").appName("bench-peers")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch))
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    model = data.get("model")
    if workload == "A":
        def score(frames: Any) -> Any:
            import peers_helper

            for frame in frames:
                yield peers_helper.score(frame, model)

        frame = spark.read.parquet(data["table"]).mapInPandas(
            score, schema="id long, prediction byte, probability double")
    else:
        def names(frames: Any) -> Any:
            import pandas as pd
            import peers_helper

            for frame in frames:
                yield pd.DataFrame({"name": peers_helper.names(frame["path"].tolist())})

        paths = _paths(data)
        frame = spark.createDataFrame([(p,) for p in paths], "path string").repartition(
            2).mapInPandas(names, schema="name string")
    frame.write.mode("overwrite").option("header", "true").csv(output)
    spark.stop()


def child_dask(workload: str, data: dict[str, Any], output: str) -> None:
    import logging

    import peers_helper
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster):
        if workload == "A":
            import dask.dataframe as dd
            import pandas as pd

            table = dd.read_parquet(data["table"], split_row_groups=True)
            meta = pd.DataFrame({"id": pd.Series(dtype="int64"),
                                 "prediction": pd.Series(dtype="int8"),
                                 "probability": pd.Series(dtype="float64")})
            table.map_partitions(peers_helper.score, data["model"], meta=meta).to_csv(
                os.path.join(output, "part-*.csv"), index=False)
        else:
            import dask.bag as db

            os.makedirs(output, exist_ok=True)
            db.from_sequence(_paths(data), partition_size=BATCH_FILES).map_partitions(
                peers_helper.names).to_textfiles(os.path.join(output, "*.txt"))


def child_loop(workload: str, data: dict[str, Any], output: str) -> None:
    import peers_helper
    import pyarrow.parquet as pq

    with open(output, "w", encoding="utf-8", newline="") as out:
        if workload == "A":
            for name in sorted(os.listdir(data["table"])):
                parquet = pq.ParquetFile(os.path.join(data["table"], name))
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                    peers_helper.score(batch.to_pandas(), data["model"]).to_csv(
                        out, header=False, index=False, lineterminator="\n")
        else:
            paths = _paths(data)
            for start in range(0, len(paths), BATCH_FILES):
                out.writelines(f"{n}\n" for n in peers_helper.names(paths[start:start
                                                                          + BATCH_FILES]))


def _paths(data: dict[str, Any]) -> list[str]:
    with open(data["paths"], encoding="utf-8") as handle:
        return handle.read().splitlines()


CHILDREN = {"daskprs": child_daskprs, "ray": child_ray, "spark": child_spark,
            "dask": child_dask, "loop": child_loop}


# ---------------------------------------------------------------- checks


def check(tool: str, workload: str, data: dict[str, Any], output: str) -> str:
    """Empty when the output holds exactly the expected ids, each once; else what is off."""
    if workload == "A":
        ids = np.sort(np.concatenate(_first_column(tool, output, numeric=True)))
        expected = np.arange(data["rows"], dtype=ids.dtype)
        if len(ids) != len(expected) or not np.array_equal(ids, expected):
            return f"{len(ids):,} ids, expected exactly 0 .. {data['rows'] - 1:,} once each"
        return ""
    names = sorted(str(n) for part in _first_column(tool, output, numeric=False) for n in part)
    expected = sorted(os.path.basename(p) for p in _paths(data))
    return "" if names == expected else (f"{len(names):,} names ({len(set(names)):,} "
                                         f"distinct), expected {len(expected):,}")


def _first_column(tool: str, output: str, numeric: bool) -> list[Any]:
    import pandas as pd

    if tool in ("daskprs", "loop"):
        files = [os.path.join(output, "parallel_run_step.txt")] if tool == "daskprs" \
            else [output]
        header = None
    else:
        files = [os.path.join(folder, name) for folder, _, found in os.walk(output)
                 for name in found if name.endswith((".csv", ".txt")) and
                 not name.startswith(".")]
        header = None if tool == "dask" and not numeric else 0
    columns = []
    for path in files:
        if os.path.getsize(path) == 0:
            continue
        frame = pd.read_csv(path, header=header, usecols=[0], dtype=None if numeric else str,
                            keep_default_na=False)
        columns.append(frame.iloc[:, 0].to_numpy())
    return columns or [np.array([], dtype=np.int64)]


# ---------------------------------------------------------------- the parent


def _kill_tree(pid: int) -> None:
    """Kill a child that ran past ``--timeout`` and everything it started."""
    import psutil

    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.Error):
                process.kill()


def run_tool(tool: str, workload: str, paths: dict[str, Any], number: int,
             timeout: float = 1800) -> dict[str, Any]:
    """One tool on one workload, as a whole child process; wall, peak memory, check."""
    data = paths[workload]
    output = os.path.join(paths["workdir"], "out", f"{workload}-{tool}-{number}")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(output) if os.path.isdir(output) else os.remove(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    config = output + ".json"
    with open(config, "w") as handle:
        json.dump({"tool": tool, "workload": workload, "data": data, "output": output}, handle)
    env = {**os.environ, **dict.fromkeys(THREADS, "1"),
           "PYTHONPATH": os.pathsep.join(p for p in (paths["workdir"], os.path.dirname(
               os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")) if p)}
    clock = time.perf_counter()
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", config],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    watch = TreeWatch(child.pid)
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(child.pid)
        stdout, stderr = child.communicate()
        watch.stop()
        return {"wall": timeout, "peak_mib": watch.peak_rss / 2**20, "cpu": 0.0,
                "error": f"timed out after {timeout:g} s", "log": stderr[-4000:]}
    wall = time.perf_counter() - clock
    tree = watch.stop()
    if child.returncode != 0:
        return {"wall": wall, **tree, "error": f"exit {child.returncode}: "
                f"{(stderr or stdout).strip().splitlines()[-1:]}", "log": stderr[-4000:]}
    problem = check(tool, workload, data, output)
    return {"wall": wall, **tree, "error": problem}


def report(results: dict[tuple[str, str], list[dict[str, Any]]], tools: list[str],
           workloads: list[str]) -> list[dict[str, Any]]:
    """Median wall and peak memory per tool and workload, with the ratios."""
    rows = []
    for workload in workloads:
        medians = {}
        for tool in tools:
            runs = [r for r in results.get((workload, tool), []) if not r["error"]]
            if runs:
                medians[tool] = (statistics.median(r["wall"] for r in runs),
                                 statistics.median(r["peak_mib"] for r in runs))
        loop, ours = medians.get("loop", (None,))[0], medians.get("daskprs", (None,))[0]
        print(f"\nworkload {workload}: median of {len(next(iter(results.values())))} rounds")
        print(f"  {'tool':<8} {'wall s':>8} {'peak MiB':>9} {'wall/loop':>10} "
              f"{'wall/daskprs':>12}  failed runs")
        for tool in tools:
            failed = [r["error"] for r in results.get((workload, tool), []) if r["error"]]
            if tool not in medians:
                print(f"  {tool:<8} {'-':>8} {'-':>9} {'-':>10} {'-':>12}  {failed[:1]}")
                continue
            wall, peak = medians[tool]
            row = {"workload": workload, "tool": tool, "wall": wall, "peak_mib": peak,
                   "over_loop": wall / loop if loop else None,
                   "over_daskprs": wall / ours if ours else None, "failed": failed}
            rows.append(row)
            print(f"  {tool:<8} {wall:8.2f} {peak:9.0f} {_ratio(row['over_loop']):>10} "
                  f"{_ratio(row['over_daskprs']):>12}  {len(failed) or ''}")
    return rows


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def versions() -> dict[str, str]:
    """Versions of the tools and of the machine."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "cores": str(os.cpu_count())}
    for name in ("daskprs", "dask", "distributed", "ray", "pyspark", "pandas", "pyarrow",
                 "scikit-learn"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
        found["java"] = (java.stderr or java.stdout).splitlines()[0]
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the full size (A 2,000,000 rows, B 20,000 files)")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds")
    parser.add_argument("--workloads", nargs="+", default=["A", "B"], choices=["A", "B"])
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--workdir", default="/tmp/daskprs-bench-peers",
                        help="data (kept and reused) and outputs")
    parser.add_argument("--json", help="also write every run and the medians here")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds after which a tool's process tree is killed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with open(args.child) as handle:
            job = json.load(handle)
        CHILDREN[job["tool"]](job["workload"], job["data"], job["output"])
        return
    paths = prepare(os.path.abspath(args.workdir), args.scale, args.workloads)
    shown = versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in shown.items()), flush=True)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for number in range(args.rounds):
        for workload in args.workloads:
            for tool in args.tools:
                run = run_tool(tool, workload, paths, number, args.timeout)
                results.setdefault((workload, tool), []).append(run)
                print(f"[round {number + 1}/{args.rounds}] {workload} {tool:<8} "
                      f"{run['wall']:7.2f} s {run['peak_mib']:6.0f} MiB "
                      f"{'ok' if not run['error'] else 'FAILED: ' + run['error']}", flush=True)
    rows = report(results, args.tools, args.workloads)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"versions": shown, "scale": args.scale, "rounds": args.rounds,
                       "medians": rows, "runs": {f"{w}-{t}": r for (w, t), r in
                                                 results.items()}}, handle, indent=2)


if __name__ == "__main__":
    main()
