"""Stall guards: fail a job that waits for something that will not come.

Two clocks run on the client while the job dispatches mini-batches:

- ``first_mini_batch_timeout``: from the start of dispatching until some worker starts an
  attempt. When it runs out, the job fails with what it waited for (no worker joined, every
  ``init()`` still running, every worker unhealthy, ...), asked of the workers themselves.
- ``no_progress_timeout``: after the first attempt started, the time since the last
  progress, which is a mini-batch committed or an attempt started (a task commits its
  mini-batches once, at its end, so a long task shows its progress by the attempts it
  starts). When it runs out while work remains, the job fails naming the mini-batches in
  flight and their workers.

A hung ``init()`` is bounded on the worker (``init_timeout``, :mod:`daskprs.worker.plugin`).
Attempts announce themselves with a scheduler event (:func:`daskprs.worker.wrapper.event_topic`);
:meth:`StallGuard.on_event` takes them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("daskprs")
ASK_WORKERS_SECONDS = 10.0
SHOWN = 10
MAX_INIT_TRIES = 3  # as daskprs.worker.plugin.MAX_INIT_FAILURES (not imported: no worker code)
EXTRA_SECONDS = 600.0


def default_first_mini_batch_timeout(init_timeout: float) -> float:
    """``first_mini_batch_timeout`` when unset: every ``init()`` try of a worker timing out,
    plus 600 s for workers to join and the first mini-batch to be read or downloaded."""
    return MAX_INIT_TRIES * init_timeout + EXTRA_SECONDS


def default_no_progress_timeout(run_invocation_timeout: float, init_timeout: float) -> float:
    """``no_progress_timeout`` when unset: the longest a healthy attempt can keep a worker
    busy without starting another (the hand-over bound ``3 × run_invocation_timeout + 30``,
    ``run()`` itself, a replacement runner's ``init()`` tries), plus 600 s for downloads and
    commits."""
    handover = 3 * run_invocation_timeout + 30
    return handover + run_invocation_timeout + MAX_INIT_TRIES * init_timeout + EXTRA_SECONDS


class StallGuard:
    """The two clocks of a job; :meth:`check` says why the job must stop, if it must.

    Parameters
    ----------
    client
        The job's ``distributed.Client``.
    plugin_name
        The job's WorkerPlugin name (to ask workers how their ``init()`` goes).
    first_mini_batch_timeout, no_progress_timeout
        Seconds.
    clock
        Monotonic seconds (a parameter for tests).
    """

    def __init__(self, client: Any, plugin_name: str, first_mini_batch_timeout: float,
                 no_progress_timeout: float, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.client = client
        self.plugin_name = plugin_name
        self.first_timeout = first_mini_batch_timeout
        self.progress_timeout = no_progress_timeout
        self.clock = clock
        self.started = clock()
        self.first_attempt: float | None = None
        self.progress = self.started
        self.in_flight: dict[str, tuple[str, int, float]] = {}  # id -> (agent, attempt, since)
        self.lock = threading.Lock()

    def on_event(self, message: dict[str, Any]) -> None:
        """An attempt started (a scheduler event of the job's topic)."""
        if not isinstance(message, dict) or "id" not in message:
            return
        now = self.clock()
        with self.lock:
            self.first_attempt = self.first_attempt or now
            self.progress = now
            self.in_flight[message["id"]] = (str(message.get("agent") or message.get(
                "worker") or "?"), int(message.get("attempt") or 0), now)

    def on_record(self, mini_batch_id: str) -> None:
        """A mini-batch's record arrived (it committed, or failed for good)."""
        with self.lock:
            self.progress = self.clock()
            self.first_attempt = self.first_attempt or self.progress  # an event may be lost
            self.in_flight.pop(mini_batch_id, None)

    def check(self) -> str | None:
        """The reason the job fails now, or None."""
        now = self.clock()
        with self.lock:
            first, progress = self.first_attempt, self.progress
            flight = sorted(self.in_flight.items(), key=lambda item: item[1][2])
        if first is None:
            if now - self.started > self.first_timeout:
                return (f"first_mini_batch_timeout: no worker started a mini-batch within "
                        f"{self.first_timeout:g} s; {self.waiting_for()}. Raise "
                        f"first_mini_batch_timeout if that is expected.")
            return None
        if now - progress > self.progress_timeout:
            shown = ", ".join(f"{mb_id} (attempt {attempt} on {agent}, started "
                              f"{now - since:.0f} s ago)"
                              for mb_id, (agent, attempt, since) in flight[:SHOWN])
            more = f" and {len(flight) - SHOWN} more" if len(flight) > SHOWN else ""
            waiting = (f"in flight: {shown}{more}" if flight else
                       "no mini-batch is in flight (the tasks wait in the scheduler; "
                       "check that workers are alive: logs/sys/client.txt)")
            return (f"no_progress_timeout: nothing committed and no attempt started for "
                    f"{self.progress_timeout:g} s while work remains; {waiting}. See "
                    f"logs/sys/workers/ and logs/user/; raise no_progress_timeout if "
                    f"mini-batches legitimately take longer.")
        return None

    def waiting_for(self) -> str:
        """What the job is waiting for before its first mini-batch, asked of the cluster."""
        try:
            workers = self.client.scheduler_info()["workers"]
        except Exception as exc:  # the scheduler cannot answer
            return f"the scheduler does not answer ({type(exc).__name__}: {exc})"
        if not workers:
            address = getattr(self.client.scheduler, "address", "?")
            return f"no worker joined the cluster (scheduler {address})"
        states = self._ask_workers()
        return describe_states(len(workers), states)

    def _ask_workers(self) -> dict[str, dict[str, Any]]:
        try:
            return dict(run_on_workers(self.client, plugin_state, self.plugin_name))
        except Exception as exc:  # a worker that does not answer: say so, do not hang
            logger.warning("asking the workers how their init() goes failed: %s", exc)
            return {}


def run_on_workers(client: Any, function: Callable[..., Any], *args: Any,
                   workers: list[str] | None = None,
                   seconds: float = ASK_WORKERS_SECONDS) -> Any:
    """``client.run(function, *args)`` that gives up after ``seconds`` (a stalled worker
    must not stall the client too); raises ``TimeoutError`` then."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        future = pool.submit(client.run, function, *args, workers=workers)
        return future.result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


def describe_states(count: int, states: dict[str, dict[str, Any]]) -> str:
    """One sentence on ``count`` workers from their :func:`plugin_state` answers."""
    if not states:
        return f"{count} workers joined but did not say how their init() goes"
    groups: dict[str, list[dict[str, Any]]] = {}
    for state in states.values():
        groups.setdefault(state["state"], []).append(state)
    parts = []
    if "init" in groups:
        running = groups["init"]
        longest = max(s.get("seconds", 0.0) for s in running)
        every = "every init() still running" if len(running) == count else "init() still running"
        parts.append(f"{every} on {len(running)} of {count} workers (the longest for "
                     f"{longest:.0f} s, try {max(s.get('tries', 1) for s in running)})")
    if "unhealthy" in groups:
        first = groups["unhealthy"][0]
        parts.append(f"{len(groups['unhealthy'])} workers unhealthy ({first.get('agent')}: "
                     f"{first.get('error')})")
    if "no plugin" in groups:
        parts.append(f"{len(groups['no plugin'])} workers have not set up the job yet")
    if "ready" in groups:
        parts.append(f"{len(groups['ready'])} workers are ready but were given no mini-batch "
                     f"(see the Dask dashboard for tasks waiting in the scheduler)")
    return "; ".join(parts)


def plugin_state(plugin_name: str, dask_worker: Any = None) -> dict[str, Any]:
    """On a worker (``Client.run``): how the job's runner start goes there."""
    plugin = dask_worker.plugins.get(plugin_name) if dask_worker is not None else None
    if plugin is None or not hasattr(plugin, "ready"):
        return {"state": "no plugin"}
    agent = getattr(plugin, "agent", "?")
    if not plugin.ready.is_set():
        since = getattr(plugin, "setup_clock", None)
        seconds = time.monotonic() - since if since is not None else 0.0
        return {"state": "init", "agent": agent, "tries": plugin.init_count + 1,
                "seconds": seconds}
    if plugin.init_error:
        return {"state": "unhealthy", "agent": agent,
                "error": str(plugin.init_error).splitlines()[0]}
    return {"state": "ready", "agent": agent}


__all__ = ["StallGuard", "default_first_mini_batch_timeout",
           "default_no_progress_timeout", "describe_states", "plugin_state", "run_on_workers"]
