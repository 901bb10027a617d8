"""List the files an input names: globs, folders, URLs, lists; sorted, de-duplicated."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from daskprs.errors import InputError

_WILDCARDS = "*?["
PARQUET_SUFFIXES = (".parquet", ".parq")
DELIMITED_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")


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


def list_input(paths: tuple[str, ...], storage_options: dict[str, Any],
               suffixes: tuple[str, ...] | None, what: str) -> list[ListedFile]:
    """List every file matched by ``paths``.

    Raises
    ------
    InputError
        When an element of ``paths`` matches nothing.
    """
    found: dict[str, ListedFile] = {}
    for path in paths:
        matches = _list_one(path, storage_options, suffixes)
        if not matches:
            hint = (f" (a folder takes files ending in {', '.join(suffixes)})"
                    if suffixes else "")
            raise InputError(f"{what}: {path!r} matches no files{hint}. Check the path, or "
                             f"list what is there with: python -c \"import fsspec; "
                             f"print(fsspec.open_files({path!r}))\"")
        for item in matches:
            found.setdefault(item.url, item)
    return [found[key] for key in sorted(found)]


def _list_one(path: str, storage_options: dict[str, Any],
              suffixes: tuple[str, ...] | None) -> list[ListedFile]:
    try:
        fs, fs_path = fsspec.core.url_to_fs(path, **storage_options)
    except (ImportError, ValueError) as exc:
        raise InputError(f"input path {path!r}: {exc}") from exc
    if any(ch in fs_path for ch in _WILDCARDS):
        root = _glob_root(fs_path)
        infos = fs.glob(fs_path, detail=True)
        entries = [(p, info) for p, info in infos.items() if info.get("type") != "directory"]
    elif fs.isdir(fs_path):
        root = fs_path.rstrip("/")
        infos = fs.find(fs_path, detail=True)
        entries = [(p, info) for p, info in infos.items()
                   if _wanted(posixpath.relpath(p, root), suffixes)]
    elif fs.isfile(fs_path):
        root = posixpath.dirname(fs_path)
        entries = [(fs_path, fs.info(fs_path))]
    else:
        return []
    return [_listed(fs, p, info, root) for p, info in entries]


def _listed(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any],
            root: str) -> ListedFile:
    url = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
    version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get(
        "LastModified") or info.get("last_modified") or ""
    relative = posixpath.relpath(path, root) if root else posixpath.basename(path)
    return ListedFile(url=url, relative=relative, size=int(info.get("size") or 0),
                      version=str(version))


def _glob_root(path: str) -> str:
    cut = min(path.find(ch) for ch in _WILDCARDS if ch in path)
    return posixpath.dirname(path[:cut])


def _wanted(relative: str, suffixes: tuple[str, ...] | None) -> bool:
    if any(part.startswith(("_", ".")) for part in relative.split("/")):
        return False
    return suffixes is None or relative.lower().endswith(suffixes)
