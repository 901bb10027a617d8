"""A ParallelRunStep built when it is about to run: a step whose configuration can only be
read once the steps before it have written their outputs (an Azure v2 parallel node whose
MLTable input another node writes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daskprs.step import ParallelRunStep


class DeferredStep:
    """A parallel step known by its name and the placeholders it reads and writes.

    Parameters
    ----------
    name
        The step's name.
    reads
        ``(where, marker)`` for every placeholder it reads.
    produces
        Marker -> output name, for every placeholder it writes.
    build
        Called with a function from marker to folder; returns the ParallelRunStep.
    prebuilt
        The step, when it could be built before any step ran (its placeholders still in
        place); None when it is built only when it runs.
    processes, node_count
        Of the cluster a pipeline starts for it.
    """

    compute_target: Any = None

    def __init__(self, name: str, reads: list[tuple[str, str]], produces: dict[str, str],
                 build: Callable[[Callable[[str], str]], ParallelRunStep],
                 prebuilt: ParallelRunStep | None, processes: int, node_count: int) -> None:
        self.name = name
        self.reads = reads
        self.produces = produces
        self.build = build
        self.prebuilt = prebuilt
        self.processes = processes
        self.node_count = node_count

    def __repr__(self) -> str:
        return f"DeferredStep(name={self.name!r})"
