"""JobSpec: the frozen, validated part of a job that travels to the workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run mini-batches of one job.

    Parameters
    ----------
    run_id
        This execution's id; the plugin is named ``daskprs-<run_id>``.
    kind
        ``"tabular"`` or ``"file"``.
    script_path
        Absolute path of the entry script file, or None when ``script_object`` is set.
    script_object
        cloudpickle bytes of an entry-script object (notebooks).
    source_directory
        Put first on ``sys.path`` and used as working directory.
    arguments
        ``sys.argv[1:]`` of the runner.
    environment_variables
        Set in the runner before the script is imported.
    output_url, output_storage_options
        The output folder.
    output_action
        ``append_row``, ``parquet`` or ``summary_only``.
    append_row_separator
        Separator for DataFrame results.
    run_invocation_timeout
        Seconds one ``run()`` may take.
    run_max_try
        Attempts per mini-batch.
    logging_level
        For daskprs' worker log and the entry script logger.
    owned_cluster
        Whether daskprs started the cluster (worker names become ``worker-<k>``).
    secrets
        Values the worker's logs must not contain.
    remote_side_inputs
        ``(url, storage_options)`` of side inputs on object storage: each worker downloads
        them once and passes local paths in ``arguments`` instead of the URLs.
    models
        ``(name, url, storage_options)`` of the step's ``models`` (what
        ``Model.get_model_path`` returns); remote ones are downloaded once per worker.
    """

    run_id: str
    kind: str
    script_path: str | None
    script_object: bytes | None
    source_directory: str | None
    arguments: tuple[str, ...]
    environment_variables: dict[str, str]
    output_url: str
    output_storage_options: dict[str, Any] = field(default_factory=dict)
    output_action: str = "append_row"
    append_row_separator: str = " "
    run_invocation_timeout: float = 60
    run_max_try: int = 3
    logging_level: str = "INFO"
    owned_cluster: bool = True
    secrets: tuple[str, ...] = ()
    remote_side_inputs: tuple[tuple[str, dict[str, Any]], ...] = ()
    models: tuple[tuple[str, str, dict[str, Any]], ...] = ()

    @property
    def plugin_name(self) -> str:
        """The WorkerPlugin's name: one per job, so jobs sharing a cluster coexist."""
        return f"daskprs-{self.run_id}"

    @property
    def init_timeout(self) -> float:
        """How long ``init()`` may take before the worker is unhealthy."""
        return 3 * self.run_invocation_timeout + 30


def agent_name(worker_name: Any, owned_cluster: bool) -> str:
    """The name a worker has in log file names and ``EntryScript().agent_name``."""
    text = str(worker_name)
    if owned_cluster and text.isdigit():
        return f"worker-{text}"
    return text.replace(":", "_").replace("/", "_")
