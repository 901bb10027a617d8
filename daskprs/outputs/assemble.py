"""Assemble the final output from committed results, in mini-batch order.

The client feeds records as they arrive (any order); each assembler writes what is
ready in order from the task bundles (one read per bundle), so its memory does not grow
with the output, and publishes the final file or dataset atomically on :meth:`commit`.
Failed and canceled jobs discard.
"""

from __future__ import annotations

import io
import json
import logging
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from daskprs.commit import STATE_DIR, BundleReader
from daskprs.serialize import OutputColumns
from daskprs.storage import AtomicWriter, Location, write_atomic
from daskprs.storage.location import file_version

logger = logging.getLogger(__name__)


class OrderedAssembler:
    """Base: release records in mini-batch order to :meth:`_write`.

    Parameters
    ----------
    output
        The output folder.
    total
        Mini-batches in the job (their indices are 0 to ``total - 1``).
    """

    def __init__(self, output: Location, total: int) -> None:
        self.output = output
        self.total = total
        self.position = 0
        self.waiting: dict[int, dict[str, Any]] = {}
        self.bundles = BundleReader(output.fs)

    def add(self, record: dict[str, Any]) -> None:
        """Take the final record of a mini-batch; write every record now in order."""
        self.waiting[record["index"]] = record
        while self.position < self.total and self.position in self.waiting:
            ready = self.waiting.pop(self.position)
            if ready["status"] == "succeeded" and ready.get("payload"):
                self._write(ready)
            self.position += 1

    def take_rejected(self) -> list[dict[str, Any]]:
        """Records whose results could not be assembled (and now count as failed)."""
        return []

    def commit(self) -> None:
        """Publish the output."""

    def published(self) -> dict[str, Any]:
        """What :meth:`commit` published, for ``job_result.json`` (readers and the reuse
        check trust exactly this)."""
        return {}

    def prune(self) -> None:
        """After the job result names the new output: remove what only the previous one
        used."""

    def discard(self) -> None:
        """Drop what was written; a previous output stays."""

    def _write(self, record: dict[str, Any]) -> None:
        """summary_only: nothing to write."""


class AppendRowAssembler(OrderedAssembler):
    """Concatenate result lines into one file, published by rename or a single upload."""

    def __init__(self, output: Location, total: int, file_name: str) -> None:
        super().__init__(output, total)
        self.fs = output.fs
        self.writer = AtomicWriter(self.fs, output.join(file_name),
                                   temp_dir=output.join(STATE_DIR, "assembly"))
        self.columns = OutputColumns()

    def _write(self, record: dict[str, Any]) -> None:
        self.columns.add(record.get("columns"))
        self.writer.write(self.bundles.payload(record))

    def commit(self) -> None:
        """Rename (local) or complete the upload (object storage)."""
        self.writer.commit()

    def published(self) -> dict[str, Any]:
        """The file's size and version (mtime or ETag) right after it was published, and
        the column names of DataFrame results (``read_output`` restores them)."""
        return {"published": published_version(self.fs, self.writer.path),
                "columns": self.columns.names}

    def discard(self) -> None:
        """Remove the partial file."""
        self.writer.discard()


