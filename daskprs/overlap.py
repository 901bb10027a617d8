"""Refuse an output folder that an input reads, and an input below the output folder.

An output inside an input folder becomes input of the next run (1,000 rows, then 2,000,
then 3,000; with CSV input, the job's own ``logs/*.txt`` too); an input inside the
output is rewritten by the job that reads it. Paths are compared, not listed: local
paths absolute and with symlinks resolved, URLs by scheme, bucket and key parts.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Iterable

from daskprs.validation import Checker

_WILDCARDS = "*?["
_SCHEMES = {"file": "file", "local": "file", "s3a": "s3", "abfs": "az", "abfss": "az",
            "adl": "az", "gcs": "gs"}

Key = tuple[str, tuple[str, ...]]


def check_output_apart(checker: Checker, output: str,
                       inputs: Iterable[tuple[str, str]]) -> None:
    """Record a problem for each input that holds ``output`` or lies below it.

    Parameters
    ----------
    checker
        Collects the problems (reported under ``output``).
    output
        The output folder, normalized (absolute local path or URL).
    inputs
        ``(name, path)`` of every input and side input; paths may be globs.
    """
    out_scheme, out_parts = _key(output)
    for name, path in inputs:
        scheme, parts = _key(path)
        if scheme != out_scheme:
            continue
        cut = next((i for i, p in enumerate(parts) if any(c in p for c in _WILDCARDS)),
                   len(parts))
        root, pattern = parts[:cut], parts[cut:]
        if _below(out_parts, root) and _reaches(out_parts[len(root):], pattern):
            shown = _show(out_scheme, root)
            checker.add("output", f"is inside input {name!r} ({path!r}): each run would read "
                        f"its own output as input", output,
                        f"Use an output folder outside {shown!r}{_beside(out_scheme, root)}")
        elif _below(root, out_parts):
            checker.add("output", f"holds input {name!r} ({path!r}): the job would rewrite "
                        f"what it reads", output, "Move the input out of the output folder, "
                        "or use another output folder")


def _key(path: str) -> Key:
    """``(scheme, parts)``: local paths absolute with symlinks resolved; URLs split into
    bucket and key parts."""
    text = str(path)
    scheme, has_scheme, rest = text.partition("://")
    scheme = _SCHEMES.get(scheme.lower(), scheme.lower()) if has_scheme else "file"
    if scheme != "file":
        return scheme, tuple(p for p in rest.split("/") if p)
    local = rest if has_scheme else text
    resolved = os.path.realpath(os.path.abspath(os.path.expanduser(local)))
    return "file", tuple(p for p in resolved.replace(os.sep, "/").split("/") if p)


def _below(inner: tuple[str, ...], outer: tuple[str, ...]) -> bool:
    """Whether ``inner`` is ``outer`` or a path below it."""
    return inner[:len(outer)] == outer


def _reaches(relative: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether an input with glob ``pattern`` below its root (empty: a folder or file)
    takes files at or below ``relative`` (the output's path below that root)."""
    if not pattern:  # a folder takes every file below it, except _hidden and .hidden ones
        return not any(p.startswith(("_", ".")) for p in relative)
    if any("**" in p for p in pattern):
        return True
    return len(pattern) >= len(relative) and all(
        fnmatch.fnmatchcase(part, glob) for part, glob in zip(relative, pattern, strict=False))


def _show(scheme: str, parts: tuple[str, ...]) -> str:
    joined = "/".join(parts)
    return "/" + joined if scheme == "file" else f"{scheme}://{joined}"


def _beside(scheme: str, root: tuple[str, ...]) -> str:
    """A place next to the input root, for the fix; empty when the root has no parent."""
    if len(root) < 2:
        return ""
    parent = _show(scheme, root[:-1])
    return f", e.g. {posixpath.join(parent, root[-1] + '-out')!r}"
