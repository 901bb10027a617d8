"""fsspec glue: locations, atomic and exclusive writes.

A :class:`Location` is a filesystem and a root path on it; every write daskprs makes
into an output goes through the helpers here so that a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile


@dataclass(frozen=True)
class Location:
    """A folder on some filesystem.

    Parameters
    ----------
    url
        The folder as the user gave it (made absolute when local), no trailing slash.
    storage_options
        Passed to fsspec to build the filesystem.
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem (fsspec caches instances, so this is cheap)."""
        return fsspec.core.url_to_fs(self.url, **self.storage_options)[0]

    @property
    def path(self) -> str:
        """The folder's path as the filesystem spells it."""
        return fsspec.core.url_to_fs(self.url, **self.storage_options)[1]

    @property
    def is_local(self) -> bool:
        """Whether the folder is on the local filesystem."""
        return isinstance(self.fs, LocalFileSystem)

    def join(self, *parts: str) -> str:
        """Return the filesystem path of ``parts`` below this folder."""
        return "/".join([self.path.rstrip("/"), *parts])


def normalize_url(url: str) -> str:
    """Make a local path absolute and strip trailing slashes from any URL."""
    text = str(url)
    if "://" not in text:
        return os.path.abspath(os.path.expanduser(text))
    scheme, rest = text.split("://", 1)
    return f"{scheme}://{rest.rstrip('/')}"


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


def probe_bucket(url: str, storage_options: dict[str, Any]) -> None:
    """List the bucket (or container) of a remote URL, so that a missing one, refused
    credentials or an unreachable endpoint raise here, before any work starts.

    Local paths and URLs with wildcards in the bucket name are not probed.
    """
    if "://" not in url or url.startswith(("file://", "memory://")):
        return
    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    bucket = path.split("/", 1)[0]
    if bucket and not any(ch in bucket for ch in "*?["):
        fs.ls(bucket, detail=False)
