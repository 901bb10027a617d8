"""GPU detection and assignment, without a GPU: a fake ``nvidia-smi`` on PATH, a fake
``pynvml`` module, and worker descriptions as ``Client.run(worker_gpus)`` returns them."""

from __future__ import annotations

import logging
import os
import stat
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from daskprs import ConfigError, JobResult, ParallelRunConfig
from daskprs.failures import FailureCounter
from daskprs.gpus import (
    Gpu,
    GpuPlan,
    detect_gpus,
    gpu_count,
    parse_nvidia_smi,
    plan_for_cluster,
    plan_for_this_machine,
    visible_entries,
)
from daskprs.timeline import worker_labels

UUIDS = [f"GPU-0000000{k}-aaaa-bbbb-cccc-00000000000{k}" for k in range(4)]


def smi_listing(count: int, mig: bool = False) -> str:
    """What ``nvidia-smi -L`` prints for ``count`` A100s (optionally with MIG lines)."""
    lines = []
    for k in range(count):
        lines.append(f"GPU {k}: NVIDIA A100-SXM4-40GB (UUID: {UUIDS[k]})")
        if mig:
            lines.append(f"  MIG 1g.5gb     Device  0: (UUID: MIG-{k}000-1111)")
    return "\n".join(lines) + "\n"


def fake_smi(folder: Path, count: int, mig: bool = False, exit_code: int = 0) -> dict[str, str]:
    """Put an ``nvidia-smi`` reporting ``count`` GPUs first on PATH; return that env."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    listing = smi_listing(count, mig).replace("'", "")
    script.write_text(f"#!/bin/sh\n[ \"$1\" = \"-L\" ] || exit 9\nprintf '%s' '{listing}'\n"
                      f"exit {exit_code}\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


@pytest.fixture(autouse=True)
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``pynvml`` that finds no driver (as on this machine), so nvidia-smi is asked."""
    broken = types.ModuleType("pynvml")

    def init() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    broken.nvmlInit = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", broken)


def test_nvidia_smi_with_two_gpus_is_detected(tmp_path: Path) -> None:
    gpus = detect_gpus(fake_smi(tmp_path, 2))
    assert gpus == [Gpu("0", "NVIDIA A100-SXM4-40GB", UUIDS[0]),
                    Gpu("1", "NVIDIA A100-SXM4-40GB", UUIDS[1])]


def test_nvidia_smi_with_four_gpus_and_mig_lines_gives_four_devices(tmp_path: Path) -> None:
    assert [g.index for g in detect_gpus(fake_smi(tmp_path, 4, mig=True))] == ["0", "1", "2", "3"]


def test_no_nvidia_smi_on_path_means_no_gpus(tmp_path: Path) -> None:
    assert detect_gpus({"PATH": str(tmp_path)}) == []


def test_nvidia_smi_without_a_driver_means_no_gpus(tmp_path: Path) -> None:
    assert detect_gpus(fake_smi(tmp_path, 2, exit_code=9)) == []


def test_nvml_is_asked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = types.ModuleType("pynvml")
    calls: list[str] = []
    nvml.nvmlInit = lambda: calls.append("init")  # type: ignore[attr-defined]
    nvml.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetCount = lambda: 3  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100"  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetUUID = lambda h: f"GPU-h100-{h}"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus = detect_gpus(fake_smi(tmp_path, 2))  # nvidia-smi would say 2
    assert gpus == [Gpu(str(k), "NVIDIA H100", f"GPU-h100-{k}") for k in range(3)]
    assert calls == ["init", "shutdown"]


def test_cuda_visible_devices_of_the_client_narrows_detection(tmp_path: Path) -> None:
    env = fake_smi(tmp_path, 4)
    assert [g.index for g in detect_gpus({**env, "CUDA_VISIBLE_DEVICES": "3,1"})] == ["3", "1"]
    assert detect_gpus({**env, "CUDA_VISIBLE_DEVICES": ""}) == []
    by_uuid = detect_gpus({**env, "CUDA_VISIBLE_DEVICES": UUIDS[2][:12]})
    assert [(g.index, g.uuid) for g in by_uuid] == [(UUIDS[2][:12], UUIDS[2])]


def test_visible_entries_stop_at_the_first_invalid_entry() -> None:
    assert visible_entries(None) is None
    assert visible_entries("") == []
    assert visible_entries("-1") == []
    assert visible_entries("0,2,-1,3") == ["0", "2"]


def test_parse_nvidia_smi_reads_names_without_uuid() -> None:
    assert parse_nvidia_smi("GPU 0: Tesla T4\n") == [Gpu("0", "Tesla T4", "")]


# ---------------------------------------------------------------- embedded cluster

