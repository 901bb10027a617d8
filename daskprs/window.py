"""How much work the client keeps in flight, and how many mini-batches a task carries.

A task should last long enough to hide Dask's per-task cost (1-2 ms here) and short
enough that early failures and the end of the job are seen soon: the client aims at
about 0.2 s of work per task from the mini-batch times it has seen, and never makes a
task so large that the last ones leave workers idle.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

TARGET_TASK_SECONDS = 0.2
MAX_PER_TASK = 100
TASKS_PER_WORKER = 3
_SMOOTHING = 0.2


class TaskSizer:
    """Mini-batches per task, learnt from the time mini-batches take.

    Parameters
    ----------
    first
        Mini-batches per task before any has been timed.
    remaining
        Mini-batches still to submit.
    """

    def __init__(self, first: int, remaining: int) -> None:
        self.first = first
        self.remaining = remaining
        self.seconds: float | None = None

    def observe(self, elapsed: float) -> None:
        """Take the worker time one mini-batch took."""
        elapsed = max(float(elapsed), 1e-4)
        self.seconds = elapsed if self.seconds is None else (
            (1 - _SMOOTHING) * self.seconds + _SMOOTHING * elapsed)

    def size(self, workers: int) -> int:
        """Mini-batches for the next task."""
        wanted = self.first if self.seconds is None else int(TARGET_TASK_SECONDS / self.seconds)
        balance = math.ceil(self.remaining / (2 * max(workers, 1)))
        return max(1, min(wanted, MAX_PER_TASK, balance))


def window_size(workers: int) -> int:
    """Tasks in flight: a few per worker, so none waits for the client."""
    return max(4, TASKS_PER_WORKER * max(workers, 1))


def next_group(todo: Iterator[Any], size: int, held: list[Any]) -> list[Any]:
    """Up to ``size`` consecutive mini-batches of one input from ``todo``.

    ``held`` keeps the mini-batch that started the next input between calls.
    """
    group: list[Any] = []
    while len(group) < size:
        mini_batch = held.pop() if held else next(todo, None)
        if mini_batch is None:
            break
        if group and (mini_batch.input_name != group[0].input_name
                      or mini_batch.index != group[-1].index + 1):
            held.append(mini_batch)
            break
        group.append(mini_batch)
    return group
