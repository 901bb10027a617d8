"""JobResult: what a job came to, as an object, a dict, text and HTML."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from daskprs.errors import JobFailedError, OutputError
from daskprs.storage import Location
from daskprs.storage.location import file_version

COMPLETED, FAILED, CANCELED = "Completed", "Failed", "Canceled"


@dataclass
class JobResult:
    """The outcome of one job.

    Attributes mirror ``logs/job_result.json``: ``status`` (``Completed``, ``Failed`` or
    ``Canceled``), ``reused``, ``run_id``, ``fingerprint``, ``started``, ``finished``,
    ``seconds``, ``mini_batches``, ``items``, ``attempts``, ``thresholds``,
    ``first_errors``, ``columns``, ``output``, ``daskprs_version``, ``description``;
    ``reason`` says why a job failed; ``stragglers`` counts backup attempts
    (``backups``, ``backups_won``) when ``straggler_factor`` is set;
    ``devices`` maps each worker whose runner had GPUs to its ``CUDA_VISIBLE_DEVICES``;
    ``runs``: the runs whose mini-batches the output
    holds (``run_id``, ``script`` fingerprint, ``mini_batches``, ``retry_failed``).
    """

    status: str
    reused: bool = False
    run_id: str = ""
    fingerprint: str = ""
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    mini_batches: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    first_errors: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] | None = None
    output: dict[str, Any] = field(default_factory=dict)
    daskprs_version: str = ""
    description: str | None = None
    reason: str = ""
    stragglers: dict[str, int] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """Whether the job completed."""
        return self.status == COMPLETED

    def to_dict(self) -> dict[str, Any]:
        """The result as ``job_result.json`` holds it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        """Rebuild a result from ``job_result.json``."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def load(cls, output: str, storage_options: dict[str, Any] | None = None) -> JobResult:
        """Read the job result of an output folder.

        Raises
        ------
        OutputError
            When the folder does not exist or holds no ``logs/job_result.json``.
        """
        location = Location(output, dict(storage_options or {}))
        try:
            data = location.fs.cat_file(location.join("logs", "job_result.json"))
        except FileNotFoundError as exc:
            if not location.fs.exists(location.path):
                raise OutputError(f"output: no such folder, got {output!r}. Give the output "
                                  f"folder of a job (the output: of its config).") from exc
            raise OutputError(f"output: not a daskprs output folder (it has no "
                              f"logs/job_result.json), got {output!r}. Give the folder a job "
                              f"wrote.") from exc
        result = cls.from_dict(json.loads(data))
        result._storage_options = dict(storage_options or {})
        return result

    def raise_for_status(self) -> JobResult:
        """Raise :class:`~daskprs.errors.JobFailedError` unless the job completed."""
        if self.status != COMPLETED:
            raise JobFailedError(self.summary(), self)
        return self

    def read_output(self, storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
        """The output as a DataFrame: the ``append_row`` file or the Parquet dataset.

        ``append_row`` values come back as written (quoted values unquoted); the columns
        are named as the DataFrame results named them (``output["columns"]``), else
        numbered from 0. An empty value reads as missing (NaN).

        Parameters
        ----------
        storage_options
            fsspec options for a remote output; by default those the job used (they are
            not saved in ``job_result.json``, so pass them for a result loaded from disk).

        Raises
        ------
        OutputError
            When the job did not complete, or wrote ``summary_only``.
        """
        if self.status != COMPLETED:
            raise OutputError(f"the job {self.status.lower()}; it published no output. "
                              f"See {self.output.get('url')}/logs/job_result.txt")
        options = storage_options if storage_options is not None else getattr(
            self, "_storage_options", {})
        location = Location(self.output["url"], options)
        action = self.output.get("action")
        if action == "append_row":
            names = self.output.get("columns")  # older outputs have none: numbered
            if names is not None and len(set(names)) != len(names):
                names = None
            with location.fs.open(location.join(self.output["file"]), "rb") as handle:
                return pd.read_csv(handle, sep=self.output.get("separator", " "), header=None,
                                   names=names, keep_default_na=False, na_values=[""])
        if action == "parquet":
            return _read_parquet_output(location, self.output.get("manifest"))
        raise OutputError("output_action 'summary_only' writes no output to read; the entry "
                          "script's own files are in the output folder")

    def output_changed(self, storage_options: dict[str, Any] | None = None) -> str:
        """Why the published output no longer is what this job published ('' when it is):
        the reuse check. Sizes and versions (mtime or ETag) recorded at publishing are
        compared; nothing is read."""
        options = storage_options if storage_options is not None else getattr(
            self, "_storage_options", {})
        location = Location(self.output["url"], options)
        fs = location.fs
        fs.invalidate_cache(location.path)  # another process published it
        published, manifest = self.output.get("published"), self.output.get("manifest")
        try:
            if published is not None:
                info = fs.info(location.join(self.output["file"]))
                version = file_version(info)
                if (int(info.get("size") or 0), str(version)) != (published["size"],
                                                                   published["version"]):
                    return f"its output {self.output['file']} was changed after it was written"
            if manifest is not None:
                listed = json.loads(fs.cat_file(location.join(manifest)))
                sizes = {info["name"].rstrip("/").rsplit("/", 1)[-1]: int(info.get("size") or 0)
                         for info in fs.ls(location.join("data"), detail=True)}
                for name, size in zip(listed["parts"], listed["sizes"], strict=True):
                    if sizes.get(name) != size:
                        return f"its output part data/{name} was deleted or changed"
        except FileNotFoundError as exc:
            return f"its output was deleted ({exc})"
        return ""

    def plot_timeline(self, path: str | None = None) -> Any:
        """The job's attempts as a timeline: one row per worker, one bar per attempt.

        Drawn from ``<output>/logs/sys/mini_batches.csv`` (the last run in it) with
        :func:`daskprs.timeline.plot_timeline`; needs ``pip install 'daskprs[plot]'``.

        Parameters
        ----------
        path
            Also write the figure to this local file (``.png``, ``.svg``, ``.pdf``).

        Returns
        -------
        matplotlib.figure.Figure
            Shown inline in Jupyter when it is the cell's value.

        Raises
        ------
        OutputError
            When the output folder holds no ``logs/sys/mini_batches.csv``.
        """
        from daskprs.timeline import plot_timeline

        location = Location(self.output["url"], getattr(self, "_storage_options", {}))
        try:
            with location.fs.open(location.join("logs", "sys", "mini_batches.csv"), "rb") as f:
                attempts = pd.read_csv(f, dtype=str, keep_default_na=False)
        except FileNotFoundError as exc:
            raise OutputError(f"{self.output.get('url')}: no logs/sys/mini_batches.csv to draw "
                              f"a timeline from. Give the folder a job wrote.") from exc
        return plot_timeline(attempts, path=path)

    def summary(self) -> str:
        """A short text summary: status, counts, time, first errors."""
        mb, items, tries = self.mini_batches, self.items, self.attempts
        lines = [self.status + (" (reused)" if self.reused else "")]
        if self.reason:
            lines.append(f"reason: {self.reason}")
        lines.append(f"mini-batches: {mb.get('succeeded', 0)} succeeded, {mb.get('failed', 0)} "
                     f"failed, {mb.get('reused', 0)} reused, of {mb.get('total', 0)}")
        lines.append(f"items: {items.get('succeeded', 0)} succeeded, {items.get('failed', 0)} "
                     f"failed, of {items.get('total', 0)}")
        lines.append(f"attempts: {tries.get('total', 0)} ({tries.get('failed', 0)} failed, "
                     f"{tries.get('timed_out', 0)} timed out, {tries.get('crashed', 0)} crashed,"
                     f" {tries.get('worker_lost', 0)} worker lost"
                     + (f", {tries['transient']} transient, retried uncharged"
                        if tries.get("transient") else "") + ")")
        if self.stragglers.get("backups"):
            lines.append(f"stragglers: {self.stragglers['backups']} backup attempts started, "
                         f"{self.stragglers.get('backups_won', 0)} committed first")
        if len(self.runs) > 1:
            lines.append("runs: " + "; ".join(
                f"{r['run_id']} (script {r['script']}"
                f"{', --retry-failed' if r['retry_failed'] else ''}): "
                f"{r['mini_batches']} mini-batches" for r in self.runs))
        lines.append(f"time: {self.seconds:.1f} s")
        if self.devices:
            lines.append("GPUs: " + ", ".join(f"{worker} {device}" for worker, device
                                              in sorted(self.devices.items())))
        lines.append(f"output: {self.output.get('url')}")
        for error in self.first_errors[:5]:
            lines.append(f"error: {error['mini_batch_id']} ({error['first_item']} .. "
                         f"{error['last_item']}): {error['error']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                       for k, v in self._html_rows())
        return f"<table>{rows}</table>"

    def _html_rows(self) -> list[tuple[str, str]]:
        mb, items = self.mini_batches, self.items
        rows = [("status", self.status + (" (reused)" if self.reused else "")),
                ("mini-batches", f"{mb.get('succeeded', 0)} succeeded, {mb.get('failed', 0)} "
                                 f"failed of {mb.get('total', 0)}"),
                ("items", f"{items.get('succeeded', 0)} succeeded, {items.get('failed', 0)} "
                          f"failed of {items.get('total', 0)}"),
                ("time", f"{self.seconds:.1f} s"),
                ("output", str(self.output.get("url"))),
                ("logs", f"{self.output.get('url')}/logs")]
        rows += [("error", f"{e['mini_batch_id']}: {e['error']}") for e in self.first_errors[:5]]
        return rows


def _read_parquet_output(location: Location, manifest: str | None) -> pd.DataFrame:
    """The parts a manifest names, in order (older outputs: the whole ``data/`` folder)."""
    location.fs.invalidate_cache(location.join("data"))  # another process published it
    if manifest is None:
        return pd.read_parquet(location.join("data"), filesystem=location.fs)
    listed = json.loads(location.fs.cat_file(location.join(manifest)))
    paths = [location.join("data", name) for name in listed["parts"]]
    if not paths:
        return pd.DataFrame()
    return pd.read_parquet(paths, filesystem=location.fs)
