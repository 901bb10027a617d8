"""ParallelRunStep: inputs, a ParallelRunConfig, an output, arguments; ``run()``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from daskprs.addresses import AddressError, address_fix, scheduler_address
from daskprs.azure_arguments import apply_azure_options
from daskprs.azure_models import ModelSource, check_models
from daskprs.config import ParallelRunConfig
from daskprs.datasets import DatasetBase, FileDataset, TabularDataset
from daskprs.errors import ConfigError, Problem
from daskprs.inputs.partitions import check_partition_keys
from daskprs.main_guard import refuse_unguarded_call, refuse_worker_import
from daskprs.overlap import check_output_apart
from daskprs.plan_summary import PlanSummary
from daskprs.result import JobResult
from daskprs.sizes import (
    DEFAULT_FILES,
    DEFAULT_TABULAR,
    MiniBatchSize,
    SizeError,
    parse_file_size,
    parse_tabular_size,
    size_fix,
)
from daskprs.storage import normalize_url
from daskprs.validation import Checker

STEP_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class ParallelRunStep:
    """One batch-scoring step: an entry script run over every mini-batch of the inputs.

    Parameters
    ----------
    name
        3-32 characters, ``^[a-z]([-a-z0-9]*[a-z0-9])?$``.
    parallel_run_config
        How to split, run and judge the work.
    inputs
        Datasets, all tabular or all file inputs.
    output
        Local folder or fsspec URL; None (only for ``summary_only``) means
        ``./daskprs-runs/<name>``.
    output_storage_options
        fsspec options for ``output``.
    side_inputs
        Reference datasets, not split, available on every worker.
    arguments
        The entry script's ``sys.argv[1:]``; Dataset items become local paths.
    allow_reuse
        Reuse a completed identical job, resume an interrupted one.
    models
        ``{name: path or URL}`` (or ``{name: {path: ..., storage_options: ...}}``): what
        ``azureml.core.Model.get_model_path(name)`` returns in the entry script.
    """

    def __init__(self, name: str, parallel_run_config: ParallelRunConfig,
                 inputs: Sequence[DatasetBase], output: str | None = None,
                 output_storage_options: dict[str, Any] | None = None,
                 side_inputs: Sequence[DatasetBase] | None = None,
                 arguments: Sequence[Any] | None = None, allow_reuse: bool = True,
                 models: dict[str, Any] | None = None) -> None:
        checker = Checker()
        if parallel_run_config is None:
            checker.add("parallel_run_config", "is required", None,
                        "Pass parallel_run_config=ParallelRunConfig(entry_script='score.py')")
        if inputs is None:
            checker.add("inputs", "is required", None,
                        "Pass inputs=[Dataset.Tabular.from_parquet_files('data/*.parquet')]")
        values = check_step(checker, name, parallel_run_config, inputs, output,
                            output_storage_options, side_inputs, arguments, allow_reuse,
                            models=models)
        checker.raise_if_any()
        self.name: str = name
        # Azure's own options in arguments may set parameters (daskprs.azure_arguments)
        self.parallel_run_config: ParallelRunConfig = values["config"] or parallel_run_config
        self.inputs: list[DatasetBase] = values["inputs"]
        self.side_inputs: list[DatasetBase] = values["side_inputs"]
        self.output: str = values["output"]
        self.output_storage_options: dict[str, Any] = dict(output_storage_options or {})
        self.arguments: list[Any] = list(arguments or [])
        self.allow_reuse = allow_reuse
        self.mini_batch_size: MiniBatchSize = values["mini_batch_size"]
        self.models: tuple[ModelSource, ...] = values["models"]

    @property
    def kind(self) -> str:
        """``"tabular"`` or ``"file"``."""
        return self.inputs[0].kind

    def run(self, client: Any = None, progress: bool = True) -> JobResult:
        """Run the step and return its :class:`~daskprs.result.JobResult`.

        Parameters
        ----------
        client
            A ``distributed.Client``, a scheduler address (``host:port`` means
            ``tcp://host:port``), or None (see the README's "Where it runs").
        progress
            Show a progress bar (tqdm) on stderr or as a notebook widget.

        Raises
        ------
        ConfigError
            When ``client`` is a string that is not an address, or the call would start
            a LocalCluster from module-level code outside the main guard.
        """
        refuse_worker_import()
        client = _client_address(client)
        from daskprs.cluster import starts_local_cluster
        from daskprs.job import run_step

        target = client if client is not None else self.parallel_run_config.compute_target
        if starts_local_cluster(target):
            refuse_unguarded_call()
        return run_step(self, client=client, progress=progress)

    def validate(self) -> PlanSummary:
        """Run every check that needs no cluster, as ``daskprs validate`` does.

        Lists the inputs, plans the mini-batches, checks the entry script and the output
        folder; starts no cluster and creates nothing.

        Returns
        -------
        PlanSummary
            The plan: input files, mini-batches, items, output, fingerprint; ``str()`` of
            it is the line ``daskprs validate`` prints.

        Raises
        ------
        InputError
            When an input matches nothing or cannot be read.
        OutputError
            When the output folder cannot be used.
        """
        from daskprs.job import prepare

        prepared = prepare(self)
        plan = prepared.plan
        return PlanSummary(name=self.name,
                           input_files=plan.file_count or len(self.inputs),
                           mini_batches=len(plan.mini_batches),
                           mini_batch_size=str(self.mini_batch_size), items=plan.total_items,
                           output=prepared.output.url, fingerprint=prepared.fingerprint)

    def __repr__(self) -> str:
        return f"ParallelRunStep(name={self.name!r}, inputs={len(self.inputs)}, " \
               f"output={self.output!r})"


def _client_address(client: Any) -> Any:
    """A scheduler address given as ``client=`` with its scheme (``host:port`` is
    ``tcp://host:port``); anything else that is a string is refused."""
    if not isinstance(client, str) or client in ("local", "inline"):
        return client
    try:
        return scheduler_address(client)
    except AddressError as exc:
        raise ConfigError([Problem("client", "keyword argument", exc.reason, client,
                                   address_fix(exc, "client={!r}"))]) from None


def check_step(checker: Checker, name: Any, config: Any, inputs: Any, output: Any,
               output_storage_options: Any, side_inputs: Any, arguments: Any,
               allow_reuse: Any, output_action: str | None = None,
               config_prefix: str = "", models: Any = None,
               models_base: str | None = None) -> dict[str, Any]:
    """Check a step's parameters; return normalized values.

    ``config`` or ``inputs`` None means they were reported already (the YAML loader
    checks the ``parallel_run_config`` section itself); ``output_action`` then comes
    from the raw section, and ``config_prefix`` names config parameters in messages.
    ``models_base``: the folder relative model paths start from (the YAML file's).
    """
    values: dict[str, Any] = {"inputs": [], "side_inputs": [], "output": None,
                              "mini_batch_size": None, "config": None, "models": ()}
    check_name(checker, name)
    if config is not None and not isinstance(config, ParallelRunConfig):
        checker.add("parallel_run_config", "must be a ParallelRunConfig", type(config).__name__,
                    "Pass parallel_run_config=ParallelRunConfig(entry_script='score.py', ...)")
    if inputs is not None:
        values["inputs"] = _check_inputs(checker, "inputs", inputs, "input", required=True)
    values["side_inputs"] = _check_inputs(checker, "side_inputs", side_inputs or [],
                                          "side_input", required=False)
    kinds = {d.kind for d in values["inputs"]}
    if len(kinds) > 1:
        checker.add("inputs", "mixes tabular and file inputs", sorted(kinds),
                    "Give one kind of input per step; run a second step for the other kind")
    action = output_action or getattr(config, "output_action", "append_row")
    if output is None:
        if action != "summary_only":
            checker.add("output", f"is required for output_action {action!r}", None,
                        "Give output='out/<name>' (None is allowed only with summary_only)")
        else:
            values["output"] = normalize_url(os.path.join("daskprs-runs", str(name)))
    elif not isinstance(output, (str, os.PathLike)) or not str(output).strip():
        checker.add("output", "must be a folder path or URL", output, "Use output='out/score'")
    else:
        values["output"] = normalize_url(os.fspath(output))
    if values["output"] is not None:
        check_output_apart(checker, values["output"], [
            (str(d.name), path) for d in values["inputs"] + values["side_inputs"]
            for path in getattr(d, "paths", ())])
    if output_storage_options is not None and not isinstance(output_storage_options, dict):
        checker.add("output_storage_options", "must be a mapping", output_storage_options,
                    "Use output_storage_options={'key': ..., 'secret': ...}")
    if isinstance(config, ParallelRunConfig):
        config = apply_azure_options(checker, config, arguments,
                                     config_prefix or "parallel_run_config.")
        values["config"] = config
    _check_arguments(checker, arguments)
    values["models"] = check_models(checker, models, getattr(config, "script_path", None),
                                    models_base)
    if not isinstance(allow_reuse, bool):
        checker.add("allow_reuse", "must be true or false", allow_reuse, "Use True or False")
    if len(kinds) == 1 and isinstance(config, ParallelRunConfig):
        kind = kinds.pop()
        values["mini_batch_size"] = _size_for(checker, config, kind, config_prefix)
        if config.partition_keys:
            split = check_partition_keys(checker, list(config.partition_keys),
                                         values["inputs"], kind, config.mini_batch_size,
                                         config_prefix)
            values["mini_batch_size"] = split if values["mini_batch_size"] else None
    return values


def check_name(checker: Checker, name: Any) -> None:
    """Check a step name; the fix suggests a name that passes."""
    if isinstance(name, str) and 3 <= len(name) <= 32 and STEP_NAME.match(name):
        return
    suggestion = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")[:32]
    if not suggestion[:1].isalpha():
        suggestion = f"score-{suggestion}".strip("-")
    suggestion = suggestion[:32].rstrip("-")
    if len(suggestion) < 3 or not STEP_NAME.match(suggestion):
        suggestion = "score"
    checker.add("name", "must be 3-32 characters of a-z, 0-9 and -, starting with a letter "
                "and not ending with -", name, f"Use a name such as {suggestion!r}")


def _check_inputs(checker: Checker, parameter: str, inputs: Any, prefix: str,
                  required: bool) -> list[DatasetBase]:
    if isinstance(inputs, DatasetBase):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)):
        checker.add(parameter, "must be a list of datasets", type(inputs).__name__,
                    "Use inputs=[Dataset.Tabular.from_parquet_files('data/*.parquet')]")
        return []
    if required and not inputs:
        checker.add(parameter, "must name at least one dataset", inputs,
                    "Use inputs=[Dataset.Tabular.from_parquet_files('data/*.parquet')]")
    named: list[DatasetBase] = []
    for position, dataset in enumerate(inputs):
        if not isinstance(dataset, (TabularDataset, FileDataset)):
            checker.add(f"{parameter}[{position}]", "is not a Dataset", type(dataset).__name__,
                        "Build it with Dataset.Tabular.* or Dataset.File.from_files")
            continue
        if dataset.name is None:
            dataset = dataset.as_named_input(f"{prefix}{position}")  # type: ignore[assignment]
        named.append(dataset)
    names = [d.name for d in named]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):  # type: ignore[type-var]
        checker.add(parameter, "has two inputs with one name", duplicate,
                    "Give each a unique .as_named_input(name)")
    return named


