"""The graph of a pipeline: which step writes each placeholder, which steps read it, the
order the steps run in; every wrong reference and any cycle reported before anything runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daskprs.errors import ConfigError, Problem
from daskprs.pipeline.deferred import DeferredStep
from daskprs.pipeline.placeholders import marker_name, markers_in
from daskprs.pipeline.script_step import PythonScriptStep
from daskprs.step import ParallelRunStep
from daskprs.validation import did_you_mean

STEP_TYPES = (ParallelRunStep, PythonScriptStep, DeferredStep)


@dataclass
class StepNode:
    """One step with the placeholders it writes and reads.

    ``produces`` maps a marker to the output's name; ``reads`` lists ``(where, marker)``
    with ``where`` the parameter holding it (``inputs[0]``, ``arguments[3]``).
    """

    step: Any
    produces: dict[str, str] = field(default_factory=dict)
    reads: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The step's name."""
        return str(self.step.name)

    @property
    def kind(self) -> str:
        """``parallel`` or ``script``."""
        return "script" if isinstance(self.step, PythonScriptStep) else "parallel"

    @property
    def compute_target(self) -> Any:
        """Where a parallel step runs (None for a script step)."""
        config = getattr(self.step, "parallel_run_config", None)
        return getattr(config, "compute_target", None)

    @property
    def cluster_size(self) -> tuple[int, int]:
        """Processes and nodes of the cluster a pipeline starts for a parallel step."""
        if isinstance(self.step, DeferredStep):
            return self.step.processes, self.step.node_count
        config = self.step.parallel_run_config
        return config.processes, config.node_count


@dataclass
class Graph:
    """The steps by name (in the order given), the writer of each marker, and each step's
    upstream steps; ``order`` runs every step after the steps it reads from."""

    nodes: dict[str, StepNode]
    producer: dict[str, str]
    upstream: dict[str, list[str]]
    order: list[str]

    def downstream(self, name: str) -> list[str]:
        """Every step that reads, directly or not, what ``name`` writes, in run order."""
        found: set[str] = set()
        for other in self.order:
            if name in self.upstream[other] or found & set(self.upstream[other]):
                found.add(other)
        return [n for n in self.order if n in found]


def build_graph(steps: Any, source: str = "keyword argument",
                labels: Sequence[str] | None = None) -> Graph:
    """Check ``steps`` and return their graph.

    Parameters
    ----------
    steps
        ParallelRunStep and PythonScriptStep objects.
    source
        Where the steps came from, for messages (``keyword argument`` or a YAML file).
    labels
        How to name each step's parameters in messages (default ``steps[i]``).

    Raises
    ------
    ConfigError
        Naming each step and reference that is wrong, or the steps of a cycle.
    """
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ConfigError([Problem("steps", source, "must be a non-empty list of steps", steps,
                                   "Use Pipeline(steps=[prepare, score, join])")])
    problems: list[Problem] = []
    labels = list(labels) if labels is not None else [f"steps[{i}]" for i in range(len(steps))]
    nodes: dict[str, StepNode] = {}
    seen: dict[str, int] = {}
    for position, step in enumerate(steps):
        if not isinstance(step, STEP_TYPES):
            problems.append(Problem(labels[position], source, "must be a ParallelRunStep or a "
                                    "PythonScriptStep", type(step).__name__,
                                    "Build the step with ParallelRunStep(...) or "
                                    "PythonScriptStep(...)"))
            continue
        if step.name in seen:
            problems.append(Problem(f"{labels[position]}.name", source, "is the name of "
                                    f"{labels[seen[step.name]]} too", step.name,
                                    "Give every step its own name"))
            continue
        seen[step.name] = position
        nodes[step.name] = _node(step)
    producer: dict[str, str] = {}
    for node in nodes.values():
        for marker, output in node.produces.items():
            if marker in producer:
                problems.append(Problem(f"{node.name}: output {output!r}", source,
                                        f"is written by step {producer[marker]!r} too",
                                        output, "Give each step its own PipelineData to write"))
            else:
                producer[marker] = node.name
    names = [marker_name(m) for m in producer]
    upstream: dict[str, list[str]] = {}
    for node in nodes.values():
        upstream[node.name] = []
        for where, marker in node.reads:
            writer = producer.get(marker)
            if writer is None:
                problems.append(_unwritten(node.name, where, marker, names, source))
            elif writer != node.name and writer not in upstream[node.name]:
                upstream[node.name].append(writer)
            elif writer == node.name and node.kind == "parallel" and where != "arguments":
                problems.append(Problem(f"{node.name}.{where}", source, "reads the step's own "
                                        "output", marker_name(marker),
                                        "Read the output of an earlier step"))
    if problems:
        raise ConfigError(problems)
    order, cycle = _order(list(nodes), upstream)
    if cycle:
        path = " -> ".join(repr(n) for n in [*cycle, cycle[0]])
        raise ConfigError([Problem("steps", source, f"form a cycle: {path}",
                                   [str(n) for n in cycle],
                                   "Make one of these steps read data the others do not "
                                   "write")])
    return Graph(nodes, producer, upstream, order)


def _node(step: Any) -> StepNode:
    node = StepNode(step)
    if isinstance(step, DeferredStep):
        node.produces.update(step.produces)
        node.reads.extend(step.reads)
        return node
    if isinstance(step, ParallelRunStep):
        for marker in markers_in(step.output):
            node.produces[marker] = marker_name(marker)
        groups = [("inputs", step.inputs), ("side_inputs", step.side_inputs),
                  ("arguments", step.arguments)]
    else:
        for output in step.outputs:
            node.produces[output.marker] = str(output.name)
        groups = [("inputs", step.inputs), ("arguments", step.arguments)]
    for group, items in groups:
        for position, item in enumerate(items):
            for marker in markers_in(item):
                node.reads.append((f"{group}[{position}]", marker))
    return node


def choice_fix(what: str, name: str, names: list[str]) -> str:
    """The fix for a reference to an unknown ``what``: the names to use instead."""
    if not names:
        return f"Declare the {what} first"
    if len(names) == 1:
        return f"Use {names[0]!r}"
    return f"Use one of {', '.join(repr(n) for n in names)}.{did_you_mean(name, names)}"


def _unwritten(step: str, where: str, marker: str, names: list[str], source: str) -> Problem:
    name = marker_name(marker)
    hint = did_you_mean(name, names) if name not in names else \
        f" A step writes another PipelineData named {name!r}: pass that object."
    return Problem(f"{step}.{where}", source, "reads a PipelineData that no step of the "
                   "pipeline writes", name,
                   f"Add the step that writes it (output= or outputs=[...]) to the pipeline's "
                   f"steps.{hint}")


def _order(names: list[str], upstream: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Names with every step after its upstream steps, keeping the given order where free;
    or a cycle when there is one."""
    done: list[str] = []
    left = list(names)
    while left:
        ready = [n for n in left if all(u in done for u in upstream[n])]
        if not ready:
            return done, _cycle(left, upstream)
        done.append(ready[0])
        left.remove(ready[0])
    return done, []


def _cycle(left: list[str], upstream: dict[str, list[str]]) -> list[str]:
    """One cycle among ``left`` (steps that all wait on one another), in reading order."""
    path = [left[0]]
    while True:
        following = next(u for u in upstream[path[-1]] if u in left)
        if following in path:
            cycle = list(reversed(path[path.index(following):]))  # in the data's direction
            start = min(range(len(cycle)), key=lambda i: left.index(cycle[i]))
            return cycle[start:] + cycle[:start]  # from the step listed first
        path.append(following)