class ParquetAssembler(OrderedAssembler):
    """Collect result parts; publish ``data/part-NNNNN-<run>.parquet`` with one unified
    schema, and a manifest ``data/_manifest-<run>.json`` naming them.

    Part names are new for every run, and the parts of the previous output are removed only
    after the job result names the new manifest (:meth:`prune`): a reader of the job result
    sees the old output or the new one, whenever the job is killed, on any filesystem.
    """

    def __init__(self, output: Location, total: int, run_id: str = "") -> None:
        super().__init__(output, total)
        self.fs = output.fs
        self.run_id = run_id
        self.width = max(5, len(str(total)))
        self.parts: list[tuple[int, dict[str, Any], pa.Schema]] = []
        self.schema: pa.Schema | None = None
        self.rejected: list[dict[str, Any]] = []
        self.names: list[str] = []
        self.sizes: list[int] = []

    def _write(self, record: dict[str, Any]) -> None:
        schema = pq.read_schema(io.BytesIO(self.bundles.payload(record)))
        if self.schema is None:
            self.schema = schema
        else:
            try:
                self.schema = pa.unify_schemas([self.schema, schema],
                                               promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                error = (f"SchemaConflict: the result schema of {record['id']} cannot be "
                         f"unified with the earlier mini-batches' ({exc}). earlier: "
                         f"{_one_line(self.schema)}; {record['id']}: {_one_line(schema)}")
                self.rejected.append({**record, "error": error})
                return
        self.parts.append((record["index"], record, schema))

    def take_rejected(self) -> list[dict[str, Any]]:
        """Records whose schema conflicted; each is returned once."""
        rejected, self.rejected = self.rejected, []
        return rejected

    def commit(self) -> None:
        """Write the parts (cast to the unified schema where needed), then the manifest."""
        data = self.output.join("data")
        for index, record, schema in self.parts:
            name = f"part-{index:0{self.width}d}-{self.run_id}.parquet"
            size = self._place(record, f"{data}/{name}", schema)
            self.names.append(name)
            self.sizes.append(size)
        write_atomic(self.fs, f"{data}/{self.manifest_name}", json.dumps(
            {"run_id": self.run_id, "parts": self.names, "sizes": self.sizes}).encode())

    @property
    def manifest_name(self) -> str:
        """The manifest's file name within ``data/``."""
        return f"_manifest-{self.run_id}.json"

    def published(self) -> dict[str, Any]:
        """The manifest that names the parts."""
        return {"manifest": f"data/{self.manifest_name}"}

    def prune(self) -> None:
        """Remove every file of ``data/`` that the new manifest does not name."""
        prune_data(self.output, {*self.names, self.manifest_name})

    def _place(self, record: dict[str, Any], destination: str, schema: pa.Schema) -> int:
        data = self.bundles.payload(record)
        if self.schema is not None and not schema.equals(self.schema):
            buffer = io.BytesIO()
            pq.write_table(pq.read_table(io.BytesIO(data)).cast(self.schema), buffer)
            data = buffer.getvalue()
        if isinstance(self.fs, LocalFileSystem):
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            with open(destination, "wb") as handle:
                handle.write(data)
        else:
            self.fs.pipe_file(destination, data)
        return len(data)


def _one_line(schema: pa.Schema) -> str:
    return ", ".join(f"{field.name}: {field.type}" for field in schema)


def prune_data(output: Location, keep: set[str]) -> None:
    """Remove the files of ``<output>/data/`` whose names are not in ``keep``."""
    fs, data = output.fs, output.join("data")
    if not fs.exists(data):
        return
    stale = [path for path in fs.ls(data, detail=False)
             if path.rstrip("/").rsplit("/", 1)[-1] not in keep]
    if stale:
        fs.rm(stale)


def remove_unpublished_parts(output: Location, published: dict[str, Any] | None) -> None:
    """Remove Parquet parts a killed job wrote that no published manifest names (the
    output a job result names is never touched)."""
    manifest = (published or {}).get("manifest")
    if not manifest:
        return
    try:
        listed = json.loads(output.fs.cat_file(output.join(manifest)))
    except FileNotFoundError:
        return
    prune_data(output, {*listed["parts"], manifest.rsplit("/", 1)[-1]})


def published_version(fs: Any, path: str) -> dict[str, Any]:
    """Size and version (mtime or ETag) of a published file, as the reuse check compares."""
    info = fs.info(path)
    return {"size": int(info.get("size") or 0), "version": file_version(info)}


def make_assembler(action: str, output: Location, file_name: str,
                   total: int, run_id: str = "") -> OrderedAssembler:
    """The assembler for an ``output_action``."""
    if action == "append_row":
        return AppendRowAssembler(output, total, file_name)
    if action == "parquet":
        return ParquetAssembler(output, total, run_id)
    return OrderedAssembler(output, total)
