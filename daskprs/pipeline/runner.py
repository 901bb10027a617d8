"""Run a pipeline's steps in order on one cluster: a step starts when the steps it reads
from have completed; steps that do not depend on one another run at the same time; a failed
step stops the steps that depend on it."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from daskprs.cluster import connect, starts_local_cluster
from daskprs.errors import DaskprsError
from daskprs.pipeline.deferred import DeferredStep
from daskprs.pipeline.graph import Graph, StepNode
from daskprs.pipeline.resolve import Folders
from daskprs.pipeline.result import SKIPPED, PipelineResult, ScriptResult, StepOutcome
from daskprs.pipeline.script_run import reusable, run_script, script_fingerprint
from daskprs.requirements import check_requirements
from daskprs.result import COMPLETED, FAILED

logger = logging.getLogger(__name__)


def cluster_target(graph: Graph, client: Any) -> Any:
    """The one target every ParallelRunStep of the pipeline runs on: ``client`` if given,
    else the ``compute_target`` of the first ParallelRunStep (the pipeline checks they
    agree)."""
    if client is not None:
        return client
    for node in _parallel(graph):
        return node.compute_target
    return None


@contextlib.contextmanager
def pipeline_client(graph: Graph, target: Any) -> Iterator[Any]:
    """One connection for the whole pipeline, given to every ParallelRunStep as its
    ``client`` (so a LocalCluster the pipeline starts is the steps' own, as a step's is);
    ``target`` itself when no step needs a cluster or the steps run inline."""
    parallel = _parallel(graph)
    if not parallel or target == "inline":
        yield target
        return
    if starts_local_cluster(target):  # the workers share this environment: check it now
        for node in parallel:
            config = getattr(node.step, "parallel_run_config", None)
            check_requirements(list(((config and config.environment) or {}).get("pip", [])))
    processes = max(n.cluster_size[0] for n in parallel)
    nodes = max(n.cluster_size[1] for n in parallel)
    with connect(target, processes, nodes) as connection:
        yield connection


def run_graph(graph: Graph, folders: Folders, client: Any, progress: bool) -> PipelineResult:
    """Run every step of ``graph``; return each step's outcome, in run order.

    A step that is the only one ready while nothing else runs runs in this thread (so
    Ctrl-C cancels it as it cancels a single job); steps ready together run in threads.
    """
    clock = time.perf_counter()
    outcomes: dict[str, StepOutcome] = {}
    running: dict[Future[StepOutcome], str] = {}
    pending = list(graph.order)
    pool = ThreadPoolExecutor(max_workers=max(1, len(pending)), thread_name_prefix="daskprs-step")
    try:
        while pending or running:
            ready = []
            for name in list(pending):
                upstream = graph.upstream[name]
                stopped = [u for u in upstream if u in outcomes
                           and outcomes[u].status != COMPLETED]
                if stopped:
                    outcomes[name] = StepOutcome(
                        name, graph.nodes[name].kind, SKIPPED,
                        reason=f"not run: it reads from step {stopped[0]!r}, which "
                               f"{outcomes[stopped[0]].status.lower()}")
                    pending.remove(name)
                elif all(u in outcomes for u in upstream):
                    pending.remove(name)
                    ready.append(name)
            if len(ready) == 1 and not running:
                _finished(graph, outcomes, _run_step(graph.nodes[ready[0]], graph, folders,
                                                     outcomes, client, progress))
                continue
            for name in ready:
                running[pool.submit(_run_step, graph.nodes[name], graph, folders, outcomes,
                                    client, progress)] = name
            if running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    _finished(graph, outcomes, future.result())
    finally:
        pool.shutdown(wait=not running, cancel_futures=True)
    return PipelineResult([outcomes[n] for n in graph.order],
                          seconds=round(time.perf_counter() - clock, 3),
                          output_root=folders.root)


def _finished(graph: Graph, outcomes: dict[str, StepOutcome], outcome: StepOutcome) -> None:
    """Record a step's outcome; a step that did not complete names the steps it stops."""
    outcomes[outcome.name] = outcome
    if outcome.status != COMPLETED:
        stopped = graph.downstream(outcome.name)
        if stopped:
            outcome.reason += ("; stopped the steps that read from it: "
                               + ", ".join(repr(s) for s in stopped))


def _run_step(node: StepNode, graph: Graph, folders: Folders, outcomes: dict[str, StepOutcome],
              client: Any, progress: bool) -> StepOutcome:
    clock = time.perf_counter()
    outcome = StepOutcome(node.name, node.kind, FAILED)
    try:
        if node.kind == "parallel":
            step = node.step
            if isinstance(step, DeferredStep):
                step = step.build(folders.of)
            # what a step reads is in its fingerprint, except tables read into memory (an
            # MLTable with column steps): a step that ran again reruns what reads from it
            fresh = all(outcomes[u].reused for u in graph.upstream[node.name])
            result: Any = folders.parallel_step(step, allow_reuse=fresh).run(
                client=client, progress=progress)
        else:
            result = _script(node, graph, folders, outcomes)
        outcome.status, outcome.reused, outcome.result = result.status, result.reused, result
        if result.status != COMPLETED:
            outcome.reason = result.reason
    except DaskprsError as exc:
        outcome.reason = f"{type(exc).__name__}: {exc}"
        outcome.result = getattr(exc, "job_result", None)
        outcome.error = exc
    except Exception as exc:  # a bug: reported, and the CLI exits 3
        logger.exception("step %s raised", node.name)
        outcome.reason = f"{type(exc).__name__}: {exc}"
        outcome.error = exc
    outcome.seconds = round(time.perf_counter() - clock, 3)
    logger.info("step %s: %s%s", node.name, outcome.status, " (reused)" if outcome.reused else "")
    return outcome


def _script(node: StepNode, graph: Graph, folders: Folders,
            outcomes: dict[str, StepOutcome]) -> ScriptResult:
    step = node.step
    arguments = folders.script_arguments(step)
    outputs = folders.script_outputs(step)
    read = []
    for writer in graph.upstream[node.name]:
        done = outcomes[writer].result
        read.append(f"{writer}:{getattr(done, 'run_id', '')}:{getattr(done, 'fingerprint', '')}")
    home = folders.step_home(node.name)
    fingerprint = script_fingerprint(step, arguments, read, folders.root)
    last = reusable(step, home, fingerprint, outputs)
    if last is not None:
        logger.info("reusing step %s: same fingerprint %s", node.name, fingerprint)
        return last
    clear = [f for f in outputs.values() if folders.under_root(f)]
    return run_script(step, arguments, outputs, home, fingerprint, clear)


def _parallel(graph: Graph) -> list[StepNode]:
    return [graph.nodes[n] for n in graph.order if graph.nodes[n].kind == "parallel"]
