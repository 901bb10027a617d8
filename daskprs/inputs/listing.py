"""List the files an input names: globs, folders, URLs, lists; sorted, de-duplicated.

Local folders are scanned with ``os.scandir``; S3 folders are listed page by page; a file
input's listing is packed into arrays as it streams in (:class:`FileList`).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fsspec.implementations.local import LocalFileSystem

from daskprs.errors import InputError
from daskprs.storage.location import file_version, url_to_fs

_WILDCARDS = "*?["
PARQUET_SUFFIXES = (".parquet", ".parq")
DELIMITED_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
_CHUNK = 100_000


@dataclass(frozen=True)
class ListedFile:
    """One file of an input.

    Parameters
    ----------
    url
        The file as fsspec opens it (a local absolute path, or ``s3://...``).
    relative
        Its path below the input root (the folder, or the glob's part before a wildcard).
    size
        Bytes.
    version
        mtime or ETag: part of the job fingerprint.
    """

    url: str
    relative: str
    size: int
    version: str


class FileList:
    """The files of one input, sorted and de-duplicated, in compact Arrow/NumPy arrays.

    A million paths take about a tenth of the memory of a million :class:`ListedFile`
    objects; mini-batches slice them (:meth:`urls`, :meth:`relatives`) when they are built.

    Parameters
    ----------
    urls
        The files as fsspec opens them, in code-point order.
    relative_starts
        Where each file's path below its input root starts within its URL.
    sizes
        Bytes of each file.
    digest
        sha256 over ``(url, size, version)`` of every file: part of the job fingerprint.
    """

    def __init__(self, urls: pa.Array, relative_starts: np.ndarray, sizes: np.ndarray,
                 digest: str) -> None:
        self._urls = urls
        self._starts = relative_starts
        self.sizes = sizes
        self.digest = digest

    def __len__(self) -> int:
        return len(self._urls)

    def urls(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The URLs of files ``start`` to ``stop`` (all by default)."""
        stop = len(self) if stop is None else min(stop, len(self))
        return self._urls.slice(start, max(stop - start, 0)).to_pylist()

    def relatives(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The paths below the input root of files ``start`` to ``stop``."""
        urls = self.urls(start, stop)
        return [url[int(cut):] for url, cut in zip(urls, self._starts[start:start + len(urls)],
                                                   strict=True)]

    def __iter__(self) -> Iterator[ListedFile]:
        for begin in range(0, len(self), _CHUNK):
            urls = self.urls(begin, begin + _CHUNK)
            for offset, url in enumerate(urls):
                at = begin + offset
                yield ListedFile(url, url[int(self._starts[at]):], int(self.sizes[at]), "")


def list_input(paths: tuple[str, ...], storage_options: dict[str, Any],
               suffixes: tuple[str, ...] | None, what: str) -> list[ListedFile]:
    """List every file matched by ``paths``, one object per file (for inputs of a few
    thousand files: tables, side inputs; file inputs use :func:`list_files`).

    Raises
    ------
    InputError
        When an element of ``paths`` matches nothing.
    """
    found: dict[str, ListedFile] = {}
    for path in paths:
        for url, relative_start, size, version in _matches(path, storage_options, suffixes,
                                                           what):
            found.setdefault(url, ListedFile(url, url[relative_start:], size, str(version)))
    listed = [found[key] for key in sorted(found)]
    _check_readable([f.url for f in listed], what)
    return listed


def list_files(paths: tuple[str, ...], storage_options: dict[str, Any],
               suffixes: tuple[str, ...] | None, what: str) -> FileList:
    """List every file matched by ``paths`` into a :class:`FileList`, streaming: entries
    are packed into arrays every 100,000 files, so a million paths never exist as a
    million Python objects at once beyond the current chunk.

    Raises
    ------
    InputError
        When an element of ``paths`` matches nothing, or a file cannot be read.
    """
    packer = _Packer()
    for path in paths:
        for entry in _matches(path, storage_options, suffixes, what):
            packer.add(*entry)
    files = packer.finish(deduplicate=len(paths) > 1)
    for begin in range(0, len(files), _CHUNK):
        _check_readable(files.urls(begin, begin + _CHUNK), what)
    return files


def listing_digest(entries: Iterable[tuple[str, int, Any]]) -> str:
    """sha256 over ``(url, size, version)`` entries, in the order given."""
    digest = hashlib.sha256()
    for url, size, version in entries:
        digest.update(f"{url}\0{size}\0{version}\n".encode())
    return digest.hexdigest()


class _Packer:
    """Collect listing entries in chunks of Arrow/NumPy arrays; sort and hash at the end."""

    def __init__(self) -> None:
        self.chunks: list[tuple[pa.Array, np.ndarray, np.ndarray, pa.Array]] = []
        self._reset()

    def _reset(self) -> None:
        self.urls: list[str] = []
        self.starts: list[int] = []
        self.sizes: list[int] = []
        self.versions: list[str] = []

    def add(self, url: str, relative_start: int, size: int, version: Any) -> None:
        self.urls.append(url)
        self.starts.append(relative_start)
        self.sizes.append(size)
        self.versions.append(str(version))
        if len(self.urls) >= _CHUNK:
            self._pack()

    def _pack(self) -> None:
        if self.urls:
            self.chunks.append((pa.array(self.urls, pa.large_string()),
                                np.array(self.starts, dtype=np.int32),
                                np.array(self.sizes, dtype=np.int64),
                                pa.array(self.versions, pa.large_string())))
        self._reset()

    def finish(self, deduplicate: bool) -> FileList:
        self._pack()
        if not self.chunks:
            return FileList(pa.array([], pa.large_string()), np.zeros(0, np.int32),
                            np.zeros(0, np.int64), listing_digest([]))
        urls = pa.concat_arrays([c[0] for c in self.chunks])
        starts = np.concatenate([c[1] for c in self.chunks])
        sizes = np.concatenate([c[2] for c in self.chunks])
        versions = pa.concat_arrays([c[3] for c in self.chunks])
        self.chunks = []
        order = pc.sort_indices(urls).to_numpy()  # UTF-8 byte order is code-point order
        urls, versions = urls.take(order), versions.take(order)
        starts, sizes = starts[order], sizes[order]
        if deduplicate and len(urls) > 1:
            keep = np.ones(len(urls), dtype=bool)
            keep[1:] = ~pc.equal(urls.slice(1), urls.slice(0, len(urls) - 1)).to_numpy(
                zero_copy_only=False)
            if not keep.all():
                mask = pa.array(keep)
                urls, versions = urls.filter(mask), versions.filter(mask)
                starts, sizes = starts[keep], sizes[keep]
        digest = hashlib.sha256()
        for begin in range(0, len(urls), _CHUNK):
            part = zip(urls.slice(begin, _CHUNK).to_pylist(), sizes[begin:begin + _CHUNK],
                       versions.slice(begin, _CHUNK).to_pylist(), strict=True)
            digest.update("".join(f"{u}\0{s}\0{v}\n" for u, s, v in part).encode())
        return FileList(urls, starts, sizes, digest.hexdigest())


def _matches(path: str, storage_options: dict[str, Any], suffixes: tuple[str, ...] | None,
             what: str) -> Iterator[tuple[str, int, int, Any]]:
    """``(url, relative_start, size, version)`` of each file ``path`` matches."""
    count = 0
    try:
        for entry in _list_one(path, storage_options, suffixes, what):
            count += 1
            yield entry
    except PermissionError as exc:
        raise InputError(f"{what}: {path!r} cannot be listed (permission denied: "
                         f"{exc.filename or exc}). Give this user read access to it, "
                         f"e.g. chmod -R a+rX {exc.filename or path!r}.") from exc
    if not count:
        hint = (f" (a folder takes files ending in {', '.join(suffixes)})"
                if suffixes else "")
        raise InputError(f"{what}: {path!r} matches no files{hint}. Check the path, or "
                         f"list what is there with: python -c \"import fsspec; "
                         f"print(fsspec.open_files({path!r}))\"")


def _list_one(path: str, storage_options: dict[str, Any],
              suffixes: tuple[str, ...] | None, what: str
              ) -> Iterator[tuple[str, int, int, Any]]:
    try:
        fs, fs_path = url_to_fs(path, **storage_options)
    except (ImportError, ValueError) as exc:
        raise InputError(f"input path {path!r}: {exc}") from exc
    scheme = path.split("://", 1)[0] if "://" in path else None
    if any(ch in fs_path for ch in _WILDCARDS):
        root = _glob_root(fs_path)
        infos = fs.glob(fs_path, detail=True)
        _refuse_folders(infos, path, fs_path, what)
        entries: Iterable[tuple[str, dict[str, Any]]] = [
            (p, info) for p, info in infos.items() if info.get("type") != "directory"]
    elif fs.isdir(fs_path):
        root = fs_path.rstrip("/")
        if isinstance(fs, LocalFileSystem):
            yield from _scan_local_folder(root, suffixes, what)
            return
        entries = ((p, info) for p, info in _find(fs, fs_path)
                   if _wanted(_relative(p, root), suffixes))
    elif fs.isfile(fs_path):
        root = posixpath.dirname(fs_path)
        entries = [(fs_path, fs.info(fs_path))]
    else:
        return
    for file_path, info in entries:
        yield _entry(fs, file_path, info, root, scheme)


def _scan_local_folder(root: str, suffixes: tuple[str, ...] | None, what: str
                       ) -> Iterator[tuple[str, int, int, Any]]:
    """Every wanted file below a local folder, by ``os.scandir`` (a stat per file, no
    per-file dictionaries). Links to files and folders are followed (a folder reached
    twice through links is listed once); a dangling link is an error."""
    start = len(root) + 1
    seen = {os.path.realpath(root)}
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.startswith(("_", ".")):
                    continue
                if entry.is_dir():
                    if entry.is_symlink():
                        real = os.path.realpath(entry.path)
                        if real in seen:
                            continue
                        seen.add(real)
                    stack.append(entry.path)
                    continue
                if suffixes is not None and not entry.name.lower().endswith(suffixes):
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError as exc:
                    raise InputError(f"{what}: {entry.path!r} is a link to nothing (its "
                                     f"target {os.readlink(entry.path)!r} does not exist). "
                                     f"Remove the link or restore its target.") from exc
                yield entry.path, start, stat.st_size, stat.st_mtime


def _find(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every file below a remote folder, page by page where the backend allows it (S3 and
    Azure list 1,000 keys a request; the entries of a page are dropped once yielded)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "s3" in protocols and hasattr(fs, "_iterdir"):
        bucket, _, prefix = path.partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        pages = fs._iterdir(bucket, prefix=prefix, delimiter="")
    elif "abfs" in protocols and hasattr(fs, "service_client"):
        pages = _azure_blobs(fs, path)
    else:
        yield from fs.find(path, detail=True).items()
        return
    for info in iterate_async(fs, pages):
        if info.get("type") != "directory" and not info["name"].endswith("/"):
            yield info["name"], info


async def _azure_blobs(fs: Any, path: str) -> Any:
    """The blobs below ``path``, as adlfs names them, streamed from ``list_blobs``."""
    container, prefix, _ = fs.split_path(path.rstrip("/") + "/")
    async with fs.service_client.get_container_client(container=container) as client:
        async for blob in client.list_blobs(name_starts_with=prefix):
            yield {"name": f"{container}/{blob.name}", "size": blob.size, "type": "file",
                   "etag": blob.etag}


def iterate_async(fs: fsspec.AbstractFileSystem, generator: Any) -> Iterator[Any]:
    """Iterate an async generator of an async fsspec filesystem from synchronous code."""
    from fsspec.asyn import sync

    while True:
        try:
            yield sync(fs.loop, generator.__anext__)
        except StopAsyncIteration:
            return


def _entry(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any],
           root: str, scheme: str | None = None) -> tuple[str, int, int, Any]:
    if isinstance(fs, LocalFileSystem):
        url = path
    else:  # keep the scheme the user wrote (az://, not adlfs's abfs://)
        url = f"{scheme}://{path.lstrip('/')}" if scheme else fs.unstrip_protocol(path)
    version = file_version(info)
    relative = _relative(path, root) if root else posixpath.basename(path)
    if not url.endswith(relative):
        relative = posixpath.basename(path)
    return url, len(url) - len(relative), int(info.get("size") or 0), version


def _refuse_folders(infos: dict[str, Any], path: str, fs_path: str, what: str) -> None:
    """A glob that matches a folder where it expects files is an error, unless it is
    recursive (``**``: folders are the way down) or the folder is hidden (``_x``, ``.x``)."""
    if "**" in fs_path:
        return
    folders = [p for p, info in infos.items() if info.get("type") == "directory"
               and not posixpath.basename(p.rstrip("/")).startswith(("_", "."))]
    if folders:
        raise InputError(
            f"{what}: {path!r} matches {len(folders)} folder(s) where a file is expected, got "
            f"{folders[0]!r}. Use {path.rstrip('/') + '/**'!r} to take every file below the "
            f"matching folders, or narrow the pattern so that it matches files only.")


def _check_readable(urls: list[str], what: str) -> None:
    """Local files this process cannot read are an error now, not a failed mini-batch later."""
    unreadable = [url for url in urls if "://" not in url and not os.access(url, os.R_OK)]
    if unreadable:
        raise InputError(f"{what}: {len(unreadable)} file(s) cannot be read (permission "
                         f"denied), got {unreadable[0]!r}. Give this user read access "
                         f"(chmod a+r {unreadable[0]!r}) or move the file out of the input.")


def _relative(path: str, root: str) -> str:
    """``path`` below ``root`` (a string prefix test: ``posixpath.relpath`` costs ~25 µs a
    file, a second per 40,000 files)."""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else posixpath.relpath(path, root)


def _glob_root(path: str) -> str:
    cut = min(path.find(ch) for ch in _WILDCARDS if ch in path)
    return posixpath.dirname(path[:cut])


def _wanted(relative: str, suffixes: tuple[str, ...] | None) -> bool:
    if any(part.startswith(("_", ".")) for part in relative.split("/")):
        return False
    return suffixes is None or relative.lower().endswith(suffixes)
