"""Assemble the final output from committed results, in mini-batch order.

The client feeds records as they arrive (any order); each assembler writes what is
ready in order, so its memory does not grow with the output, and publishes the final
file or dataset atomically on :meth:`commit`. Failed and canceled jobs discard.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from daskprs.serialize import OutputColumns
from daskprs.state import STATE_DIR
from daskprs.storage import AtomicWriter, Location

logger = logging.getLogger(__name__)
_COPY_CHUNK = 8 * 1024 * 1024


class OrderedAssembler:
    """Base: release records in mini-batch order to :meth:`_write`.

    Parameters
    ----------
    output
        The output folder.
    order
        Every mini-batch index of the job, in order.
    """

    def __init__(self, output: Location, order: list[int]) -> None:
        self.output = output
        self.order = order
        self.position = 0
        self.waiting: dict[int, dict[str, Any]] = {}

    def add(self, record: dict[str, Any]) -> None:
        """Take the final record of a mini-batch; write every record now in order."""
        self.waiting[record["index"]] = record
        while self.position < len(self.order) and self.order[self.position] in self.waiting:
            ready = self.waiting.pop(self.order[self.position])
            if ready["status"] == "succeeded" and ready.get("result_file"):
                self._write(ready)
            self.position += 1

    def take_rejected(self) -> list[dict[str, Any]]:
        """Records whose results could not be assembled (and now count as failed)."""
        return []

    def commit(self) -> None:
        """Publish the output."""

    def discard(self) -> None:
        """Drop what was written; a previous output stays."""

    def _write(self, record: dict[str, Any]) -> None:
        """summary_only: nothing to write."""


class AppendRowAssembler(OrderedAssembler):
    """Concatenate result lines into one file, published by rename or a single upload."""

    def __init__(self, output: Location, order: list[int], file_name: str) -> None:
        super().__init__(output, order)
        self.fs = output.fs
        self.writer = AtomicWriter(self.fs, output.join(file_name),
                                   temp_dir=output.join(STATE_DIR, "assembly"))
        self.columns = OutputColumns()

    def _write(self, record: dict[str, Any]) -> None:
        self.columns.add(record.get("columns"))
        with self.fs.open(record["result_file"], "rb") as handle:
            while chunk := handle.read(_COPY_CHUNK):
                self.writer.write(chunk)

    def commit(self) -> None:
        """Rename (local) or complete the upload (object storage)."""
        self.writer.commit()

    def discard(self) -> None:
        """Remove the partial file."""
        self.writer.discard()


class ParquetAssembler(OrderedAssembler):
    """Collect result parts; publish ``data/part-NNNNN.parquet`` with one unified schema."""

    def __init__(self, output: Location, order: list[int], total: int) -> None:
        super().__init__(output, order)
        self.fs = output.fs
        self.width = max(5, len(str(total)))
        self.parts: list[tuple[int, str, pa.Schema]] = []
        self.schema: pa.Schema | None = None
        self.rejected: list[dict[str, Any]] = []

    def _write(self, record: dict[str, Any]) -> None:
        with self.fs.open(record["result_file"], "rb") as handle:
            schema = pq.read_schema(handle)
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
        self.parts.append((record["index"], record["result_file"], schema))

    def take_rejected(self) -> list[dict[str, Any]]:
        """Records whose schema conflicted; each is returned once."""
        rejected, self.rejected = self.rejected, []
        return rejected

    def commit(self) -> None:
        """Write the parts (cast to the unified schema where needed), then swap them in."""
        data = self.output.join("data")
        local = isinstance(self.fs, LocalFileSystem)
        target = self.output.join(STATE_DIR, "assembly", f"data-{uuid.uuid4().hex[:8]}") \
            if local else data
        names = set()
        for index, source, schema in self.parts:
            name = f"part-{index:0{self.width}d}.parquet"
            names.add(name)
            self._place(source, f"{target}/{name}", schema)
        if local:
            _swap_folder(target, data)
        else:
            for stale in self.fs.ls(data, detail=False) if self.fs.exists(data) else []:
                if stale.rsplit("/", 1)[-1] not in names:
                    self.fs.rm_file(stale)

    def _place(self, source: str, destination: str, schema: pa.Schema) -> None:
        if self.schema is None or schema.equals(self.schema):
            if isinstance(self.fs, LocalFileSystem):
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                os.link(source, destination)
            else:
                self.fs.copy(source, destination)
            return
        with self.fs.open(source, "rb") as handle:
            table = pq.read_table(handle).cast(self.schema)
        with self.fs.open(destination, "wb") as handle:
            pq.write_table(table, handle)


def _one_line(schema: pa.Schema) -> str:
    return ", ".join(f"{field.name}: {field.type}" for field in schema)


def _swap_folder(new: str, final: str) -> None:
    os.makedirs(new, exist_ok=True)
    old = None
    if os.path.exists(final):
        old = f"{new}-old"
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        import shutil

        shutil.rmtree(old, ignore_errors=True)


def make_assembler(action: str, output: Location, order: list[int], file_name: str,
                   total: int) -> OrderedAssembler:
    """The assembler for an ``output_action``."""
    if action == "append_row":
        return AppendRowAssembler(output, order, file_name)
    if action == "parquet":
        return ParquetAssembler(output, order, total)
    return OrderedAssembler(output, order)
