"""``step.estimate()`` and ``daskprs estimate``: a sample, never written to the output,
projected to the whole job and compared with the job's measured run."""

from __future__ import annotations

import time

import yaml
from click.testing import CliRunner

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.cli import main

PER_ITEM = 0.02
SCRIPT = f'''
import time


def init():
    global ballast
    ballast = bytearray(64 * 2**20)  # a model of 64 MiB


def run(mini_batch):
    time.sleep({PER_ITEM} * len(mini_batch))
    return [path.rsplit("/", 1)[-1] for path in mini_batch]
'''


def _files(folder, count: int) -> str:
    folder.mkdir()
    for number in range(count):
        (folder / f"f{number:04d}.txt").write_text("x")
    return str(folder)


def test_projection_of_a_job_of_known_cost_is_within_30_percent_of_its_run(
        tmp_path, write_script, client):
    # 1,200 items x 20 ms of sleep: the work (12 s on 2 workers) dominates the fixed costs,
    # which grow on a busy machine while a sleep does not
    data = _files(tmp_path / "data", 1200)
    source = write_script(tmp_path, SCRIPT)
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size=10, process_count_per_node=2,
                               output_action="append_row")
    output = tmp_path / "out"
    step = ParallelRunStep(name="estimate", parallel_run_config=config,
                           inputs=[Dataset.File.from_files(data).as_named_input("files")],
                           output=str(output), allow_reuse=False)

    estimate = step.estimate(sample=5)

    assert not output.exists()  # nothing written, not even the folder
    assert (estimate.mini_batches, estimate.items, len(estimate.sampled)) == (120, 1200, 5)
    assert [s["id"] for s in estimate.sampled] == [f"files-{i}" for i in (0, 30, 60, 89, 119)]
    assert all(s["status"] == "succeeded" and s["items"] == 10 for s in estimate.sampled)
    assert PER_ITEM <= estimate.seconds_per_item < 1.5 * PER_ITEM
    assert estimate.result_bytes_per_item == len("f0000.txt\n")
    assert estimate.peak_memory >= 64 * 2**20
    assert estimate.cpu_share < 0.5  # run() sleeps

    clock = time.perf_counter()
    result = step.run(client=client, progress=False)  # a cluster that runs already
    measured = time.perf_counter() - clock
    assert result.status == "Completed"
    projected = estimate.projected_seconds(2, startup=False)
    assert 0.7 <= projected / measured <= 1.3, (projected, measured)


def test_the_cli_prints_the_plan_and_projection_and_leaves_the_output_alone(
        tmp_path, write_script):
    data = _files(tmp_path / "data", 30)
    source = write_script(tmp_path, SCRIPT.replace(f"{PER_ITEM} *", "0 *"))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "name": "estimate-cli", "output": str(tmp_path / "out"),
        "inputs": [{"name": "files", "type": "file", "path": data}],
        "parallel_run_config": {"source_directory": str(source), "entry_script": "score.py",
                                "mini_batch_size": 10, "process_count_per_node": 2}}))

    shown = CliRunner().invoke(main, ["estimate", str(job), "--sample", "2"])

    assert shown.exit_code == 0, shown.output
    assert "estimate-cli: 30 input files, 3 mini-batches, 30 items" in shown.output
    assert "sample: 2 mini-batches (2 succeeded), 20 items" in shown.output
    assert "peak memory of a runner:" in shown.output
    assert "2 workers:" in shown.output and "<- this job" in shown.output
    assert not (tmp_path / "out").exists()


def test_an_init_that_fails_is_reported_with_its_error(tmp_path, write_script):
    data = _files(tmp_path / "data", 3)
    source = write_script(tmp_path, "def init():\n    raise RuntimeError('no model')\n\n"
                                    "def run(mini_batch):\n    return mini_batch\n")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "name": "estimate-bad", "output": str(tmp_path / "out"),
        "inputs": [{"name": "files", "type": "file", "path": data}],
        "parallel_run_config": {"source_directory": str(source), "entry_script": "score.py",
                                "mini_batch_size": 1}}))

    shown = CliRunner().invoke(main, ["estimate", str(job)])

    assert shown.exit_code == 2
    assert "init() failed while estimating: RuntimeError: no model" in shown.output
    assert not (tmp_path / "out").exists()
