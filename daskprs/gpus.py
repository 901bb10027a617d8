"""GPUs: find them, and give each runner its own device(s) in ``CUDA_VISIBLE_DEVICES``.

Detection (on the client, for an embedded cluster): NVML through ``pynvml``
(``pip install nvidia-ml-py``) when it imports and finds a driver, else ``nvidia-smi -L``
on ``PATH``, else none. A ``CUDA_VISIBLE_DEVICES`` of this process narrows what was found.

Assignment is by a stable slot, never by start order:

- **embedded LocalCluster**: worker ``k`` (its Dask name) gets devices
  ``[k * gpus_per_process, (k + 1) * gpus_per_process)``; a worker beyond the last whole
  group gets ``CUDA_VISIBLE_DEVICES=""`` (no GPU). A runner replaced after a timeout or a
  crash, and a worker restarted under the same name, get the same devices.
- **existing cluster**: a worker started by dask-cuda, or with its own
  ``CUDA_VISIBLE_DEVICES``, gives its runner the first ``gpus_per_process`` of its devices.
  A job that asks for GPUs (``gpus_per_process >= 1``) runs only on GPU workers: through
  ``Client.submit(resources={"GPU": n})`` when they declare ``--resources GPU=n``, else
  through ``workers=``; never through collection annotations, which graph optimisation
  can drop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Literal

from daskprs.errors import ConfigError, Problem

logger = logging.getLogger(__name__)

CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
GPU_RESOURCE = "GPU"
_SMI_TIMEOUT = 20.0
_SMI_LINE = re.compile(r"^GPU (\d+): (.*?)(?: \(UUID: ([^)]+)\))?\s*$")
# dask-cuda's worker plugins (registered under "<class name>-<uuid>")
_DASK_CUDA_PLUGINS = ("CPUAffinity", "RMMSetup", "RMMPool", "CUDFSetup", "PreImport")
_SOURCE = "parallel_run_config"


@dataclass(frozen=True)
class Gpu:
    """One GPU as detection found it.

    Parameters
    ----------
    index
        The device index (what ``CUDA_VISIBLE_DEVICES`` takes).
    name
        The model, e.g. ``NVIDIA A100-SXM4-40GB``.
    uuid
        ``GPU-...``, or '' when unknown.
    """

    index: str
    name: str = ""
    uuid: str = ""


def detect_gpus(env: dict[str, str] | None = None) -> list[Gpu]:
    """The GPUs this process may use: NVML, else ``nvidia-smi -L``, else none.

    Parameters
    ----------
    env
        The environment to read ``PATH`` and ``CUDA_VISIBLE_DEVICES`` from (default:
        ``os.environ``).
    """
    env = dict(os.environ if env is None else env)
    found = _nvml_gpus()
    if found is None:
        found = _smi_gpus(env.get("PATH"))
    return narrow_to_visible(found, env.get(CUDA_VISIBLE_DEVICES))


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """The GPUs of ``nvidia-smi -L`` output (``GPU 0: NVIDIA A100 (UUID: GPU-...)``); the
    indented MIG lines are skipped."""
    gpus = []
    for line in text.splitlines():
        found = _SMI_LINE.match(line)
        if found:
            gpus.append(Gpu(found.group(1), found.group(2).strip(), found.group(3) or ""))
    return gpus


def visible_entries(value: str | None) -> list[str] | None:
    """The entries of a ``CUDA_VISIBLE_DEVICES`` value; None when it is unset (every GPU
    visible), ``[]`` when it hides every GPU ('' or ``-1``)."""
    if value is None:
        return None
    entries = [entry.strip() for entry in value.split(",")]
    visible = []
    for entry in entries:
        if not entry or entry.startswith("-"):  # CUDA stops at the first invalid entry
            break
        visible.append(entry)
    return visible


def narrow_to_visible(gpus: list[Gpu], value: str | None) -> list[Gpu]:
    """``gpus`` as a ``CUDA_VISIBLE_DEVICES`` of ``value`` leaves them: in its order, by
    index or UUID (prefix), keeping the entry as written as the device's id."""
    entries = visible_entries(value)
    if entries is None:
        return list(gpus)
    chosen = []
    for entry in entries:
        match = next((g for g in gpus if entry == g.index
                      or (g.uuid and g.uuid.startswith(entry) and entry.startswith("GPU-"))),
                     None)
        if match is None:
            break
        chosen.append(Gpu(entry, match.name, match.uuid))
    return chosen


