"""A worker's local folders for a remote output: logs and ``EntryScript().output_dir``.

When the output is on local disk both are the output's own folders and nothing is
copied. When it is on object storage, logs are uploaded at most every 10 s and at the
end, and the files an attempt wrote to ``output_dir`` are uploaded when it commits
(those of failed attempts are discarded).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from daskprs.storage import Location

SYNC_SECONDS = 10.0


class LocalFiles:
    """Where a worker (or the inline runner) writes logs and attempt output files.

    Parameters
    ----------
    output
        The job's output folder.
    prefix
        Prefix of the temporary folder used for a remote output.
    """

    def __init__(self, output: Location, prefix: str) -> None:
        self.output = output
        self.remote = not output.is_local
        self.root = tempfile.mkdtemp(prefix=prefix) if self.remote else output.path
        self.log_dir = os.path.join(self.root, "logs")
        self.output_dir = os.path.join(self.root, "output") if self.remote else output.path
        self.staged_dir = os.path.join(self.root, "staged")
        os.makedirs(self.output_dir, exist_ok=True)
        self.synced = time.monotonic()

    def begin_attempt(self) -> None:
        """Empty ``output_dir`` of a remote output (files of a failed attempt go)."""
        if self.remote:
            shutil.rmtree(self.output_dir, ignore_errors=True)
            os.makedirs(self.output_dir, exist_ok=True)

    def keep_attempt(self) -> None:
        """Set aside what a succeeded attempt wrote to ``output_dir`` until its task
        commits (remote output only)."""
        if self.remote and os.listdir(self.output_dir):
            shutil.copytree(self.output_dir, self.staged_dir, dirs_exist_ok=True)
            self.begin_attempt()

    def publish_task(self, committed: bool) -> None:
        """Upload the files set aside by a task's succeeded attempts when the task's
        commit won; drop them otherwise."""
        if not self.remote or not os.path.isdir(self.staged_dir):
            return
        if committed and os.listdir(self.staged_dir):
            self.output.fs.put(self.staged_dir.rstrip("/") + "/", self.output.path,
                               recursive=True)
        shutil.rmtree(self.staged_dir, ignore_errors=True)

    def sync_logs(self, force: bool = False) -> None:
        """Upload the logs (remote output only) when forced or 10 s after the last time."""
        if not self.remote or not (force or time.monotonic() - self.synced >= SYNC_SECONDS):
            return
        self.output.fs.put(self.log_dir.rstrip("/") + "/", self.output.join("logs"),
                           recursive=True)
        self.synced = time.monotonic()
