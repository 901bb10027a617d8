"""GPU placement end to end, on a machine without a GPU.

The embedded cluster sees a fake ``nvidia-smi`` on ``PATH``; an existing cluster has a real
``dask worker --resources GPU=1`` process started with its own ``CUDA_VISIBLE_DEVICES``.
The entry script returns, for each file, the runner's pid and the ``CUDA_VISIBLE_DEVICES``
it sees, so every check reads what ``run()`` itself saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from daskprs import ConfigError, Dataset, ParallelRunConfig, ParallelRunStep
from tests.integration.test_clusters import DEADLINE, DaskProcesses
from tests.unit.test_gpus import fake_smi

FILES = 8
SCRIPT = """
import os
import time

import pandas as pd


def _hang_once():
    # with HANG_ONCE, the first run() anywhere hangs (past run_invocation_timeout): its
    # runner is killed and replaced, and the next attempt runs in the new runner
    if not os.environ.get("HANG_ONCE"):
        return
    try:
        handle = os.open(os.path.join(os.environ["SIGNALS"], "hung"),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(handle, str(os.getpid()).encode())
    os.close(handle)
    time.sleep(60)


def run(mini_batch, mini_batch_context):
    _hang_once()
    device = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    return pd.DataFrame({"file": [os.path.basename(p) for p in mini_batch],
                         "pid": str(os.getpid()), "device": device})
"""


def make_files(folder: Path, count: int = FILES) -> Path:
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"item-{number:02d}.txt").write_text(str(number), encoding="utf-8")
    return folder


def make_step(tmp_path: Path, write_script: Callable[..., Path], hang_once: bool = False,
              **config: object) -> ParallelRunStep:
    signals = tmp_path / "signals"
    signals.mkdir()
    source = write_script(tmp_path, SCRIPT)
    variables = {"SIGNALS": str(signals), **({"HANG_ONCE": "1"} if hang_once else {})}
    parallel = ParallelRunConfig(entry_script="score.py", source_directory=str(source),
                                 mini_batch_size=1, environment_variables=variables,
                                 **config)
    inputs = [Dataset.File.from_files(str(make_files(tmp_path / "data"))).as_named_input("f")]
    return ParallelRunStep("gpu-check", parallel, inputs, output=str(tmp_path / "out"))


def seen_by_run(output: Path) -> pd.DataFrame:
    """What each run() saw: file, runner pid, CUDA_VISIBLE_DEVICES."""
    return pd.read_csv(output / "parallel_run_step.txt", sep=" ", header=None,
                       names=["file", "pid", "device"], dtype=str, keep_default_na=False)


def attempts(output: Path) -> pd.DataFrame:
    return pd.read_csv(output / "logs" / "sys" / "mini_batches.csv", dtype=str,
                       keep_default_na=False)


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Make this machine report ``n`` GPUs (and 8 cores, so that a worker count of the
    number of GPUs cannot be the default of one per core)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML absent: nvidia-smi answers

    def install(count: int) -> None:
        monkeypatch.setenv("PATH", fake_smi(tmp_path / "bin", count)["PATH"])

    return install


def test_each_runner_sees_its_own_gpu_also_after_a_timeout_restart(
        tmp_path: Path, write_script: Callable[..., Path], fake_gpus: Callable[[int], None]
) -> None:
    fake_gpus(2)
    result = make_step(tmp_path, write_script, hang_once=True, compute_target="local",
                       run_invocation_timeout=3).run(progress=False)
    assert result.succeeded, result.summary()
    output = tmp_path / "out"
    seen = seen_by_run(output)
    assert sorted(seen["file"]) == [f"item-{n:02d}.txt" for n in range(FILES)]
    assert set(seen["device"]) == {"0", "1"}  # one worker per GPU, not one per core
    assert (seen.groupby("pid")["device"].nunique() == 1).all()
    rows = attempts(output)
    assert (rows.groupby("worker")["device"].nunique() == 1).all()
    assert dict(zip(rows["worker"], rows["device"], strict=True)) == {"worker-0": "0",
                                                                       "worker-1": "1"}
    timed_out = rows[rows["status"] == "timed_out"]
    assert len(timed_out) == 1
    hung = timed_out.iloc[0]
    retry = rows[(rows["mini_batch_id"] == hung["mini_batch_id"])
                 & (rows["status"] == "succeeded")].iloc[0]
    assert (retry["worker"], retry["device"]) == (hung["worker"], hung["device"])
    hung_pid = (tmp_path / "signals" / "hung").read_text(encoding="utf-8")
    assert hung["pid"] == hung_pid and retry["pid"] != hung_pid  # a new runner
    after = seen[seen["pid"] == retry["pid"]]
    assert set(after["device"]) == {hung["device"]}  # the same GPU as before the restart
    assert result.devices == {"worker-0": "0", "worker-1": "1"}
    saved = json.loads((output / "logs" / "job_result.json").read_text(encoding="utf-8"))
    assert saved["devices"] == {"worker-0": "0", "worker-1": "1"}


def test_gpus_per_process_gives_each_runner_a_pair_of_four(
        tmp_path: Path, write_script: Callable[..., Path], fake_gpus: Callable[[int], None]
) -> None:
    fake_gpus(4)
    result = make_step(tmp_path, write_script, compute_target="local",
                       gpus_per_process=2).run(progress=False)
    assert result.succeeded, result.summary()
    assert result.devices == {"worker-0": "0,1", "worker-1": "2,3"}
    seen = seen_by_run(tmp_path / "out")
    assert len(seen) == FILES
    assert set(seen["device"]) == {"0,1", "2,3"}


def test_asking_for_gpus_without_any_fails_before_a_cluster_starts(
        tmp_path: Path, write_script: Callable[..., Path], fake_gpus: Callable[[int], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(0)

    def no_cluster(*args: object, **kwargs: object) -> None:
        raise AssertionError("a LocalCluster was started")

    monkeypatch.setattr("daskprs.cluster.LocalCluster", no_cluster)
    step = make_step(tmp_path, write_script, compute_target="local", gpus_per_process=1)
    with pytest.raises(ConfigError) as error:
        step.run(progress=False)
    assert str(error.value).endswith(
        "asks for 1 GPU per process, but this machine has no GPU (NVML, nvidia-smi -L), got 1."
        " Run on a machine or cluster with GPUs (--scheduler tcp://HOST:8786), or remove "
        "gpus_per_process to run on CPUs.")


def test_asking_for_gpus_on_a_cluster_without_any_fails_before_work_starts(
        tmp_path: Path, write_script: Callable[..., Path], client: object) -> None:
    step = make_step(tmp_path, write_script, gpus_per_process=1)
    with pytest.raises(ConfigError) as error:
        step.run(client=client, progress=False)
    assert "gpus_per_process (parallel_run_config): asks for 1 GPU per process, but no " \
           "worker of the cluster's 2 has any (most: 0), got 1. Start GPU workers with " \
           "'dask cuda worker tcp://HOST:8786'" in str(error.value)
    assert len(attempts(tmp_path / "out")) == 0  # no mini-batch ran


# ---------------------------------------------------------------- real dask workers

def start_gpu_worker(cluster: DaskProcesses, name: str, devices: str) -> None:
    """A real ``dask worker --resources GPU=1`` with its own ``CUDA_VISIBLE_DEVICES``."""
    folder = cluster.folder / name
    folder.mkdir()
    with open(cluster.folder / f"{name}.log", "wb") as log:
        cluster.workers.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.address, "--host",
             "127.0.0.1", "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name",
             name, "--resources", "GPU=1", "--local-directory", str(folder)],
            env={**os.environ, "CUDA_VISIBLE_DEVICES": devices}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cluster.folder,
            start_new_session=True))


@pytest.fixture
def gpu_and_cpu_workers(tmp_path: Path) -> Iterator[DaskProcesses]:
    """A real scheduler, a plain worker and a ``--resources GPU=1`` worker on GPU 1."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    cluster = DaskProcesses(folder)
    try:
        cluster.start_scheduler()
        cluster.start_worker()
        start_gpu_worker(cluster, "gpu-worker", "1")
        cluster.client.wait_for_workers(2, timeout=DEADLINE)
        yield cluster
    finally:
        orphans = cluster.stop()
    if orphans:
        pytest.fail(f"processes left running after teardown (killed now): {orphans}")


def test_a_gpu_job_runs_only_on_the_gpu_worker_of_a_mixed_cluster(
        tmp_path: Path, write_script: Callable[..., Path],
        gpu_and_cpu_workers: DaskProcesses) -> None:
    step = make_step(tmp_path, write_script, gpus_per_process=1)
    result = step.run(client=gpu_and_cpu_workers.address, progress=False)
    assert result.succeeded, result.summary()
    seen = seen_by_run(tmp_path / "out")
    assert len(seen) == FILES and set(seen["device"]) == {"1"}
    rows = attempts(tmp_path / "out")
    assert set(rows["worker"]) == {"gpu-worker"} and set(rows["device"]) == {"1"}
    assert result.devices == {"gpu-worker": "1"}
