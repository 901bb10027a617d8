"""Locations: a folder on some filesystem, as fsspec reaches it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


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
        return url_to_fs(self.url, **self.storage_options)[0]

    @property
    def path(self) -> str:
        """The folder's path as the filesystem spells it."""
        return url_to_fs(self.url, **self.storage_options)[1]

    @property
    def is_local(self) -> bool:
        """Whether the folder is on the local filesystem."""
        return isinstance(self.fs, LocalFileSystem)

    def join(self, *parts: str) -> str:
        """Return the filesystem path of ``parts`` below this folder."""
        return "/".join([self.path.rstrip("/"), *parts])


def url_to_fs(url: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """``fsspec.core.url_to_fs``, except that a path without ``://`` is a local path as it
    is: a file name holding ``::`` (fsspec's chaining separator) stays one path."""
    if "://" not in url and "::" in url:
        return LocalFileSystem(), os.path.abspath(os.path.expanduser(url))
    return fsspec.core.url_to_fs(url, **storage_options)


def file_version(info: dict[str, Any]) -> str:
    """A file's version from an fsspec ``info`` dict: ETag where the store has one, else
    the modification time (fingerprints and the reuse check compare it)."""
    version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get(
        "LastModified") or info.get("last_modified") or ""
    return str(version)


def normalize_url(url: str) -> str:
    """Make a local path absolute and strip trailing slashes from any URL."""
    text = str(url)
    if "://" not in text:
        return os.path.abspath(os.path.expanduser(text))
    scheme, rest = text.split("://", 1)
    return f"{scheme}://{rest.rstrip('/')}"


def probe_bucket(url: str, storage_options: dict[str, Any]) -> None:
    """List the bucket (or container) of a remote URL, so that a missing one, refused
    credentials or an unreachable endpoint raise here, before any work starts.

    Local paths and URLs with wildcards in the bucket name are not probed.
    """
    if "://" not in url or url.startswith(("file://", "memory://")):
        return
    fs, path = url_to_fs(url, **storage_options)
    bucket = path.split("/", 1)[0]
    if bucket and not any(ch in bucket for ch in "*?["):
        fs.ls(bucket, detail=False)
