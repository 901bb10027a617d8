"""EntryScript: what an entry script can ask about the job it runs in.

Inside a job the runner process sets ``DASKPRS_*`` environment variables before the
script is imported; outside a job (local debugging) the same calls work with a logger on
stderr and ``./daskprs-local/`` as output folder.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from daskprs.storage.secrets import RedactingFilter

ENV_LOG_DIR = "DASKPRS_LOG_DIR"
ENV_OUTPUT_DIR = "DASKPRS_OUTPUT_DIR"
ENV_AGENT_NAME = "DASKPRS_AGENT_NAME"
ENV_WORKING_DIR = "DASKPRS_WORKING_DIR"
ENV_LOG_LEVEL = "DASKPRS_LOGGING_LEVEL"
LOGGER_NAME = "daskprs.entry_script"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class EntryScript:
    """Helper for entry scripts, as ``azureml_user.parallel_run.EntryScript``.

    Attributes
    ----------
    logger
        Writes to ``logs/user/entry_script_log/<worker>.log.txt`` in a job, stderr outside;
        the job's secrets are redacted.
    log_dir
        The job's ``logs/`` folder (``./daskprs-local/logs`` outside a job).
    output_dir
        A local folder for the script's own output files.
    agent_name
        The worker's name, as in the log file names.
    working_dir
        The runner's working directory.
    """

    def __init__(self) -> None:
        in_job = ENV_AGENT_NAME in os.environ
        local = os.path.abspath("daskprs-local")
        self.agent_name = os.environ.get(ENV_AGENT_NAME, "local")
        self.log_dir = os.environ.get(ENV_LOG_DIR, os.path.join(local, "logs"))
        self.output_dir = os.environ.get(ENV_OUTPUT_DIR, local)
        self.working_dir = os.environ.get(ENV_WORKING_DIR, os.getcwd())
        if not in_job:
            os.makedirs(self.output_dir, exist_ok=True)
        self.logger = _entry_script_logger(in_job, self.log_dir, self.agent_name)

    def __repr__(self) -> str:
        return f"EntryScript(agent_name={self.agent_name!r}, output_dir={self.output_dir!r})"


def _entry_script_logger(in_job: bool, log_dir: str, agent_name: str) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if logger.handlers:
        return logger
    if in_job:
        folder = os.path.join(log_dir, "user", "entry_script_log")
        os.makedirs(folder, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(
            os.path.join(folder, f"{agent_name}.log.txt"), encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(RedactingFilter())  # the job's secrets (the runner remembers them)
    logger.addHandler(handler)
    logger.setLevel(os.environ.get(ENV_LOG_LEVEL, "INFO"))
    logger.propagate = False
    return logger


class MiniBatchContext:
    """The second argument of ``run(mini_batch, mini_batch_context)``.

    Attributes
    ----------
    partition_key_value
        The partition key values of this mini-batch (dict), or None.
    mini_batch_id
        ``<input name>-<ordinal>``.
    attempt
        1 for the first attempt.
    input_name
        The input the mini-batch comes from.
    dataset
        A Dataset of this mini-batch's own data, named as its input (as Azure's "subset of
        the input dataset"): its files (file inputs) or the file its rows come from
        (tabular); None for an in-memory DataFrame input.
    """

    def __init__(self, mini_batch_id: str, attempt: int, input_name: str,
                 partition_key_value: dict | None = None, dataset: Any = None) -> None:
        self.mini_batch_id = mini_batch_id
        self.attempt = attempt
        self.input_name = input_name
        self.partition_key_value = partition_key_value
        self.dataset = dataset

    def __repr__(self) -> str:
        return (f"MiniBatchContext(mini_batch_id={self.mini_batch_id!r}, "
                f"attempt={self.attempt}, partition_key_value={self.partition_key_value!r})")