def test_each_worker_slot_of_an_embedded_cluster_gets_its_own_gpu(tmp_path: Path) -> None:
    plan = plan_for_this_machine(None, None, 1, fake_smi(tmp_path, 4))
    assert plan.processes(1, None) == 4
    assert [plan.runner_devices(k, {}) for k in range(4)] == ["0", "1", "2", "3"]
    # by slot, not start order: asking again, in another order, gives the same devices
    assert [plan.runner_devices(k, {}) for k in (3, 1, 0, 2)] == ["3", "1", "0", "2"]


def test_gpus_per_process_gives_each_runner_a_group(tmp_path: Path) -> None:
    plan = plan_for_this_machine(2, None, 1, fake_smi(tmp_path, 4))
    assert plan.processes(1, None) == 2
    assert [plan.runner_devices(k, {}) for k in range(2)] == ["0,1", "2,3"]


def test_process_count_set_by_the_user_is_kept(tmp_path: Path) -> None:
    plan = plan_for_this_machine(None, 3, 1, fake_smi(tmp_path, 4))
    assert plan.processes(1, 3) is None  # the config's own count applies


def test_processes_beyond_the_gpus_get_none(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="daskprs.gpus"):
        plan = plan_for_this_machine(None, 4, 1, fake_smi(tmp_path, 2))
    assert [plan.runner_devices(k, {}) for k in range(4)] == ["0", "1", "", ""]
    assert ("4 worker processes (node_count 1 x process_count_per_node 4) > 2 GPU groups of 1: "
            "workers 2 and above get no GPU (CUDA_VISIBLE_DEVICES='')") in caplog.text


def test_every_node_of_an_embedded_cluster_shares_this_machines_gpus(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="daskprs.gpus"):
        plan = plan_for_this_machine(None, None, 2, fake_smi(tmp_path, 2))
    assert plan.processes(2, None) == 4
    assert [plan.runner_devices(k, {}) for k in range(4)] == ["0", "1", "", ""]
    assert "4 worker processes (node_count 2 x process_count_per_node 2) > 2 GPU groups" \
        in caplog.text


def test_no_gpus_leaves_the_runners_environment_alone(tmp_path: Path) -> None:
    plan = plan_for_this_machine(None, None, 1, {"PATH": str(tmp_path)})
    assert plan.processes(1, None) is None
    assert plan.runner_devices(0, {"CUDA_VISIBLE_DEVICES": "5"}) is None


def test_gpus_per_process_zero_hides_the_gpus(tmp_path: Path) -> None:
    plan = plan_for_this_machine(0, None, 1, fake_smi(tmp_path, 2))
    assert plan.runner_devices(0, {}) == ""
    assert plan.processes(1, None) is None


def test_asking_for_gpus_on_a_machine_without_any_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        plan_for_this_machine(1, None, 1, {"PATH": str(tmp_path)})
    assert str(error.value) == (
        "invalid configuration, 1 problem:\n  - gpus_per_process (parallel_run_config): asks "
        "for 1 GPU per process, but this machine has no GPU (NVML, nvidia-smi -L), got 1. Run "
        "on a machine or cluster with GPUs (--scheduler tcp://HOST:8786), or remove "
        "gpus_per_process to run on CPUs.")


def test_asking_for_more_gpus_than_the_machine_has_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="asks for 4 GPUs per process, but this machine has "
                                          "2 GPUs"):
        plan_for_this_machine(4, None, 1, fake_smi(tmp_path, 2))


# ---------------------------------------------------------------- existing clusters

def _worker(cvd: str | None = None, resource: float = 0, dask_cuda: bool = False) -> dict:
    return {"cuda_visible_devices": cvd, "gpu_resource": resource, "dask_cuda": dask_cuda}


def test_resource_workers_are_reached_through_resources() -> None:
    plan = plan_for_cluster(1, {"tcp://a": _worker("1", 1), "tcp://b": _worker()})
    assert plan.submit_options(None) == {"resources": {"GPU": 1}}
    assert plan.runner_devices("a", {"CUDA_VISIBLE_DEVICES": "1"}) == "1"


def test_dask_cuda_workers_are_named_and_use_their_first_device() -> None:
    workers = {"tcp://a": _worker("0,1", dask_cuda=True),
               "tcp://b": _worker("1,0", dask_cuda=True), "tcp://c": _worker()}
    assert [gpu_count(info) for info in workers.values()] == [1, 1, 0]
    plan = plan_for_cluster(1, workers)
    assert plan.submit_options(None) == {"workers": ["tcp://a", "tcp://b"],
                                         "allow_other_workers": False}
    assert plan.runner_devices("b", {"CUDA_VISIBLE_DEVICES": "1,0"}) == "1"
    # a mini-batch an unhealthy worker gave away stays on GPU workers
    assert plan.submit_options(["tcp://b", "tcp://c"]) == {"workers": ["tcp://b"],
                                                           "allow_other_workers": False}


