"""Parse ``mini_batch_size``: bytes (1024-based), rows, or a number of files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SizeUnit = Literal["bytes", "rows", "files"]

_BYTES = re.compile(r"^(\d+)([kKmMgG][bB])?$")
_ROWS = re.compile(r"(?i)^\s*(\d+)\s*rows?\s*$")
_DIGITS = re.compile(r"^\s*(\d+)\s*$")
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

DEFAULT_TABULAR = "1MB"
DEFAULT_FILES = 10


class SizeError(ValueError):
    """A ``mini_batch_size`` that cannot be parsed.

    Parameters
    ----------
    reason
        What is wrong (``"has a space"``).
    suggestion
        The size the user probably meant (``"1MB"``), or None.
    """

    def __init__(self, reason: str, suggestion: str | None = None) -> None:
        self.reason = reason
        self.suggestion = suggestion
        tail = f"; did you mean {suggestion!r}?" if suggestion is not None else ""
        super().__init__(f"{reason}{tail}")


@dataclass(frozen=True)
class MiniBatchSize:
    """A parsed ``mini_batch_size``.

    Parameters
    ----------
    count
        The number of bytes, rows or files.
    unit
        ``"bytes"``, ``"rows"`` or ``"files"``.
    """

    count: int
    unit: SizeUnit

    def __str__(self) -> str:
        return f"{self.count} {self.unit}"


def parse_tabular_size(value: int | str) -> MiniBatchSize:
    """Parse a tabular ``mini_batch_size``.

    An int or ``"<digits>[KB|MB|GB]"`` is bytes (1024-based); ``"<n> rows"`` is rows.

    Raises
    ------
    SizeError
        A ValueError that says what was expected (and what was meant, when close).
    """
    if isinstance(value, bool):
        raise SizeError("must be a size such as '1MB' or '5000 rows', not a bool")
    if isinstance(value, int):
        return _positive(MiniBatchSize(value, "bytes"))
    if not isinstance(value, str):
        raise SizeError(f"must be an int or a string such as '1MB', not {type(value).__name__}")
    match = _BYTES.match(value)
    if match:
        factor = _FACTORS[(match.group(2) or "")[:1].lower()]
        return _positive(MiniBatchSize(int(match.group(1)) * factor, "bytes"))
    match = _ROWS.match(value)
    if match:
        return _positive(MiniBatchSize(int(match.group(1)), "rows"))
    raise _suggest_tabular(value)


def parse_file_size(value: int | str) -> MiniBatchSize:
    """Parse a file-input ``mini_batch_size``: an int or a digit string, in files."""
    if isinstance(value, bool):
        raise SizeError("must be a number of files such as 10, not a bool")
    if isinstance(value, int):
        return _positive(MiniBatchSize(value, "files"))
    if isinstance(value, str) and _DIGITS.match(value):
        return _positive(MiniBatchSize(int(value), "files"))
    raise SizeError("for file inputs must be a number of files such as 10")


def _positive(size: MiniBatchSize) -> MiniBatchSize:
    if size.count < 1:
        raise SizeError("must be at least 1")
    return size


def _suggest_tabular(value: str) -> SizeError:
    compact = re.sub(r"\s+", "", value)
    if _BYTES.match(compact):
        return SizeError("has a space", compact)
    decimal = re.match(r"^(\d+)\.(\d+)\s*([kKmMgG])[bB]$", value.strip())
    if decimal:
        whole, frac, unit = decimal.groups()
        smaller = {"g": "M", "m": "K", "k": ""}[unit.lower()]
        count = round(float(f"{whole}.{frac}") * 1024)
        return SizeError("takes whole numbers only", f"{count}{smaller}B" if smaller
                         else str(count))
    return SizeError("must be bytes such as '1MB' or 1048576, or rows such as '5000 rows'")


def size_fix(error: SizeError, fallback: str) -> str:
    """The fix for a refused size: the size that was meant, else ``fallback``."""
    return f"Did you mean {error.suggestion!r}?" if error.suggestion is not None else fallback
