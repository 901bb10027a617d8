"""The command line: ``daskprs run | validate | show | status | estimate``; a thin layer over
the API."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from daskprs.addresses import AddressError, address_fix, scheduler_address
from daskprs.errors import (
    EXIT_COMPLETED,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ConfigError,
    DaskprsError,
    OutputError,
    Problem,
)
from daskprs.storage.secrets import RedactingFilter, redact

if TYPE_CHECKING:  # imported when a command runs: --help stays fast
    from daskprs.step import ParallelRunStep

_set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a config value: KEY a dotted path (list indices allowed, e.g. "
         "inputs.0.path), VALUE a YAML scalar. Repeat --set for each value.")

_azure_options = [
    click.option("--data-table", metavar="FILE", type=click.Path(dir_okay=False),
                 help="Azure v2 YAML: the table of datastores, data assets and pipeline "
                      "bindings (default: azureml_data.yaml next to CONFIG)."),
    click.option("--job", metavar="NAME", help="Azure v2 pipeline YAML: the parallel node "
                 "to run."),
]


def _with_azure_options(command: Any) -> Any:
    for option in reversed(_azure_options):
        command = option(command)
    return command


EXIT_CODES = """\b
Exit codes:
  0    Completed (or reused)
  1    Failed (thresholds, no item succeeded, no healthy worker)
  2    a problem found before any work started: configuration, empty input,
       missing bucket or container, access denied, unreachable scheduler
  3    internal error (a bug; the traceback goes to stderr)
  130  interrupted (Ctrl-C, SIGTERM)
show: 0 Completed, 1 Failed or Canceled, 2 not an output folder."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(package_name="daskprs")
def main() -> None:
    """Run Azure ParallelRunStep entry scripts over large inputs on Dask."""


