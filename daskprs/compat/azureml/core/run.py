"""``azureml.core.run.Run``: ``Run.get_context()`` returns an offline run that writes the
metrics it is given to ``logs/user/metrics/<worker>.jsonl``, one JSON object a line."""

from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

_LOCK = threading.Lock()


class Run:
    """Azure's run context; in daskprs always an offline run (:class:`_OfflineRun`)."""

    _context: Run | None = None

    def __init__(self) -> None:
        self.id = f"OfflineRun_{uuid.uuid4()}"

    @property
    def metrics_file(self) -> str:
        """``<job logs>/user/metrics/<worker>.jsonl`` (``./daskprs-local/logs/...`` outside
        a job)."""
        agent = os.environ.get("DASKPRS_AGENT_NAME", "local")
        logs = os.environ.get("DASKPRS_LOG_DIR") or os.path.join(
            os.path.abspath("daskprs-local"), "logs")
        return os.path.join(logs, "user", "metrics", f"{agent}.jsonl")

    @classmethod
    def get_context(cls, allow_offline: bool = True, used_for_context_manager: bool = False,
                    **kwargs: Any) -> Run:
        """The run of this process (one per runner process)."""
        if Run._context is None:
            Run._context = _OfflineRun()
        return Run._context

    def log(self, name: str, value: Any, description: str = "", step: int | None = None
            ) -> None:
        """Record one value of the metric ``name``."""
        self._write({"kind": "log", "name": name, "value": value,
                     "description": description, "step": step})

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Record one row (its columns as keyword arguments) of the table ``name``."""
        self._write({"kind": "row", "name": name, "value": kwargs,
                     "description": description or ""})

    def log_list(self, name: str, value: list[Any], description: str = "") -> None:
        """Record a list of values of the metric ``name``."""
        self._write({"kind": "list", "name": name, "value": list(value),
                     "description": description})

    def log_table(self, name: str, value: dict[str, list[Any]], description: str = "") -> None:
        """Record a table, given as ``{column: [values]}``."""
        self._write({"kind": "table", "name": name, "value": dict(value),
                     "description": description})

    def _write(self, record: dict[str, Any]) -> None:
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                  "run_id": self.id, "pid": os.getpid(), **record}
        line = json.dumps(record, default=_plain) + "\n"
        with _LOCK:
            os.makedirs(os.path.dirname(self.metrics_file), exist_ok=True)
            with open(self.metrics_file, "a", encoding="utf-8") as handle:
                handle.write(line)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, metrics_file={self.metrics_file!r})"


class _OfflineRun(Run):
    """A run not tracked by any service (Azure's name for it)."""


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays as Python values; anything else as its text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