def test_without_gpus_asked_for_a_gpu_worker_still_narrows_its_runner() -> None:
    plan = plan_for_cluster(None, {"tcp://a": _worker("2,3,0,1", dask_cuda=True)})
    assert plan.submit_options(None) == {}
    assert plan.submit_options(["tcp://a"]) == {"workers": ["tcp://a"],
                                                "allow_other_workers": True}
    assert plan.runner_devices("a", {"CUDA_VISIBLE_DEVICES": "2,3,0,1"}) == "2"
    assert plan.runner_devices("a", {}) is None


def test_asking_for_gpus_on_a_cluster_without_any_fails_with_the_fix() -> None:
    with pytest.raises(ConfigError) as error:
        plan_for_cluster(1, {"tcp://a": _worker(), "tcp://b": _worker()})
    assert str(error.value) == (
        "invalid configuration, 1 problem:\n  - gpus_per_process (parallel_run_config): asks "
        "for 1 GPU per process, but no worker of the cluster's 2 has any (most: 0), got 1. "
        "Start GPU workers with 'dask cuda worker tcp://HOST:8786' or 'CUDA_VISIBLE_DEVICES=0 "
        "dask worker tcp://HOST:8786 --resources GPU=1', or remove gpus_per_process to run on "
        "CPUs.")


def test_asking_for_more_gpus_than_any_worker_has_fails() -> None:
    with pytest.raises(ConfigError, match="no worker of the cluster's 1 has that many "
                                          r"\(most: 1\)"):
        plan_for_cluster(2, {"tcp://a": _worker("0", 1)})


def test_plan_travels_to_workers_by_pickle() -> None:
    import pickle

    plan = GpuPlan(2, "local", ("0", "1", "2", "3"))
    assert pickle.loads(pickle.dumps(plan)) == plan


# ---------------------------------------------------------------- parameter and reports

@pytest.mark.parametrize("value", [-1, 1.5, "two", True])
def test_gpus_per_process_must_be_a_count(value: object) -> None:
    with pytest.raises(ConfigError, match=r"gpus_per_process \(keyword argument\): must be"):
        ParallelRunConfig(entry_script=lambda: None, gpus_per_process=value)


def test_the_job_result_names_the_devices_used() -> None:
    counter = FailureCounter(1)
    attempts = [{"attempt": 1, "worker": "worker-1", "status": "timed_out", "error": "x",
                 "device": "1"},
                {"attempt": 2, "worker": "worker-1", "status": "succeeded", "error": "",
                 "device": "1"}]
    counter.add({"id": "mb-0", "input": "i", "first_item": 0, "last_item": 1, "items": 2,
                 "succeeded": 2, "failed": 0, "status": "succeeded", "attempts": attempts})
    assert counter.devices == {"worker-1": "1"}
    result = JobResult("Completed", devices=counter.devices)
    assert "GPUs: worker-1 1" in result.summary().splitlines()
    assert JobResult.from_dict(result.to_dict()).devices == {"worker-1": "1"}


def test_timeline_labels_each_worker_with_its_gpus() -> None:
    rows = pd.DataFrame({"worker": ["worker-0", "worker-1", "worker-2"],
                         "device": ["0", "1,2", ""]})
    assert worker_labels(rows, ["worker-0", "worker-1", "worker-2"]) == [
        "worker-0 (GPU 0)", "worker-1 (GPU 1,2)", "worker-2"]
    assert worker_labels(rows.drop(columns="device"), ["worker-0"]) == ["worker-0"]


# ---------------------------------------------------------------- the example script

def test_the_gpu_example_scores_on_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    import importlib.util

    from tests.conftest import make_frame

    path = Path(__file__).resolve().parents[2] / "examples" / "gpu" / "score.py"
    spec = importlib.util.spec_from_file_location("gpu_example_score", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    monkeypatch.chdir(tmp_path)  # EntryScript's log folder outside a job: ./daskprs-local
    monkeypatch.setattr(sys, "argv", ["score.py", "--batch-size", "300", "--hidden", "16"])
    module.init()
    frame = make_frame(1000, start=5)
    scored = module.run(frame)
    assert scored["id"].tolist() == list(range(5, 1005))
    assert scored["score"].between(0, 1).all()
    reference = module.build_model(3, 16, "numpy")(frame[["f0", "f1", "f2"]].to_numpy("float32"))
    assert scored["score"].to_numpy() == pytest.approx(reference, rel=1e-5)
    assert len(module.run(frame.iloc[:0])) == 0


def test_a_worker_that_cannot_answer_counts_as_having_no_gpu() -> None:
    from daskprs.gpus import inspect_cluster

    class Client:
        def run(self, function: object, on_error: str) -> dict:
            assert on_error == "return"
            return {"tcp://a": _worker("0", 1), "tcp://b": OSError("worker left")}

    plan = inspect_cluster(Client(), 1)
    assert plan.submit_options(None) == {"resources": {"GPU": 1}}
