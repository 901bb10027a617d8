#!/usr/bin/env bash
# GPU check: score a small neural network on every GPU of this machine through daskprs and
# print the throughput of each device. Not run in CI (CI machines have no GPU).
#
# What it does: writes ROWS rows of 64 float features as Parquet (in a temporary folder),
# runs examples/gpu/score.py over them on an embedded LocalCluster (one worker process per
# GPU, each runner with its own CUDA_VISIBLE_DEVICES), then reads logs/sys/mini_batches.csv
# and prints, per device: mini-batches, rows, seconds inside run() and rows per second.
# The model is PyTorch when torch imports, else ONNX Runtime (onnxruntime-gpu + onnx),
# else NumPy on the CPU (the check then says so: no GPU was used).
#
# How to run, on a machine with NVIDIA GPUs and a driver (`nvidia-smi -L` lists them):
#
#   python -m venv .venv
#   .venv/bin/pip install -e '.[gpu]' pyarrow torch     # or: onnxruntime-gpu onnx
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh [ROWS] [BATCH_SIZE] [MINI_BATCH_ROWS]
#
# Defaults: ROWS 2000000, BATCH_SIZE 8192 (rows per forward pass), MINI_BATCH_ROWS 100000.
# Every GPU should appear once with a similar rate; a device missing, or two workers on
# one device, is a failure of daskprs' placement. KEEP=1 keeps the temporary folder.
set -euo pipefail

ROWS=${1:-2000000}
BATCH=${2:-8192}
MINI_BATCH=${3:-100000}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/daskprs-gpu-check-XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then
    trap 'rm -rf "$WORK"' EXIT
fi

echo "== GPUs (nvidia-smi -L)"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi not found or no driver: the check runs on the CPU"

# a file, not stdin: the worker processes LocalCluster spawns import the main module again
cat > "$WORK/gpu_check.py" <<'PYTHON'
import glob
import sys
import time

import numpy as np
import pandas as pd

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.gpus import detect_gpus

root, work, rows, batch, mini_batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])


def main() -> None:
    gpus = detect_gpus()
    print(f"== daskprs sees {len(gpus)} GPU(s): "
          + (", ".join(f"{g.index} {g.name}" for g in gpus) or "none"))
    rng = np.random.default_rng(1)
    parts = 8
    for part in range(parts):
        count = rows // parts + (part < rows % parts)
        start = part * (rows // parts) + min(part, rows % parts)
        frame = pd.DataFrame(rng.random((count, 64), dtype=np.float32),
                             columns=[f"f{k}" for k in range(64)])
        frame.insert(0, "id", np.arange(start, start + count))
        frame.to_parquet(f"{work}/part-{part}.parquet", index=False)
    config = ParallelRunConfig(
        entry_script="score.py", source_directory=f"{root}/examples/gpu",
        mini_batch_size=f"{mini_batch} rows", output_action="summary_only",
        run_invocation_timeout=600, compute_target="local")
    step = ParallelRunStep("gpu-check", config,
                           [Dataset.Tabular.from_parquet_files(f"{work}/*.parquet")],
                           output=f"{work}/out",
                           arguments=["--batch-size", str(batch), "--hidden", "1024"])
    clock = time.perf_counter()
    result = step.run(progress=False)
    wall = time.perf_counter() - clock
    print(result.summary())
    attempts = pd.read_csv(f"{work}/out/logs/sys/mini_batches.csv", dtype={"device": str},
                           keep_default_na=False)
    done = attempts[attempts["status"] == "succeeded"].copy()
    done["device"] = done["device"].replace("", "cpu (no CUDA_VISIBLE_DEVICES)")
    table = done.groupby(["device", "worker"]).agg(
        mini_batches=("mini_batch_id", "count"), rows=("succeeded", "sum"),
        seconds=("seconds", "sum"))
    table["rows_per_s"] = (table["rows"] / table["seconds"]).round(0)
    backends = set()
    for log in glob.glob(f"{work}/out/logs/user/entry_script_log/*"):
        with open(log, encoding="utf-8") as handle:
            backends |= {line.split(" features on ", 1)[1].strip() for line in handle
                         if " features on " in line}
    print(f"\n== model backend(s): {', '.join(sorted(backends)) or 'unknown'}")
    print("\n== per device (seconds inside run(), summed)")
    print(table.to_string())
    print(f"\n== end to end: {rows} rows in {wall:.1f} s = {rows / wall:,.0f} rows/s "
          f"(cluster start and model load included)")
    used = sorted(set(result.devices.values()))
    wanted = [g.index for g in gpus]
    if not gpus:
        print("RESULT: no GPU on this machine; nothing was placed on a GPU")
    elif sorted(used) == sorted(wanted) and done.groupby("device")["worker"].nunique().max() == 1:
        print(f"RESULT: ok, each of the {len(wanted)} GPU(s) had its own worker")
    else:
        print(f"RESULT: FAILED, devices used {used}, GPUs {wanted}")
        sys.exit(1)
    if not result.succeeded:
        sys.exit(1)


if __name__ == "__main__":
    main()
PYTHON
"$PYTHON" "$WORK/gpu_check.py" "$ROOT" "$WORK" "$ROWS" "$BATCH" "$MINI_BATCH"
