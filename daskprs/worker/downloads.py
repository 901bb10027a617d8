"""Download the remote files of a mini-batch before ``run()``, and remove them after.

Files land in ``<folder>/<input name>/<path relative to the input root>`` so basenames
(and sub-folders) are kept. One ``fs.get`` call takes the whole list, which s3fs and
adlfs fetch concurrently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from daskprs.storage.location import url_to_fs


def is_remote(url: str, storage_options: dict[str, Any]) -> bool:
    """Whether ``url`` is on a filesystem other than local disk."""
    return not isinstance(url_to_fs(url, **storage_options)[0], LocalFileSystem)


@contextlib.contextmanager
def downloaded(urls: list[str], relatives: list[str], input_name: str,
               storage_options: dict[str, Any], parent: str) -> Iterator[list[str]]:
    """Yield local paths of ``urls``; remote ones are downloaded, then removed at exit."""
    if not urls or not is_remote(urls[0], storage_options):
        yield list(urls)
        return
    folder = tempfile.mkdtemp(prefix="attempt-", dir=parent)
    try:
        fs = url_to_fs(urls[0], **storage_options)[0]
        local = [os.path.join(folder, input_name, *rel.split("/")) for rel in relatives]
        for path in {os.path.dirname(p) for p in local}:
            os.makedirs(path, exist_ok=True)
        fs.get([fs._strip_protocol(u) for u in urls], local)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def download_side_input(url: str, storage_options: dict[str, Any], parent: str) -> str:
    """Copy a remote side input (a file or a folder) below ``parent``; return its local path
    (the file, or the folder)."""
    fs, path = url_to_fs(url, **storage_options)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    local = os.path.join(parent, name)
    os.makedirs(parent, exist_ok=True)
    if fs.isdir(path):
        fs.get(path.rstrip("/") + "/", local, recursive=True)
    else:
        fs.get(path, local)
    return local


def local_arguments(arguments: tuple[str, ...] | list[str],
                    remote_side_inputs: tuple[tuple[str, dict[str, Any]], ...],
                    folder: str) -> list[str]:
    """``arguments`` with each remote side input's URL replaced by a local copy in
    ``folder``."""
    local = {url: download_side_input(url, options, folder)
             for url, options in remote_side_inputs}
    return [local.get(argument, argument) for argument in arguments]