def _check_arguments(checker: Checker, arguments: Any) -> None:
    if arguments is None:
        return
    if not isinstance(arguments, (list, tuple)):
        checker.add("arguments", "must be a list", arguments,
                    "Use arguments=['--model', 'model.joblib']")
        return
    if arguments and not (isinstance(arguments[0], str) and arguments[0].startswith("-")):
        checker.add("arguments[0]", "must be an option starting with '-'", arguments[0],
                    "Start the list with an option name such as '--model'")
    for position, item in enumerate(arguments):
        if isinstance(item, bool) or item is None or isinstance(item, (list, dict, tuple)):
            checker.add(f"arguments[{position}]", "must be a string or number", item,
                        f"Quote it: '{item}'" if item is not None else "Quote it: 'null'")
        elif isinstance(item, (DatasetBase, str, int, float)):
            continue  # Azure's own options are read by daskprs.azure_arguments
        else:
            checker.add(f"arguments[{position}]", "must be a string or number",
                        type(item).__name__, "Pass str(value)")


def _size_for(checker: Checker, config: ParallelRunConfig, kind: str,
              prefix: str) -> MiniBatchSize | None:
    value = config.mini_batch_size
    try:
        if kind == "file":
            return parse_file_size(DEFAULT_FILES if value is None else value)
        return parse_tabular_size(DEFAULT_TABULAR if value is None else value)
    except SizeError as exc:
        checker.add(f"{prefix}mini_batch_size", exc.reason, value, size_fix(
            exc, "Use a number of files such as 10" if kind == "file"
            else "Use bytes such as '1MB' or rows such as '5000 rows'"))
        return None