@main.command(epilog=EXIT_CODES.split("\nshow:")[0])
@click.argument("config", type=click.Path(dir_okay=False))
@_set_option
@click.option("--scheduler", metavar="ADDRESS", help="Run on an existing cluster, e.g. "
              "tcp://host:8786 (host:port means tcp://host:port); overrides "
              "compute_target.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
@_with_azure_options
@click.option("--retry-failed", is_flag=True, help="Rerun only the mini-batches the output's "
              "last job failed (or never ran), even if the entry script changed; merge them "
              "into the same output.")
def run(config: str, overrides: tuple[str, ...], scheduler: str | None, progress: bool,
        retry_failed: bool, data_table: str | None = None, job: str | None = None) -> None:
    """Run the step described by CONFIG (a YAML file; Azure v2 parallel job YAML too), or
    every step of a pipeline file (a steps: list, or an Azure v2 type: pipeline job)."""
    _log_to_stderr()
    _quiet_distributed()
    _cancel_on_signals()
    if _is_pipeline(config, job):
        if retry_failed:
            click.echo("error: --retry-failed applies to one step: run it on the step's own "
                       "YAML file (an Azure pipeline: --job NAME)", err=True)
            sys.exit(EXIT_USAGE)
        _run_pipeline(config, overrides, scheduler, progress, data_table)
    with _exit_on_errors():
        step, scheduler = _load(config, overrides, scheduler, data_table, job)
        result = step.run(client=scheduler, progress=progress, retry_failed=retry_failed)
    from daskprs.result import COMPLETED

    click.echo(redact(result.summary()))
    if result.status != COMPLETED:
        log = "job_error.txt" if result.first_errors else "job_result.txt"
        click.echo(f"the job {result.status.lower()}: {result.reason}. See "
                   f"{result.output.get('url')}/logs/{log}", err=True)
    sys.exit(EXIT_COMPLETED if result.status == COMPLETED else EXIT_FAILED)


@main.command(epilog="Exit codes: 0 valid, 2 a problem (each one is listed).")
@click.argument("config", type=click.Path(dir_okay=False))
@_set_option
@_with_azure_options
def validate(config: str, overrides: tuple[str, ...], data_table: str | None = None,
             job: str | None = None) -> None:
    """Check CONFIG without running it: inputs listed, script parsed; creates nothing. For a
    pipeline file: every step, every reference, no cycle."""
    _log_to_stderr()
    if _is_pipeline(config, job):
        _validate_pipeline(config, overrides, data_table)
    from daskprs.yaml_config import load_step

    try:
        summary = load_step(config, overrides, data_table, job).validate()
    except DaskprsError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    click.echo(str(summary))


@main.command()
@click.argument("output")
@click.option("--timeline", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Also draw the attempts per worker into FILE (needs daskprs[plot]).")
def show(output: str, timeline: str | None) -> None:
    """Show the job result of an OUTPUT folder."""
    from daskprs.result import COMPLETED, JobResult

    try:
        result = JobResult.load(output)
    except OutputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(result.summary())
    if timeline is not None:
        try:
            result.plot_timeline(timeline)
        except (OutputError, ImportError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        click.echo(f"timeline: {os.path.abspath(timeline)}")
    sys.exit(EXIT_COMPLETED if result.status == COMPLETED else EXIT_FAILED)


@main.command(epilog="Exit codes: 0 estimated, 2 a problem found (configuration, input, "
                    "init() failed).")
@click.argument("config", type=click.Path(dir_okay=False))
@_set_option
@click.option("--sample", default=5, show_default=True, type=click.IntRange(min=1),
              help="Mini-batches to run, spread over the input.")
def estimate(config: str, overrides: tuple[str, ...], sample: int) -> None:
    """Run init() once and a few mini-batches of CONFIG on this machine (nothing is written
    to the output), then project the whole job's wall time at 1, 2, 4, ... workers."""
    _log_to_stderr()
    from daskprs.yaml_config import load_step

    try:
        found = load_step(config, overrides).estimate(sample)
    except DaskprsError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    click.echo(redact(found.text()))


@main.command(epilog="Exit codes: 0 running or Completed, 1 Failed, Canceled or stopped "
                    "(its process is gone), 2 not an output folder.")
@click.argument("output")
@click.option("--watch", metavar="SECONDS", type=click.FloatRange(min=0.5),
              help="Print the status again every SECONDS until the job ends.")
def status(output: str, watch: float | None) -> None:
    """Show the progress of the job of OUTPUT (a folder or URL, or a job's YAML file):
    done/total, rate, ETA, failures, slowest mini-batches."""
    import time

    from daskprs.status import read_status

    url, options = _output_of(output)
    while True:
        try:
            state = read_status(url, options)
        except DaskprsError as exc:
            click.echo(redact(f"error: {exc}"), err=True)
            sys.exit(EXIT_USAGE)
        click.echo(redact(state.text()))
        if watch is None or not state.running:
            break
        click.echo("")
        time.sleep(watch)
    sys.exit(EXIT_COMPLETED if state.state in ("Running", "Completed") else EXIT_FAILED)


def _output_of(argument: str) -> tuple[str, dict[str, object]]:
    """The output folder and its storage options: ``argument`` itself, or the ``output:``
    of the job a YAML file describes."""
    if argument.endswith((".yaml", ".yml")) and os.path.isfile(argument):
        from daskprs.storage.secrets import resolve_options
        from daskprs.yaml_config import load_step

        try:
            step = load_step(argument, ())
            return step.output, resolve_options(step.output_storage_options, "output")
        except DaskprsError as exc:
            click.echo(redact(f"error: {exc}"), err=True)
            sys.exit(EXIT_USAGE)
    return argument, {}


def _load(config: str, overrides: tuple[str, ...], scheduler: str | None,
          data_table: str | None = None, job: str | None = None
          ) -> tuple[ParallelRunStep, str | None]:
    """The step and the ``--scheduler`` address (``host:port`` read as ``tcp://host:port``);
    a bad address is reported with the config's problems, in one ConfigError."""
    from daskprs.yaml_config import load_step

    problems: list[Problem] = []
    if scheduler is not None and scheduler not in ("local", "inline"):
        try:
            scheduler = scheduler_address(scheduler)
        except AddressError as exc:
            problems.append(Problem("--scheduler", "command line", exc.reason, scheduler,
                                    address_fix(exc, "--scheduler {}")))
    try:
        step = load_step(config, overrides, data_table, job)
    except ConfigError as exc:
        if problems:
            raise ConfigError(problems + exc.problems) from exc
        raise
    if problems:
        raise ConfigError(problems)
    return step, scheduler


@contextlib.contextmanager
def _exit_on_errors() -> Iterator[None]:
    """Turn an interrupt, a daskprs error (after the counts of a job that ran) or an
    unexpected error into its message on stderr and its exit code."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo("Canceled: interrupted; committed mini-batches are kept.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except DaskprsError as exc:
        if getattr(exc, "job_result", None) is not None:  # the job ran: show its counts
            click.echo(redact(exc.job_result.summary()))
        click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    except Exception:
        click.echo(redact(f"internal error:\n{traceback.format_exc()}"), err=True)
        sys.exit(EXIT_INTERNAL)


def _is_pipeline(config: str, job: str | None) -> bool:
    """A pipeline file, run whole (``--job`` runs one parallel node of an Azure pipeline)."""
    from daskprs.pipeline.yaml_loader import is_pipeline_file

    return job is None and is_pipeline_file(config)


def _run_pipeline(config: str, overrides: tuple[str, ...], scheduler: str | None,
                  progress: bool, data_table: str | None) -> None:
    """``daskprs run`` of a pipeline file: the table of steps; exit 0 when every step
    completed, 1 when one failed, 2 for a problem found before any step ran."""
    from daskprs.pipeline.yaml_loader import load_any_pipeline

    with _exit_on_errors():
        address = _scheduler_address(scheduler)
        result = load_any_pipeline(config, overrides, data_table).run(client=address,
                                                                      progress=progress)
    click.echo(redact(result.summary()))
    sys.exit(result.exit_code)


def _validate_pipeline(config: str, overrides: tuple[str, ...], data_table: str | None
                       ) -> None:
    from daskprs.pipeline.yaml_loader import load_any_pipeline

    try:
        plan = load_any_pipeline(config, overrides, data_table).validate()
    except DaskprsError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    click.echo(str(plan))
    sys.exit(EXIT_COMPLETED)


def _scheduler_address(scheduler: str | None) -> str | None:
    """``--scheduler`` with its scheme; a bad address is a ConfigError."""
    if scheduler is None or scheduler in ("local", "inline"):
        return scheduler
    try:
        return scheduler_address(scheduler)
    except AddressError as exc:
        raise ConfigError([Problem("--scheduler", "command line", exc.reason, scheduler,
                                   address_fix(exc, "--scheduler {}"))]) from None


def _cancel_on_signals() -> None:
    """Ctrl-C and SIGTERM cancel the job (``Canceled``, exit 130); a second one exits at once."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            from daskprs.interrupts import say_last_words

            say_last_words()
            os._exit(EXIT_INTERRUPTED)
        received.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _quiet_distributed() -> None:
    """distributed's log lines go to ``logs/sys/client.txt`` only, not to the terminal (its
    tracebacks of a lost scheduler or a canceled task are not the user's to read)."""
    import distributed  # noqa: F401 (installs its handlers, which are quieted here)

    for handler in logging.getLogger("distributed").handlers:
        if isinstance(handler, logging.StreamHandler) and \
                not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.CRITICAL + 1)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("daskprs %(levelname)s: %(message)s"))
    root = logging.getLogger("daskprs")
    if not any(isinstance(h, logging.StreamHandler) and h.stream is sys.stderr
               for h in root.handlers):
        root.addHandler(handler)
    root.setLevel(logging.INFO)
