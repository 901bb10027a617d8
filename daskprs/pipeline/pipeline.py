"""Pipeline: steps that read what earlier steps wrote, run in order on one cluster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daskprs.errors import ConfigError, Problem
from daskprs.main_guard import refuse_unguarded_call, refuse_worker_import
from daskprs.pipeline.deferred import DeferredStep
from daskprs.pipeline.graph import Graph, build_graph
from daskprs.pipeline.placeholders import markers_in
from daskprs.pipeline.resolve import Folders
from daskprs.pipeline.result import PipelineResult
from daskprs.pipeline.script_step import PythonScriptStep
from daskprs.step import ParallelRunStep

DEFAULT_ROOT = "daskprs-runs/pipeline"


@dataclass(frozen=True)
class PipelinePlan:
    """What :meth:`Pipeline.validate` found: the run order, each step's upstream steps, and
    the plan of each step that reads no placeholder (others are planned when they run)."""

    order: list[str]
    upstream: dict[str, list[str]]
    plans: dict[str, str]
    output_root: str

    def __str__(self) -> str:
        lines = [f"valid: pipeline of {len(self.order)} steps, output root {self.output_root}"]
        for name in self.order:
            after = f" (after {', '.join(self.upstream[name])})" if self.upstream[name] else ""
            lines.append(f"  {name}{after}: {self.plans[name]}")
        return "\n".join(lines)


class Pipeline:
    """Steps run in the order their data needs, as ``azureml.pipeline.core.Pipeline``.

    Parameters
    ----------
    workspace
        Accepted for Azure code and ignored (``Pipeline(ws, steps=[...])``); a list given
        here is taken as ``steps``.
    steps
        Every step of the pipeline: ParallelRunStep and PythonScriptStep objects. (Azure
        also finds steps the listed ones read from; daskprs needs each one listed.)
    description
        Free text.
    output_root
        The folder (or fsspec URL) placeholders resolve below: ``<output_root>/<step>/<name>``.
    default_datastore, default_source_directory, resolve_closure
        Accepted for Azure code and ignored.
    source
        Where the steps came from, for messages (the YAML loader gives its file).
    """

    def __init__(self, workspace: Any = None, steps: Sequence[Any] | None = None,
                 description: str | None = None, default_datastore: Any = None,
                 default_source_directory: str | None = None, resolve_closure: bool = True,
                 output_root: str = DEFAULT_ROOT, source: str = "keyword argument",
                 labels: Sequence[str] | None = None) -> None:
        if steps is None and isinstance(workspace, (list, tuple)):
            steps = workspace
        if not isinstance(output_root, str) or not output_root.strip():
            raise ConfigError([Problem("output_root", source, "must be a folder path or URL",
                                       output_root, "Use output_root='runs/my-pipeline'")])
        self.steps: list[Any] = list(steps or []) if isinstance(steps, (list, tuple)) else steps
        self.description = description
        self.output_root = output_root
        self.source = source
        self.graph: Graph = build_graph(self.steps, source, labels)
        self.folders = Folders(self.graph, output_root)
        _check_tables(self.graph, source)
        _check_one_target(self.graph, source)

    def validate(self) -> PipelinePlan:
        """Check every step and reference without running anything; start no cluster.

        Steps that read no placeholder are validated in full (inputs listed, mini-batches
        planned); the others when the steps they read from have run.

        Raises
        ------
        ConfigError, InputError, OutputError
            Naming the step that is wrong.
        """
        plans = {}
        for name in self.graph.order:
            step = self.graph.nodes[name].step
            if isinstance(step, DeferredStep):
                step = step.prebuilt
                if step is None:
                    plans[name] = "parallel job, read when the steps before it have run"
                    continue
            if isinstance(step, PythonScriptStep):
                plans[name] = f"script {step.script_name}"
            elif any(markers_in(d) for d in [*step.inputs, *step.side_inputs]):
                resolved = self.folders.parallel_step(step)
                plans[name] = f"ParallelRunStep reading {_reads(resolved)}; output " \
                              f"{resolved.output}"
            else:
                plans[name] = str(self.folders.parallel_step(step).validate())
        return PipelinePlan(list(self.graph.order), dict(self.graph.upstream), plans,
                            self.folders.root)

    def run(self, client: Any = None, progress: bool = True) -> PipelineResult:
        """Run every step on one cluster; return the :class:`PipelineResult`.

        Parameters
        ----------
        client
            A ``distributed.Client``, a scheduler address, ``"local"``, ``"inline"``, or
            None (the ParallelRunSteps' ``compute_target``; see "Where it runs").
        progress
            Show each ParallelRunStep's progress bar.
        """
        from daskprs.cluster import starts_local_cluster
        from daskprs.pipeline.runner import cluster_target, pipeline_client, run_graph
        from daskprs.step import _client_address

        refuse_worker_import()
        target = cluster_target(self.graph, _client_address(client))
        if starts_local_cluster(target) and any(
                n.kind == "parallel" for n in self.graph.nodes.values()):
            refuse_unguarded_call()
        with pipeline_client(self.graph, target) as run_client:
            return run_graph(self.graph, self.folders, run_client, progress)

    def __repr__(self) -> str:
        return f"Pipeline(steps={self.graph.order!r}, output_root={self.output_root!r})"


def _reads(step: ParallelRunStep) -> str:
    return ", ".join(p for d in step.inputs for p in getattr(d, "paths", ()))


def _check_tables(graph: Graph, source: str) -> None:
    """A tabular input cannot read a ParallelRunStep that writes ``summary_only``."""
    problems = []
    for node in graph.nodes.values():
        for position, dataset in enumerate(getattr(node.step, "inputs", [])):
            if getattr(dataset, "kind", None) != "tabular":
                continue
            for marker in markers_in(dataset):
                writer = graph.nodes[graph.producer[marker]].step
                if isinstance(writer, ParallelRunStep) and \
                        writer.parallel_run_config.output_action == "summary_only":
                    problems.append(Problem(
                        f"{node.name}.inputs[{position}]", source, f"reads the table of step "
                        f"{writer.name!r}, which writes no table (output_action "
                        f"'summary_only')", dataset.name, f"Set output_action 'append_row' or "
                        f"'parquet' in step {writer.name!r}, or read its folder as a file "
                        f"input"))
    if problems:
        raise ConfigError(problems)


def _check_one_target(graph: Graph, source: str) -> None:
    """Every ParallelRunStep names the same compute_target (one cluster per pipeline)."""
    targets: dict[str, Any] = {}
    for node in graph.nodes.values():
        if node.kind == "parallel":
            targets[node.name] = node.compute_target
    distinct = {repr(t) for t in targets.values()}
    if len(distinct) > 1:
        first = next(iter(targets))
        other = next(n for n, t in targets.items() if repr(t) != repr(targets[first]))
        raise ConfigError([Problem(
            f"{other}.parallel_run_config.compute_target", source, "differs from the "
            f"compute_target of step {first!r}: a pipeline runs on one cluster",
            targets[other], f"Give every ParallelRunStep compute_target={targets[first]!r}, "
            f"or pass Pipeline.run(client=...)")])
