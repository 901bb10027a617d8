"""StateStore: the files of the commit protocol under ``<output>/_daskprs/``."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from daskprs.commit.bundle import encode_bundle, read_header
from daskprs.storage import Location, create_exclusive, read_bytes_or_none, write_atomic

STATE_DIR = "_daskprs"
logger = logging.getLogger(__name__)


def task_name(batches: Sequence[Any], submission: int) -> str:
    """``<first index>-<last index>-<submission>``: the same for every execution of one
    submitted task, new for every resubmission."""
    return f"{batches[0].index}-{batches[-1].index}-{submission}"


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

    def bundle_path(self, run_id: str, task: str) -> str:
        """Where a task's bundle is committed."""
        return self.path("commits", run_id, f"{task}.bundle")

    # -- the job --------------------------------------------------------------------
    def read_job(self) -> dict[str, Any] | None:
        """``fingerprint.json``: the last job's fingerprint, status, run and resume chain."""
        data = read_bytes_or_none(self.fs, self.path("fingerprint.json"))
        return json.loads(data) if data else None

    def write_job(self, fingerprint: str, status: str, run_id: str, runs: list[str],
                  published: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None) -> None:
        """Record the job's fingerprint, status, the runs whose bundles it trusts and what
        the last completed job published; ``extra``: more keys (``--retry-failed``'s plan
        fingerprint, script fingerprints by run, failed mini-batches)."""
        write_atomic(self.fs, self.path("fingerprint.json"), json.dumps(
            {**(extra or {}), "fingerprint": fingerprint, "status": status, "run_id": run_id,
             "runs": runs, "published": published}).encode())

    def write_readme(self, text: str) -> None:
        """``_daskprs/readme.txt``: the protocol, for whoever opens the folder."""
        write_atomic(self.fs, self.path("readme.txt"), text.encode())

    # -- commits --------------------------------------------------------------------
    def commit(self, run_id: str, task: str, records: list[dict[str, Any]],
               payloads: list[bytes | None]) -> list[dict[str, Any]]:
        """Commit a task's records and results; return the committed records (this
        task's, or those of an earlier execution of the same task that won)."""
        path = self.bundle_path(run_id, task)
        if create_exclusive(self.fs, path, encode_bundle(run_id, task, records, payloads)):
            return [_located(record, payload, path, run_id)
                    for record, payload in zip(records, _spans(payloads), strict=True)]
        header = read_header(self.fs, path)
        return [{**record, "bundle": path} for record in header["records"]]

    def read_commit(self, run_id: str, task: str) -> list[dict[str, Any]] | None:
        """The committed records of a task, or None when it has not committed."""
        path = self.bundle_path(run_id, task)
        try:
            header = read_header(self.fs, path)
        except FileNotFoundError:
            return None
        return [{**record, "bundle": path} for record in header["records"]]

    def committed_records(self, runs: list[str]) -> dict[int, dict[str, Any]]:
        """Succeeded records of the bundles of ``runs``, by mini-batch index; the
        earliest run's record wins where two runs committed the same mini-batch."""
        found: dict[int, dict[str, Any]] = {}
        for run_id in runs:
            folder = self.path("commits", run_id)
            if not self.fs.exists(folder):
                continue
            for path in sorted(self.fs.ls(folder, detail=False)):
                if not path.endswith(".bundle"):
                    continue
                try:
                    header = read_header(self.fs, path)
                except (ValueError, FileNotFoundError):
                    logger.warning("ignoring %s: not a complete bundle", path)
                    continue
                if header.get("run_id") != run_id:
                    continue
                for record in header["records"]:
                    if record["status"] == "succeeded" and record["index"] not in found:
                        found[record["index"]] = {**record, "bundle": path}
        return found

    def committed_ids(self) -> set[str]:
        """Ids of the mini-batches that succeeded in any bundle now in the output (for
        tools and tests that watch a running job)."""
        commits = self.path("commits")
        if not self.fs.exists(commits):
            return set()
        ids = set()
        for path in self.fs.find(commits):
            if path.endswith(".bundle"):
                with contextlib.suppress(FileNotFoundError, ValueError):
                    ids.update(r["id"] for r in read_header(self.fs, path)["records"]
                               if r["status"] == "succeeded")
        return ids

    def clear(self, keep_runs: Sequence[str] = ()) -> None:
        """Remove bundles of runs not in ``keep_runs`` and the assembly folder, by prefix
        (one batched delete per 1,000 objects on S3 and Azure)."""
        commits = self.path("commits")
        if self.fs.exists(commits):
            for folder in self.fs.ls(commits, detail=False):
                if folder.rstrip("/").rsplit("/", 1)[-1] not in keep_runs:
                    self.fs.rm(folder, recursive=True)
        for stale in ("assembly", "committed", "results", "attempts"):  # + older layouts
            if self.fs.exists(self.path(stale)):
                self.fs.rm(self.path(stale), recursive=True)


def _spans(payloads: list[bytes | None]) -> list[list[int] | None]:
    offset, spans = 0, []
    for payload in payloads:
        if payload:
            spans.append([offset, len(payload)])
            offset += len(payload)
        else:
            spans.append(None)
    return spans


def _located(record: dict[str, Any], span: list[int] | None, path: str,
             run_id: str) -> dict[str, Any]:
    return {**record, "payload": span, "bundle": path, "run_id": run_id}
