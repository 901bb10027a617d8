"""Writes a reader never sees half of: atomic replace, exclusive create, deferred commit.

Every write daskprs makes into an output goes through these helpers.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile


class AtomicWriter:
    """A file being written that appears whole on :meth:`commit`, or never.

    Local files are written to a temporary file (in ``temp_dir``, on the same filesystem,
    or beside the target) and renamed into place; other filesystems use fsspec's deferred
    commit (a multipart upload completed on commit, aborted on discard).

    Parameters
    ----------
    fs
        The filesystem.
    path
        The final path.
    temp_dir
        Local only: a folder on the same filesystem for the temporary file.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str,
                 temp_dir: str | None = None) -> None:
        self.fs = fs
        self.path = path
        self.temp: str | None = None
        if isinstance(fs, LocalFileSystem):
            folder = temp_dir or os.path.dirname(path) or "."
            os.makedirs(folder, exist_ok=True)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            name = f"{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
            self.temp = os.path.join(folder, name)
            self.handle: IO[bytes] = open(self.temp, "wb")  # noqa: SIM115 (commit/discard close it)
        else:
            self.handle = fs.open(path, "wb", autocommit=False)
            # s3fs defers the upload to commit(); others (adlfs, gcsfs) make the object
            # appear when the file closes, so discarding must keep it from closing.
            self.deferred = type(self.handle).commit is not AbstractBufferedFile.commit

    def write(self, data: bytes) -> None:
        """Append bytes."""
        self.handle.write(data)

    def commit(self) -> None:
        """Make the file appear at its final path."""
        if self.temp is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.temp, self.path)
        elif self.deferred:
            self.handle.commit()
        else:
            self.handle.close()

    def discard(self) -> None:
        """Forget what was written; the final path is untouched."""
        if self.temp is not None:
            self.handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.temp)
        else:
            if self.deferred:
                self.handle.discard()
            if isinstance(self.handle, AbstractBufferedFile):
                self.handle.closed = True  # so close() (also from __del__) uploads nothing


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part.

    Local files are renamed into place without ``fsync``: they survive the writer being
    killed (the kernel keeps the data), not a power cut. The final output
    (:class:`AtomicWriter`) is synced.
    """
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        temp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    else:
        fs.pipe_file(path, data)


def create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists; return whether this call created it.

    On local disk this is a hard link of a complete temporary file, so it is both
    exclusive and atomic; object stores get a conditional PUT (``If-None-Match: *``).
    """
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(temp, "wb") as handle:
            handle.write(data)
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(temp)
    try:
        fs.pipe_file(path, data, mode="create")
        return True
    except FileExistsError:
        return False
    except (NotImplementedError, TypeError):  # a store without conditional writes
        if fs.exists(path):
            return False
        fs.pipe_file(path, data)
        return True


def read_bytes_or_none(fs: fsspec.AbstractFileSystem, path: str) -> bytes | None:
    """Return the content of ``path``, or None when it does not exist."""
    try:
        if isinstance(fs, LocalFileSystem):  # a plain open: fsspec's file object costs more
            with open(path, "rb") as handle:
                return handle.read()
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def write_new(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a file no reader looks at until something published later points to it (a
    result, before its commit record): no temporary file needed."""
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    else:
        fs.pipe_file(path, data)
