"""The exception tree of daskprs and the exit code of each branch.

::

    DaskprsError                      exit 3 (internal error)
    ├── ConfigError(ValueError)       exit 2: found before any work starts
    ├── EntryScriptError              exit 2: the script cannot be loaded or has no run()
    ├── InputError                    exit 2: an input matches nothing or cannot be read
    ├── OutputError                   exit 2: the output folder cannot be used
    ├── ClusterError                  exit 2: the cluster cannot be reached or used
    │   ├── InitFailedError           exit 1: init() failed on every worker
    │   └── ClusterLostError          exit 1: the scheduler or every worker was lost mid-job
    └── JobFailedError                exit 1: the job ran and failed

A failing mini-batch is not an exception: it is a record. Only the job's failure
counter turns failures into :class:`JobFailedError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class DaskprsError(Exception):
    """Base of every error daskprs raises on purpose."""

    exit_code: int = EXIT_INTERNAL


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration.

    Parameters
    ----------
    parameter
        The parameter as the user wrote it (``mini_batch_size``, ``inputs[0].path``).
    source
        Where the value came from: ``keyword argument``, ``conf/x.yaml: key`` or ``--set key``.
    message
        What is wrong, without the value.
    value
        The offending value; shown with ``!r``.
    fix
        Something the user can paste back.
    """

    parameter: str
    source: str
    message: str
    value: Any
    fix: str

    def __str__(self) -> str:
        fix = self.fix if self.fix.endswith(("?", ".")) else f"{self.fix}."
        return f"{self.parameter} ({self.source}): {self.message}, got {self.value!r}. {fix}"


class ConfigError(DaskprsError, ValueError):
    """The configuration is invalid; every problem found is listed.

    Parameters
    ----------
    problems
        All problems found, in the order they were checked.
    """

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = "1 problem" if count == 1 else f"{count} problems"
        lines = [f"invalid configuration, {head}:"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class EntryScriptError(DaskprsError):
    """The entry script cannot be found, parsed or imported."""

    exit_code = EXIT_USAGE


class InputError(DaskprsError):
    """An input matches nothing or cannot be read."""

    exit_code = EXIT_USAGE


class OutputError(DaskprsError):
    """The output location cannot be used (not ours, locked, not writable)."""

    exit_code = EXIT_USAGE


class ClusterError(DaskprsError):
    """The Dask cluster cannot be started, reached or used."""

    exit_code = EXIT_USAGE


class InitFailedError(ClusterError):
    """``init()`` failed on every worker, so no mini-batch can run (the job failed)."""

    exit_code = EXIT_FAILED


class ClusterLostError(ClusterError):
    """The scheduler, or every worker for too long, was lost while the job ran (the job
    failed; a rerun resumes from the committed mini-batches)."""

    exit_code = EXIT_FAILED


class JobFailedError(DaskprsError):
    """The job ran and failed (a threshold was exceeded or nothing succeeded).

    Parameters
    ----------
    message
        The reason and the first errors.
    result
        The :class:`~daskprs.result.JobResult` of the failed job, when there is one.
    """

    exit_code = EXIT_FAILED

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result

