"""The ``_daskprs/`` folder of an output: attempt markers, results, commit records, lock.

::

    _daskprs/
      lock.json                          the live job (pid, host, run_id)
      fingerprint.json                   fingerprint and status of the last job
      attempts/<run_id>/<id>.<n>.json    started-marker of attempt n, rewritten with its outcome
      results/<id>.<run_id>.<n>.<ext>    what attempt n returned, before it is committed
      committed/<id>.json                the commit point: first record written wins
      assembly/                          the final output while it is being written
"""

from __future__ import annotations

import json
from typing import Any

from daskprs.storage import Location, create_exclusive, read_bytes_or_none, write_atomic

STATE_DIR = "_daskprs"


class StateStore:
    """Read and write the commit protocol's files under ``<output>/_daskprs/``.

    Parameters
    ----------
    output
        The job's output folder.
    """

    def __init__(self, output: Location) -> None:
        self.output = output
        self.fs = output.fs
        self.root = output.join(STATE_DIR)

    def path(self, *parts: str) -> str:
        """A path below ``_daskprs/``."""
        return "/".join([self.root, *parts])

    def committed(self, mini_batch_id: str) -> dict[str, Any] | None:
        """The committed record of a mini-batch, or None."""
        data = read_bytes_or_none(self.fs, self.path("committed", f"{mini_batch_id}.json"))
        return None if data is None else json.loads(data)

    def commit(self, record: dict[str, Any]) -> bool:
        """Publish a record; False when another attempt committed first."""
        data = json.dumps(record).encode()
        return create_exclusive(self.fs, self.path("committed", f"{record['id']}.json"), data)

    def claim_attempt(self, run_id: str, mini_batch_id: str, marker: dict[str, Any],
                      limit: int) -> tuple[int, list[dict[str, Any]]]:
        """Write the started-marker of the next attempt; return its number and earlier markers.

        Returns ``(0, markers)`` when ``limit`` markers exist already.
        """
        earlier: list[dict[str, Any]] = []
        for number in range(1, limit + 1):
            path = self.path("attempts", run_id, f"{mini_batch_id}.{number}.json")
            if create_exclusive(self.fs, path, json.dumps({**marker, "attempt": number}).encode()):
                return number, earlier
            data = read_bytes_or_none(self.fs, path)
            earlier.append(json.loads(data) if data else {"attempt": number, "status": "started"})
        return 0, earlier

    def finish_attempt(self, run_id: str, mini_batch_id: str, attempt: dict[str, Any]) -> None:
        """Rewrite an attempt's marker with its outcome."""
        path = self.path("attempts", run_id, f"{mini_batch_id}.{attempt['attempt']}.json")
        write_atomic(self.fs, path, json.dumps(attempt).encode())

    def result_path(self, mini_batch_id: str, run_id: str, attempt: int, ext: str) -> str:
        """Where an attempt writes its result before committing."""
        return self.path("results", f"{mini_batch_id}.{run_id}.{attempt}.{ext}")
