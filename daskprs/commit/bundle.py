"""The bundle: one task's commit object, a JSON header then the results' bytes.

::

    DASKPRS-BUNDLE-1\n
    <header length, 12 digits>\n
    <header: JSON {"run_id", "task", "records": [... "payload": [offset, length] ...]}>
    <payloads, concatenated; offsets count from the first byte after the header>
"""

from __future__ import annotations

import json
from typing import Any

import fsspec

MAGIC = b"DASKPRS-BUNDLE-1\n"
_LENGTH = 13  # 12 digits and a newline
_FIRST_READ = 64 * 1024


def encode_bundle(run_id: str, task: str, records: list[dict[str, Any]],
                  payloads: list[bytes | None]) -> bytes:
    """The bytes of a bundle; each record gets ``payload: [offset, length]`` or None."""
    offset, body = 0, []
    placed = []
    for record, payload in zip(records, payloads, strict=True):
        if payload:
            placed.append({**record, "payload": [offset, len(payload)]})
            body.append(payload)
            offset += len(payload)
        else:
            placed.append({**record, "payload": None})
    header = json.dumps({"run_id": run_id, "task": task, "records": placed}).encode()
    return b"".join([MAGIC, f"{len(header):012d}\n".encode(), header, *body])


def decode_header(data: bytes) -> tuple[dict[str, Any], int] | None:
    """The header and the body's start, or None when ``data`` holds less than the
    whole header.

    Raises
    ------
    ValueError
        When ``data`` is not a bundle.
    """
    if not data.startswith(MAGIC):
        raise ValueError("not a daskprs bundle")
    if len(data) < len(MAGIC) + _LENGTH:
        return None
    length = int(data[len(MAGIC):len(MAGIC) + 12])
    start = len(MAGIC) + _LENGTH
    if len(data) < start + length:
        return None
    return json.loads(data[start:start + length]), start + length


def read_header(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    """Read a bundle's header (one ranged read when it fits in 64 KiB)."""
    data = fs.cat_file(path, start=0, end=_FIRST_READ)
    decoded = decode_header(data)
    if decoded is None:
        decoded = decode_header(fs.cat_file(path))
    if decoded is None:
        raise ValueError(f"{path}: a truncated daskprs bundle")
    return decoded[0]


class BundleReader:
    """Read result payloads, keeping the last bundle read (a task's mini-batches are
    consecutive, so each bundle is read once during an ordered assembly).

    Parameters
    ----------
    fs
        The output's filesystem.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem) -> None:
        self.fs = fs
        self.path: str | None = None
        self.header: dict[str, Any] = {}
        self.data = b""
        self.body = 0

    def payload(self, record: dict[str, Any]) -> bytes:
        """The result bytes of a committed record.

        Raises
        ------
        ValueError
            When the bundle does not hold this record of this run (the reader never
            takes another run's results).
        """
        if record["bundle"] != self.path:
            self.data = self.fs.cat_file(record["bundle"])
            decoded = decode_header(self.data)
            if decoded is None:
                raise ValueError(f"{record['bundle']}: a truncated daskprs bundle")
            self.header, self.body = decoded
            self.path = record["bundle"]
        if self.header.get("run_id") != record.get("run_id"):
            raise ValueError(f"{record['bundle']} belongs to run {self.header.get('run_id')}, "
                             f"not {record.get('run_id')}")
        offset, length = record["payload"]
        return self.data[self.body + offset:self.body + offset + length]