def _nvml_gpus() -> list[Gpu] | None:
    """The GPUs NVML reports; None when ``pynvml`` is missing or finds no driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # pynvml.NVMLError: no driver, no library
        return None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(Gpu(str(index), _text(pynvml.nvmlDeviceGetName(handle)),
                            _text(pynvml.nvmlDeviceGetUUID(handle))))
        return gpus
    except Exception as exc:  # a driver that answers badly: let nvidia-smi try
        logger.debug("NVML failed (%s); trying nvidia-smi", exc)
        return None
    finally:
        with contextlib.suppress(Exception):  # shut down already
            pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _smi_gpus(path: str | None) -> list[Gpu]:
    program = shutil.which("nvidia-smi", path=path)
    if program is None:
        return []
    try:
        done = subprocess.run([program, "-L"], capture_output=True, text=True,
                              timeout=_SMI_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("nvidia-smi -L failed (%s): no GPUs are used", exc)
        return []
    if done.returncode != 0:  # installed without a working driver
        logger.info("nvidia-smi -L exited with %s: no GPUs are used", done.returncode)
        return []
    return parse_nvidia_smi(done.stdout)


@dataclass(frozen=True)
class GpuPlan:
    """Which devices each runner of a job gets; it travels to the workers in the plugin.

    Parameters
    ----------
    gpus_per_process
        The parameter: None (use GPUs where there are some), 0 (hide them), n >= 1
        (each runner needs n; the job runs only where there are some).
    mode
        ``off`` (leave ``CUDA_VISIBLE_DEVICES`` as the worker has it), ``hide``,
        ``local`` (embedded cluster: by worker slot from ``devices``) or ``worker``
        (existing cluster: from each worker's own ``CUDA_VISIBLE_DEVICES``).
    devices
        The device ids of this machine (``local``).
    placement
        ``Client.submit`` keywords that keep tasks on GPU workers (existing cluster).
    """

    gpus_per_process: int | None = None
    mode: Literal["off", "hide", "local", "worker"] = "off"
    devices: tuple[str, ...] = ()
    placement: dict[str, Any] = field(default_factory=dict)

    @property
    def per_process(self) -> int:
        """Devices per runner (1 unless ``gpus_per_process`` says more)."""
        return self.gpus_per_process or 1

    def processes(self, node_count: int, process_count_per_node: int | None) -> int | None:
        """The worker processes of an embedded cluster when GPUs decide them: one per
        ``gpus_per_process`` devices, per node, unless ``process_count_per_node`` is set."""
        if self.mode != "local" or process_count_per_node is not None:
            return None
        return node_count * (len(self.devices) // self.per_process)

    def runner_devices(self, worker_name: Any, env: dict[str, str]) -> str | None:
        """The ``CUDA_VISIBLE_DEVICES`` of a worker's runners, or None to leave it as the
        worker has it.

        Parameters
        ----------
        worker_name
            The Dask worker's name (an embedded cluster's are ``0 .. n-1``: the slot).
        env
            The worker's environment.
        """
        if self.mode == "hide":
            return ""
        if self.mode == "local":
            text = str(worker_name)
            if not text.isdigit():
                return None
            slot, size = int(text), self.per_process
            chosen = self.devices[slot * size:(slot + 1) * size]
            return ",".join(chosen) if len(chosen) == size else ""
        if self.mode == "worker":
            entries = visible_entries(env.get(CUDA_VISIBLE_DEVICES))
            if entries is None:
                return None
            return ",".join(entries[:self.per_process])
        return None

    def submit_options(self, workers: list[str] | None) -> dict[str, Any]:
        """``Client.submit`` keywords: the placement on GPU workers, and ``workers`` (the
        healthy workers a mini-batch is sent on to) within it."""
        options: dict[str, Any] = dict(self.placement)
        if workers:
            allowed = options.get("workers")
            chosen = [w for w in workers if allowed is None or w in allowed]
            options.update(workers=chosen or list(allowed or workers),
                           allow_other_workers=allowed is None)
        return options


NO_GPUS = GpuPlan()  # leave CUDA_VISIBLE_DEVICES as the workers have it


def plan_for_this_machine(gpus_per_process: int | None, process_count_per_node: int | None,
                          node_count: int, env: dict[str, str] | None = None) -> GpuPlan:
    """The plan of an embedded cluster (or ``inline``): detect this machine's GPUs.

    Raises
    ------
    ConfigError
        When ``gpus_per_process`` asks for more GPUs than this machine has.
    """
    if gpus_per_process == 0:
        return GpuPlan(0, "hide")
    gpus = detect_gpus(env)
    devices = tuple(g.index for g in gpus)
    wanted = gpus_per_process or 1
    if gpus_per_process is not None and len(devices) < wanted:
        found = f"{len(devices)} GPU{'s' * (len(devices) != 1)}" if devices else "no GPU"
        raise ConfigError([Problem(
            "gpus_per_process", _SOURCE,
            f"asks for {wanted} GPU{'s' * (wanted != 1)} per process, but this machine has "
            f"{found} (NVML, nvidia-smi -L)", gpus_per_process,
            "Run on a machine or cluster with GPUs (--scheduler tcp://HOST:8786), or remove "
            "gpus_per_process to run on CPUs")])
    if not devices:
        return GpuPlan(gpus_per_process, "off")
    plan = GpuPlan(gpus_per_process, "local", devices)
    names = ", ".join(sorted({g.name for g in gpus if g.name})) or "GPU"
    logger.info("%d GPU%s found (%s): %d per process", len(devices),
                "s" * (len(devices) != 1), names, wanted)
    whole = len(devices) // wanted
    workers = node_count * (process_count_per_node or whole)
    if workers > whole:  # one machine: its GPUs are shared by every "node"
        logger.warning("%d worker processes (node_count %d x process_count_per_node %d) > %d "
                       "GPU group%s of %d: workers %d and above get no GPU "
                       "(CUDA_VISIBLE_DEVICES='')", workers, node_count,
                       workers // node_count, whole, "s" * (whole != 1), wanted, whole)
    return plan


def worker_gpus(dask_worker: Any = None) -> dict[str, Any]:
    """``Client.run`` target: what a worker says of its GPUs (its ``CUDA_VISIBLE_DEVICES``,
    its ``GPU`` resource, whether dask-cuda started it)."""
    plugins = [str(name) for name in getattr(dask_worker, "plugins", {})]
    resources = getattr(getattr(dask_worker, "state", None), "total_resources", None)
    if resources is None:
        resources = getattr(dask_worker, "total_resources", {}) or {}
    return {"cuda_visible_devices": os.environ.get(CUDA_VISIBLE_DEVICES),
            "gpu_resource": float(resources.get(GPU_RESOURCE, 0) or 0),
            "dask_cuda": any(name.startswith(_DASK_CUDA_PLUGINS) for name in plugins)}


def gpu_count(info: dict[str, Any]) -> int:
    """The GPUs a worker has, from :func:`worker_gpus`: its ``GPU`` resource when it
    declares one, else one for a dask-cuda worker (its ``CUDA_VISIBLE_DEVICES`` lists every
    GPU, its own first), else its ``CUDA_VISIBLE_DEVICES`` entries."""
    if info.get("gpu_resource"):
        return int(info["gpu_resource"])
    if info.get("dask_cuda"):
        return min(1, len(visible_entries(info.get("cuda_visible_devices")) or []))
    return len(visible_entries(info.get("cuda_visible_devices")) or [])


def plan_for_cluster(gpus_per_process: int | None, workers: dict[str, dict[str, Any]]
                     ) -> GpuPlan:
    """The plan on a cluster daskprs did not start, from each worker's :func:`worker_gpus`.

    Raises
    ------
    ConfigError
        When ``gpus_per_process`` asks for GPUs and no worker has that many.
    """
    if gpus_per_process == 0:
        return GpuPlan(0, "hide")
    counts = {address: gpu_count(info) for address, info in workers.items()}
    if gpus_per_process is None:
        return GpuPlan(None, "worker" if any(counts.values()) else "off")
    eligible = sorted(a for a, n in counts.items() if n >= gpus_per_process)
    if not eligible:
        most = max(counts.values(), default=0)
        raise ConfigError([Problem(
            "gpus_per_process", _SOURCE,
            f"asks for {gpus_per_process} GPU{'s' * (gpus_per_process != 1)} per process, "
            f"but no worker of the cluster's {len(workers)} has "
            f"{'any' if most == 0 else 'that many'} (most: {most})", gpus_per_process,
            "Start GPU workers with 'dask cuda worker tcp://HOST:8786' or "
            "'CUDA_VISIBLE_DEVICES=0 dask worker tcp://HOST:8786 --resources GPU=1', "
            "or remove gpus_per_process to run on CPUs")])
    if all(workers[a].get("gpu_resource") for a in eligible):
        placement: dict[str, Any] = {"resources": {GPU_RESOURCE: gpus_per_process}}
    else:  # dask-cuda workers declare no resource: name them
        placement = {"workers": eligible, "allow_other_workers": False}
    logger.info("GPU workers: %d of %d (%d GPU%s per process)", len(eligible), len(workers),
                gpus_per_process, "s" * (gpus_per_process != 1))
    return GpuPlan(gpus_per_process, "worker", (), placement)


def inspect_cluster(client: Any, gpus_per_process: int | None) -> GpuPlan:
    """Ask every worker of ``client``'s cluster about its GPUs; see :func:`plan_for_cluster`
    (a worker that cannot answer, e.g. one leaving, counts as having none)."""
    if gpus_per_process == 0:
        return GpuPlan(0, "hide")
    answers = client.run(worker_gpus, on_error="return")
    return plan_for_cluster(gpus_per_process, {
        address: info if isinstance(info, dict) else {} for address, info in answers.items()})


__all__ = ["CUDA_VISIBLE_DEVICES", "NO_GPUS", "Gpu", "GpuPlan", "detect_gpus", "gpu_count",
           "inspect_cluster", "narrow_to_visible", "parse_nvidia_smi", "plan_for_cluster",
           "plan_for_this_machine", "visible_entries", "worker_gpus"]
