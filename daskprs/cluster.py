"""Where a job runs: an embedded LocalCluster, an address, a Client, or a cluster class.

Order: ``step.run(client=)`` > CLI ``--scheduler`` > ``compute_target`` > an existing
``distributed.default_client()`` > Dask's ``scheduler-address`` config > a LocalCluster.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask
from distributed import Client, LocalCluster

from daskprs.errors import ClusterError

logger = logging.getLogger(__name__)

# Dask's default (worker-saturation 1.1) sends a worker its next mini-batch only when one
# ends, which costs a round trip per task; sending all of them at once (inf) leaves the
# ones queued behind a hung run() waiting while other workers idle. Two per thread keeps
# the next mini-batch ready without queuing work behind a stuck one.
# The workers of an embedded cluster skip the statistical profiler (a sample every 10 ms
# per worker is CPU taken from run() on a small machine); the dashboard keeps the rest.
_SCHEDULER_CONFIG = {"distributed.scheduler.worker-saturation": 2.0,
                     "distributed.worker.profile.enabled": False,
                     "dataframe.convert-string": False}


@dataclass
class Connection:
    """A client to run on, and whether daskprs started (and will close) its cluster.

    ``local``: the workers share this Python environment (an embedded LocalCluster).
    """

    client: Client
    owned: bool
    threads_per_runner: int | None
    local: bool = False


@contextlib.contextmanager
def connect(target: Any, processes: int, node_count: int) -> Iterator[Connection]:
    """Yield a connection to the cluster ``target`` names; close what was started here.

    Parameters
    ----------
    target
        ``None``, ``"local"``, a scheduler address, a ``Client``, a ``Cluster``,
        ``{"class": "module.Class", "options": {...}}``, or a :class:`Connection` already
        open (a pipeline's, shared by its steps).
    processes
        Worker processes of a cluster daskprs starts.
    node_count
        Nodes (jobs) of a cluster class daskprs starts.
    """
    with dask.config.set(_SCHEDULER_CONFIG):
        if isinstance(target, Connection):  # a pipeline's one connection, shared by its steps
            yield target
        elif isinstance(target, Client):
            yield Connection(target, False, None)
        elif target is not None and hasattr(target, "scheduler_address"):
            with Client(target) as client:
                yield Connection(client, False, None)
        elif isinstance(target, str) and "://" in target:
            with _client_for_address(target) as client:
                yield Connection(client, False, None)
        elif isinstance(target, str) and target != "local":  # config and step.run refuse it
            raise ClusterError(f"compute_target: not a scheduler address, got {target!r}. "
                               f"Use 'local' or an address such as 'tcp://host:8786'.")
        elif isinstance(target, dict):
            with _cluster_class(target, processes, node_count) as connection:
                yield connection
        elif target is None and _default_client() is not None:
            yield Connection(_default_client(), False, None)
        elif target is None and dask.config.get("scheduler-address", None):
            with _client_for_address(dask.config.get("scheduler-address")) as client:
                yield Connection(client, False, None)
        else:
            with _local_cluster(processes) as connection:
                yield connection


def starts_local_cluster(target: Any) -> bool:
    """Whether :func:`connect` would start an embedded LocalCluster for ``target``."""
    if target == "local":
        return True
    if target is not None:
        return False
    return _default_client() is None and not dask.config.get("scheduler-address", None)


def _default_client() -> Client | None:
    try:
        from distributed import default_client

        return default_client()
    except ValueError:
        return None


@contextlib.contextmanager
def _client_for_address(address: str) -> Iterator[Client]:
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"scheduler {address!r} cannot be reached ({exc}). Start it with "
                           f"'dask scheduler', check the address, or leave --scheduler unset "
                           f"to run on this machine.") from exc
    with client:
        yield client


@contextlib.contextmanager
def _local_cluster(processes: int) -> Iterator[Connection]:
    cores = os.cpu_count() or 1
    # ":0": a free port; None would still bind the default port 8787 and warn when taken
    with _sigint_ignored():
        cluster = LocalCluster(n_workers=processes, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        with Client(cluster) as client:
            yield Connection(client, True, max(1, cores // processes), local=True)
    finally:
        cluster.close()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Start worker processes with Ctrl-C ignored (an ignored signal stays ignored across
    exec): a terminal's Ctrl-C reaches the client alone, which cancels the job and closes
    the cluster, instead of every worker printing its own KeyboardInterrupt."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals cannot be changed here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _cluster_class(target: dict[str, Any], processes: int, node_count: int
                   ) -> Iterator[Connection]:
    module_name, _, class_name = str(target["class"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        package = module_name.split(".")[0].replace("_", "-")
        raise ClusterError(f"compute_target.class: cannot import {module_name!r} ({exc}). "
                           f"Install it: pip install {package}") from exc
    except AttributeError as exc:
        raise ClusterError(f"compute_target.class: {module_name!r} has no {class_name!r}. "
                           f"Check the class name.") from exc
    cluster = cls(**dict(target.get("options") or {}))
    try:
        try:
            cluster.scale(jobs=node_count)
        except TypeError:
            cluster.scale(processes)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=300)
            yield Connection(client, True, None)
    finally:
        cluster.close()
