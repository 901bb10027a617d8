"""What a pipeline came to: one outcome per step (its JobResult or ScriptResult), as an
object, a table of text and HTML."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

from daskprs.errors import (
    EXIT_COMPLETED,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_USAGE,
    DaskprsError,
    JobFailedError,
)
from daskprs.result import CANCELED, COMPLETED, FAILED, JobResult

SKIPPED = "Skipped"


@dataclass
class ScriptResult:
    """The outcome of a PythonScriptStep run.

    ``status`` is ``Completed`` or ``Failed``; ``outputs`` maps each output's name to its
    folder; ``logs`` is the folder with ``stdout.txt`` and ``stderr.txt``.
    """

    status: str
    reused: bool = False
    run_id: str = ""
    fingerprint: str = ""
    seconds: float = 0.0
    returncode: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    logs: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The result as ``_daskprs/script_step.json`` holds it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScriptResult:
        """Rebuild a result from ``_daskprs/script_step.json``."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class StepOutcome:
    """One step of a pipeline run.

    Attributes
    ----------
    name, kind
        The step's name; ``parallel`` or ``script``.
    status
        ``Completed``, ``Failed``, ``Canceled``, or ``Skipped`` (a step it reads from failed).
    reused
        Whether the step's last run was reused.
    seconds
        Time the step took (a reused step: the reuse check).
    result
        The step's :class:`~daskprs.result.JobResult` or :class:`ScriptResult` (None when
        it did not start).
    reason
        Why it failed or was skipped.
    """

    name: str
    kind: str
    status: str
    reused: bool = False
    seconds: float = 0.0
    result: JobResult | ScriptResult | None = None
    reason: str = ""
    error: BaseException | None = field(default=None, repr=False, compare=False)


@dataclass
class PipelineResult:
    """The outcome of :meth:`Pipeline.run`: ``steps`` in run order, ``status``
    (``Completed`` when every step completed), ``seconds``, ``output_root``."""

    steps: list[StepOutcome]
    seconds: float = 0.0
    output_root: str = ""

    @property
    def status(self) -> str:
        """``Completed``, ``Canceled`` (a step was canceled) or ``Failed``."""
        statuses = {s.status for s in self.steps}
        if statuses == {COMPLETED}:
            return COMPLETED
        return CANCELED if CANCELED in statuses else FAILED

    @property
    def succeeded(self) -> bool:
        """Whether every step completed."""
        return self.status == COMPLETED

    @property
    def exit_code(self) -> int:
        """As for a job: 0 every step completed; 3 a step raised an internal error; 2 every
        failed step failed before its work started (configuration, input, output,
        cluster); else 1."""
        failed = [s for s in self.steps if s.status not in (COMPLETED, SKIPPED)]
        if not failed:
            return EXIT_COMPLETED
        codes = [getattr(s.error, "exit_code", EXIT_FAILED) if s.error is not None
                 else EXIT_FAILED for s in failed]
        if any(not isinstance(s.error, (DaskprsError, type(None))) for s in failed):
            return EXIT_INTERNAL
        return EXIT_USAGE if all(c == EXIT_USAGE for c in codes) else EXIT_FAILED

    def __getitem__(self, name: str) -> StepOutcome:
        for outcome in self.steps:
            if outcome.name == name:
                return outcome
        raise KeyError(f"no step named {name!r}; the steps are "
                       f"{', '.join(repr(s.name) for s in self.steps)}")

    def raise_for_status(self) -> PipelineResult:
        """Raise :class:`~daskprs.errors.JobFailedError` unless every step completed."""
        if self.status != COMPLETED:
            raise JobFailedError(self.summary(), self)
        return self

    def table(self) -> list[tuple[str, str, str, str, str]]:
        """One row per step: name, kind, status, reused, seconds."""
        return [(s.name, s.kind, s.status, "yes" if s.reused else "no", f"{s.seconds:.1f}")
                for s in self.steps]

    def summary(self) -> str:
        """The table of steps, then the reason of each step that did not complete."""
        head = ("step", "kind", "status", "reused", "seconds")
        rows = [head, *self.table()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = [f"pipeline {self.status}: {len(self.steps)} steps, {self.seconds:.1f} s, "
                 f"output root {self.output_root}"]
        lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
                  for row in rows]
        lines += [f"{s.name}: {s.reason}" for s in self.steps if s.reason]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{h}</th>"
                       for h in ("step", "kind", "status", "reused", "seconds", "reason"))
        rows = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>"
                                        for c in (*row, step.reason)) + "</tr>"
                       for row, step in zip(self.table(), self.steps, strict=True))
        return f"<table><tr>{head}</tr>{rows}</table>"
