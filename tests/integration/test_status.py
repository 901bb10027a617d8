"""``daskprs status``: read while a job runs (its mini-batches held by files the test
creates), then on the finished job; on local disk, an S3 server and Azurite."""

from __future__ import annotations

import json
import socket
import threading
import time

import dask
import pytest
from click.testing import CliRunner

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.cli import main
from daskprs.commit import StateStore
from daskprs.status import read_status
from daskprs.storage import Location

FILES = 20
HOLD_FROM = 12  # files f12 .. f19 wait for the test's "release" file

SCRIPT = f'''
import os
import sys
import time
from pathlib import Path


def init():
    global COORD
    COORD = Path(sys.argv[sys.argv.index("--coord") + 1])


def run(mini_batch):
    names = []
    for path in mini_batch:
        name = os.path.basename(path)
        number = int(name[1:3])
        if number == 1:
            raise ValueError("f01 fails")
        if number >= {HOLD_FROM}:
            (COORD / f"reached-{{number}}").touch()
            deadline = time.monotonic() + 120
            while not (COORD / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        names.append(name)
    return names
'''


def _wait_for(condition, what: str, seconds: float = 60.0):
    """Poll ``condition`` until it returns something true (a file appears, a snapshot
    moves); fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=["local", "s3", "azure"])
def output(request, tmp_path):
    """An output folder URL and its storage options: local, S3 (moto), Azure (Azurite)."""
    if request.param == "local":
        return str(tmp_path / "out"), {}
    from tests.storage_servers import new_bucket

    bucket = new_bucket(request.param, request.getfixturevalue("storage_servers")[request.param])
    return bucket.url("out"), bucket.storage_options


def test_status_of_a_running_job_shows_its_real_counts_then_the_finished_job(
        output, tmp_path, write_script, client):
    url, options = output
    data, coord = tmp_path / "data", tmp_path / "coord"
    data.mkdir()
    coord.mkdir()
    for number in range(FILES):
        (data / f"f{number:02d}.txt").write_text("x")
    source = write_script(tmp_path, SCRIPT)
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size=1, error_threshold=-1, run_max_try=1,
                               output_action="append_row")
    step = ParallelRunStep(name="status", parallel_run_config=config,
                           inputs=[Dataset.File.from_files(str(data)).as_named_input("files")],
                           output=url, output_storage_options=options,
                           arguments=["--coord", str(coord)], allow_reuse=False)
    outcome: dict[str, object] = {}

    def job() -> None:
        try:
            outcome["result"] = step.run(client=client, progress=False)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    with dask.config.set({"daskprs.progress-interval": 0.1}):
        runner = threading.Thread(target=job)
        runner.start()
        try:
            # both workers hold a mini-batch: nothing can commit until "release" exists
            held = _wait_for(lambda: (r := sorted(coord.glob("reached-*"))) and len(r) == 2
                             and r, "two held mini-batches")
            held_ids = {f"files-{int(p.name.split('-')[1])}" for p in held}
            status = _wait_for(lambda: (s := read_status(url, options)) and
                               {e["id"] for e in s.slowest} >= held_ids and s,
                               "the snapshot to show the held mini-batches in flight")
            store = StateStore(Location(url, options))
            succeeded = store.committed_ids()

            assert status.state == "Running"
            assert status.mini_batches["total"] == FILES
            assert status.items["total"] == FILES
            assert status.mini_batches["succeeded"] == len(succeeded)
            assert status.mini_batches["failed"] == 1  # f01
            assert status.mini_batches["done"] == len(succeeded) + 1
            assert 1 < status.mini_batches["done"] <= HOLD_FROM
            assert status.items == {"total": FILES, "done": len(succeeded) + 1,
                                    "succeeded": len(succeeded), "failed": 1}
            assert status.rate is not None and status.eta is not None
            assert {e["id"] for e in status.slowest[:2]} == held_ids

            shown = CliRunner().invoke(main, ["status", url]) if not options else None
            if shown is not None:
                assert shown.exit_code == 0, shown.output
                assert shown.output.startswith("Running: run ")
                assert f"mini-batches: {len(succeeded) + 1}/{FILES} done" in shown.output
                assert "1 failed" in shown.output and "ETA" in shown.output

            # the overview keeps being rewritten while no mini-batch ends
            fs, overview = Location(url, options).fs, Location(url, options).join(
                "logs", "job_progress_overview.txt")
            done = f"mini-batches: {len(succeeded) + 1}/{FILES} done"
            first = _wait_for(lambda: (text := _read(fs, overview)) and done in text and text,
                              f"the overview to say {done!r}")
            _wait_for(lambda: (text := _read(fs, overview)) and text != first and text,
                      "the overview to be rewritten")
        finally:
            (coord / "release").touch()
            runner.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].status == "Completed"

    final = read_status(url, options)
    assert final.state == "Completed" and not final.running
    assert final.mini_batches["done"] == FILES and final.mini_batches["failed"] == 1
    assert final.items["done"] == FILES and final.items["failed"] == 1
    assert final.eta is None
    assert held_ids <= {e["id"] for e in final.slowest}  # held for seconds: among the slowest
    if not options:
        shown = CliRunner().invoke(main, ["status", url])
        assert shown.exit_code == 0 and shown.output.startswith("Completed: run ")


def _read(fs, path: str) -> str:
    try:
        fs.invalidate_cache()
        return fs.cat_file(path).decode()
    except FileNotFoundError:
        return ""


def test_status_of_a_folder_without_a_job_exits_2(tmp_path):
    shown = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert shown.exit_code == 2
    assert "no daskprs job" in shown.output


def _record(index: int, status: str = "succeeded", items: int = 10) -> dict:
    return {"id": f"files-{index}", "index": index, "status": status, "items": items,
            "succeeded": items if status == "succeeded" else 0,
            "failed": 0 if status == "succeeded" else items, "attempts": []}


def test_a_job_whose_process_is_gone_is_stopped_with_its_committed_counts(tmp_path):
    output = tmp_path / "out"
    store = StateStore(Location(str(output)))
    store.write_job("f" * 16, "Running", "run-2", ["run-1", "run-2"])
    # the earlier run's succeeded mini-batch is reused, its failed one ran again
    store.commit("run-1", "0-1-0", [_record(0), _record(1, "failed")], [b"a\n", None])
    store.commit("run-2", "1-2-0", [_record(1), _record(2, "failed")], [b"b\n", None])
    lock = {"pid": 999999999, "host": socket.gethostname(), "run_id": "run-2"}
    (output / "_daskprs" / "lock.json").write_text(json.dumps(lock))

    status = read_status(str(output))

    assert status.state == "Stopped" and not status.running and status.eta is None
    assert status.mini_batches == {"total": None, "done": 3, "succeeded": 2, "failed": 1,
                                   "reused": 1}
    assert status.items == {"total": None, "done": 30, "succeeded": 20, "failed": 10}
    shown = CliRunner().invoke(main, ["status", str(output)])
    assert shown.exit_code == 1
    assert "the job's process is gone (pid 999999999" in shown.output
    assert "mini-batches: 3/? done: 2 succeeded, 1 failed, 1 reused" in shown.output


def test_the_progress_bar_shows_the_eta_and_the_failures_from_the_start(capsys):
    from daskprs.progress import BarProgress

    bar = BarProgress(4)
    bar.update({"failed": 3, "status": "failed"})
    bar.refresh()
    bar.close()
    shown = capsys.readouterr().err
    assert "ETA ?" in shown and "failed_items=0, failed_mini_batches=0" in shown
    assert "1/4" in shown and "failed_items=3, failed_mini_batches=1" in shown
