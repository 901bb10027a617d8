"""Faults on real ``dask scheduler`` / ``dask worker`` processes (issue 17, items 1, 6, 7, 14).

Each test kills something at a chosen moment and asserts what a user is owed: no result of
another run in the output, a clear error instead of a hang or a traceback, a bounded client.
"""

from __future__ import annotations

import os
import signal

import yaml

from daskprs.commit import StateStore
from daskprs.storage import Location
from tests.integration.test_clusters import (
    cli,
    file_input,
    make_job,
    owner,
    parquet_input,
    wait_until,
)

VERSIONED = """
import time

def run(mini_batch):
    time.sleep({seconds})
    return [f"{version}-{{i}}" for i in mini_batch["id"].tolist()]
"""


def test_a_killed_clients_leftover_runners_never_mix_into_the_rerun_of_a_changed_script(
        dask_processes, tmp_path, make_parquet, write_script):
    """Item 1: the client is SIGKILLed on an existing cluster while its runners work; the
    job is rerun with a changed script. Every row comes from the new script, the killed
    run's plugin is gone from every worker, and a worker that joins later starts none of
    its runners."""
    cluster = dask_processes
    spec = parquet_input(tmp_path, make_parquet, files=1, rows_per_file=400)
    job = make_job(tmp_path, write_script, spec, "2 rows", seconds=0.0)
    write_script(tmp_path, VERSIONED.format(seconds=0.05, version="old"))

    with cli(job, cluster.address) as run:
        wait_until(lambda: len(StateStore(Location(str(job.output))).committed_ids()) >= 10,
                   "10 mini-batches committed", process=run.process, log=run.stderr)
        run.process.send_signal(signal.SIGKILL)
        run.process.wait()
    write_script(tmp_path, VERSIONED.format(seconds=0.0, version="new"))

    with cli(job, cluster.address) as run:
        code, _out, err = run.finish()

    assert code == 0, err
    assert job.lines() == [f"new-{i}" for i in range(400)]
    plugins = cluster.client.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert not any(name.startswith("daskprs-") for names in plugins.values() for name in names)
    cluster.start_worker()
    cluster.client.wait_for_workers(3, timeout=60)
    plugins = cluster.client.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert not any(name.startswith("daskprs-") for names in plugins.values() for name in names)


def test_when_every_worker_dies_and_none_returns_the_job_fails_after_the_watchdog_timeout(
        dask_processes, tmp_path, make_parquet, write_script, monkeypatch):
    """Item 7: the client must not block on a result no worker can deliver."""
    cluster = dask_processes
    spec = parquet_input(tmp_path, make_parquet, files=1, rows_per_file=400)
    job = make_job(tmp_path, write_script, spec, "10 rows", seconds=0.5)
    monkeypatch.setenv("DASK_DASKPRS__NO_WORKER_TIMEOUT", "5")

    with cli(job, cluster.address) as run:
        runners = wait_until(lambda: len(job.init_agents()) == 2 and job.init_agents(),
                             "init() in both runners", process=run.process, log=run.stderr)
        cluster.tracked |= set(runners)
        for pid in runners:
            os.killpg(owner(cluster, pid).pid, signal.SIGKILL)
        code, out, err = run.finish(timeout=120)

    assert code == 1, err
    assert "the cluster has had no worker for 5 s" in err
    assert "committed mini-batches are kept" in err
    assert "Traceback" not in err
    assert out.splitlines()[0] == "Failed"
    assert yaml.safe_load((job.output / "logs" / "job_result.json").read_text())["status"] == \
        "Failed"


def test_a_scheduler_killed_mid_job_is_a_clear_error_and_the_rerun_resumes(
        dask_processes, tmp_path, make_parquet, write_script):
    """Item 14: exit 1 with 'the scheduler was lost', no FutureCancelledError traceback."""
    cluster = dask_processes
    spec = parquet_input(tmp_path, make_parquet, files=1, rows_per_file=400)
    job = make_job(tmp_path, write_script, spec, "10 rows", seconds=0.2)

    with cli(job, cluster.address) as run:
        wait_until(lambda: job.committed() >= 3, "3 committed mini-batches",
                   process=run.process, log=run.stderr)
        os.killpg(cluster.scheduler.pid, signal.SIGKILL)
        code, _out, err = run.finish(timeout=180)

    assert code == 1, err
    assert "the Dask scheduler was lost while the job ran" in err
    assert "Run the job again: committed mini-batches are kept" in err
    assert "Traceback" not in err
    assert "CancelledError" not in err


def test_the_client_never_has_more_than_its_window_of_tasks_on_the_scheduler(
        dask_processes, tmp_path, write_script):
    """Item 6 and the scale issue: 3,000 mini-batches, and at no moment more than a few
    tasks per worker of this job exist on the scheduler (nothing is submitted, tokenized or
    ordered up front)."""
    cluster = dask_processes
    spec, names = file_input(tmp_path, 3_000)
    job = make_job(tmp_path, write_script, spec, 1, seconds=0.0)

    def tasks_of_daskprs(dask_scheduler=None) -> int:  # submitted and not yet finished
        return sum(1 for key, task in dask_scheduler.tasks.items()
                   if str(key).startswith("daskprs-")
                   and task.state in ("waiting", "queued", "no-worker", "processing"))

    seen = [0]
    with cli(job, cluster.address) as run:
        while run.process.poll() is None:
            seen[0] = max(seen[0], cluster.client.run_on_scheduler(tasks_of_daskprs))
        code, _out, err = run.finish()

    assert code == 0, err
    assert job.lines() == names
    assert 0 < seen[0] <= 6  # window_size(2 workers) = 3 tasks per worker
