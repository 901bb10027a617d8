"""Score 2,000 small files on an S3 server (moto, 127.0.0.1): daskprs vs a plain loop.

The loop downloads and scores one file after another, as a script without daskprs would;
daskprs runs 2 workers, each downloading a mini-batch's files concurrently before run().
The S3 server runs in its own process, as S3 is not inside the client.

Usage: python benchmarks/bench_s3_files.py [--files 2000] [--size 4096] [--batch 10]
                                           [--repeat 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import fsspec

SCRIPT = '''
import hashlib

def score(data):
    digest = data
    for _ in range(200):                     # a little CPU per file, like parsing it
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]

def run(mini_batch):
    out = []
    for path in mini_batch:
        with open(path, "rb") as handle:
            out.append(f"{path.rsplit('/', 1)[-1]},{score(handle.read())}")
    return out
'''


def score(data: bytes) -> str:
    """The same work the entry script does per file."""
    digest = data
    for _ in range(200):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def plain_loop(options: dict, bucket: str, out: Path) -> float:
    """Download and score each file in turn; write one line per file."""
    start = time.perf_counter()
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    paths = sorted(fs.find(f"{bucket}/in"))
    with open(out, "w") as handle:
        for path in paths:
            handle.write(f"{path.rsplit('/', 1)[-1]},{score(fs.cat_file(path))}\n")
    return time.perf_counter() - start


def with_daskprs(options: dict, bucket: str, source: Path, out: Path, batch: int) -> float:
    """The same work as a daskprs job on an embedded cluster of 2 workers."""
    from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

    start = time.perf_counter()
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size=batch, process_count_per_node=2)
    files = Dataset.File.from_files(f"s3://{bucket}/in/", storage_options=options)
    step = ParallelRunStep(name="bench-s3-files", parallel_run_config=config, inputs=[files],
                           output=str(out), allow_reuse=False)
    result = step.run(progress=False)
    result.raise_for_status()
    return time.perf_counter() - start


def start_moto_process() -> tuple[subprocess.Popen[str], str]:
    """moto's S3 server in its own process (as S3 is not inside the client), port 0."""
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    assert server.stdout is not None
    for line in server.stdout:
        match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
        if match:
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server, match.group(1)
    raise RuntimeError("moto did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096, help="bytes per file")
    parser.add_argument("--batch", type=int, default=10, help="files per mini-batch")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    server, endpoint = start_moto_process()
    options = {"key": "bench", "secret": "bench", "endpoint_url": endpoint}
    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    try:
        fs = fsspec.filesystem("s3", **options)
        fs.mkdir("bench")
        payload = os.urandom(args.size)
        fs.pipe({f"bench/in/file-{i:05d}.bin": payload[i % 64:] + payload[:i % 64]
                 for i in range(args.files)})
        (work / "src").mkdir()
        (work / "src" / "score.py").write_text(SCRIPT)
        loops, jobs = [], []
        for repeat in range(args.repeat):
            loops.append(plain_loop(options, "bench", work / f"loop-{repeat}.txt"))
            out = work / f"out-{repeat}"
            jobs.append(with_daskprs(options, "bench", work / "src", out, args.batch))
            loop_lines = (work / f"loop-{repeat}.txt").read_text().splitlines()
            job_lines = (out / "parallel_run_step.txt").read_text().splitlines()
            assert job_lines == loop_lines, "daskprs and the loop disagree"
        figures = {"files": args.files, "bytes_per_file": args.size,
                   "mini_batches": -(-args.files // args.batch),
                   "loop_seconds": round(statistics.median(loops), 2),
                   "daskprs_seconds": round(statistics.median(jobs), 2)}
        figures["ratio_loop_over_daskprs"] = round(figures["loop_seconds"]
                                                   / figures["daskprs_seconds"], 2)
        print(json.dumps(figures, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
