"""What ``ParallelRunStep.validate()`` found: the plan of a valid step, before it runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanSummary:
    """The plan of a step that passed every check that needs no cluster.

    Parameters
    ----------
    name
        The step's name.
    input_files
        Files listed over all inputs (for DataFrame inputs: the number of inputs).
    mini_batches
        Mini-batches the job would run.
    mini_batch_size
        The parsed size, such as ``"10 rows"`` or ``"1048576 bytes"``.
    items
        Rows or files over all inputs, when known before running.
    output
        The output folder as a URL or absolute path.
    fingerprint
        The job fingerprint: a completed job with this fingerprint is reused.
    """

    name: str
    input_files: int
    mini_batches: int
    mini_batch_size: str
    items: int | None
    output: str
    fingerprint: str

    def __str__(self) -> str:
        items = f", {self.items} items" if self.items is not None else ""
        return (f"valid: {self.name}: {self.input_files} input files, {self.mini_batches} "
                f"mini-batches of {self.mini_batch_size}{items}; output {self.output}")
