"""``--retry-failed``: rerun only what failed in an output's last job, also after a fix.

A job records in ``_daskprs/fingerprint.json`` a *plan fingerprint* (input listing,
mini-batch count, ``mini_batch_size``, ``partition_keys``, ``partition_format`` and the
output parameters: what decides which mini-batch holds which items and how results are
merged), the script fingerprint of each of its runs, and how many mini-batches failed.
A job that completed with failures keeps its task bundles. ``--retry-failed`` checks that
the plan is the same, then resumes from the bundles of the earlier runs whatever the
script fingerprint: only mini-batches no earlier run committed as succeeded run again,
and the output is assembled in mini-batch order from old and new bundles alike.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daskprs.commit import StateStore
from daskprs.errors import ConfigError, OutputError, Problem
from daskprs.inputs.plan import Plan
from daskprs.result import COMPLETED

if TYPE_CHECKING:
    from daskprs.step import ParallelRunStep

_PLAN_KEYS = ("mini_batch_size", "partition_keys", "output_action", "append_row_file_name",
              "append_row_separator")
_FLAG = "--retry-failed"


def plan_fingerprint(step: ParallelRunStep, plan: Plan) -> str:
    """A sha256 over what decides the mini-batches and how their results are merged."""
    config = step.parallel_run_config
    parts = {"inputs": plan.listing_digest(), "mini_batches": len(plan.mini_batches),
             "names": [str(d.name) for d in step.inputs],
             "partition_format": [getattr(d, "partition_format", None) for d in step.inputs],
             "config": {key: getattr(config, key) for key in _PLAN_KEYS}}
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_allowed(allow_reuse: bool) -> None:
    """Refuse ``retry_failed`` with ``allow_reuse=False`` (the one reruns everything, the
    other only what failed).

    Raises
    ------
    ConfigError
        When ``allow_reuse`` is False.
    """
    if not allow_reuse:
        raise ConfigError([Problem(
            "allow_reuse", "step", "is False, which reruns every mini-batch, but "
            "--retry-failed (retry_failed=True) reruns only the failed ones", allow_reuse,
            "Set allow_reuse: true, or run without --retry-failed")])


@dataclass(frozen=True)
class Retry:
    """What ``--retry-failed`` takes from the earlier job.

    Parameters
    ----------
    earlier
        The runs whose committed mini-batches are kept.
    nothing_failed
        The earlier job completed without a failed mini-batch: there is nothing to rerun.
    """

    earlier: list[str]
    nothing_failed: bool


def check_retry(previous: dict[str, Any] | None, plan_digest: str, state: StateStore
                ) -> Retry:
    """Check that the output's last job can be retried with this plan.

    Raises
    ------
    OutputError
        When the output holds no earlier job, the earlier job recorded no plan, the plan
        changed, or the bundles of a completed job are gone.
    """
    url = state.output.url
    if previous is None:
        raise OutputError(f"{_FLAG}: the output holds no earlier job to retry, got {url!r}. "
                          f"Run the job once without {_FLAG}.")
    run = previous.get("run_id")
    if previous.get("plan") is None:
        raise OutputError(f"{_FLAG}: the earlier job {run} in {url!r} recorded no plan (an "
                          f"older daskprs ran it), so what failed cannot be matched. Run "
                          f"without {_FLAG} to rerun everything.")
    if previous["plan"] != plan_digest:
        raise OutputError(
            f"{_FLAG}: the plan changed since the earlier job {run} in {url!r} (its input "
            f"files, mini_batch_size, partition_keys, partition_format or output_action / "
            f"append_row_* differ), so its mini-batches are not these. Restore them, or run "
            f"without {_FLAG} to rerun everything.")
    runs = [r for r in previous.get("runs") or [run] if r]
    if previous.get("status") == COMPLETED and not previous.get("failed"):
        return Retry(runs, nothing_failed=True)
    if previous.get("status") == COMPLETED and not any(
            state.fs.exists(state.path("commits", r)) for r in runs):
        raise OutputError(f"{_FLAG}: the committed mini-batches of the earlier job {run} in "
                          f"{url!r} were removed. Run without {_FLAG} to rerun everything.")
    return Retry(runs, nothing_failed=False)


class RunHistory:
    """Which run (and script version) produced each succeeded mini-batch of the output.

    Parameters
    ----------
    runs
        The resume chain, the current run last.
    scripts
        Script fingerprint by run id.
    retried
        The runs that were ``--retry-failed`` runs.
    """

    def __init__(self, runs: list[str], scripts: dict[str, str], retried: list[str]) -> None:
        self.runs = runs
        self.scripts = scripts
        self.retried = retried
        self.producer: dict[int, str] = {}

    def watch(self, record: dict[str, Any]) -> None:
        """Take a mini-batch's final record."""
        if record["status"] == "succeeded":
            self.producer[record["index"]] = str(record.get("run_id") or self.runs[-1])
        else:
            self.producer.pop(record["index"], None)

    def reject(self, record: dict[str, Any]) -> None:
        """A succeeded mini-batch whose result could not be used."""
        self.producer.pop(record["index"], None)

    def summary(self) -> list[dict[str, Any]]:
        """One entry per run: ``run_id``, ``script`` (fingerprint), ``mini_batches`` (its
        succeeded mini-batches in the output) and ``retry_failed``."""
        counts = Counter(self.producer.values())
        return [{"run_id": run, "script": self.scripts.get(run, ""),
                 "mini_batches": counts.get(run, 0), "retry_failed": run in self.retried}
                for run in self.runs]


__all__ = ["Retry", "RunHistory", "check_allowed", "check_retry", "plan_fingerprint"]
