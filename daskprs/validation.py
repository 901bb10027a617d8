"""Collect configuration problems; raise them together as one ConfigError."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from daskprs.errors import ConfigError, Problem

SourceOf = Callable[[str], str]


def keyword_source(name: str) -> str:
    """The source of every value passed as a Python keyword argument."""
    return "keyword argument"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class Checker:
    """Accumulates :class:`~daskprs.errors.Problem` objects.

    Parameters
    ----------
    source_of
        Maps a parameter name to where its value came from.
    prefix
        Prepended to parameter names (``parallel_run_config.``) when reporting.
    """

    def __init__(self, source_of: SourceOf = keyword_source, prefix: str = "") -> None:
        self.source_of = source_of
        self.prefix = prefix
        self.problems: list[Problem] = []

    def add(self, parameter: str, message: str, value: Any, fix: str) -> None:
        """Record one problem."""
        name = f"{self.prefix}{parameter}"
        self.problems.append(Problem(name, self.source_of(name), message, value, fix))

    def extend(self, problems: Iterable[Problem]) -> None:
        """Record problems found elsewhere."""
        self.problems.extend(problems)

    def raise_if_any(self) -> None:
        """Raise one ConfigError with every problem recorded."""
        if self.problems:
            raise ConfigError(self.problems)

    def integer(self, parameter: str, value: Any, minimum: int, fix: str) -> bool:
        """Check that ``value`` is an int (not a bool) and at least ``minimum``."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            self.add(parameter, f"must be an integer >= {minimum}", value, fix)
            return False
        if value < minimum:
            self.add(parameter, f"must be >= {minimum}", value, fix)
            return False
        return True

    def number(self, parameter: str, value: Any, low: float, high: float | None, fix: str,
               low_inclusive: bool = True) -> bool:
        """Check that ``value`` is an int or float (not a bool) within a range."""
        bound = f"{'>=' if low_inclusive else '>'} {low:g}"
        words = f"a number {bound}" + (f" and <= {high:g}" if high is not None else "")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.add(parameter, f"must be {words}", value, fix)
            return False
        too_low = value < low if low_inclusive else value <= low
        if too_low or (high is not None and value > high):
            self.add(parameter, f"must be {words}", value, fix)
            return False
        return True

    def choice(self, parameter: str, value: Any, choices: tuple[str, ...],
               aliases: Mapping[str, str] | None = None) -> bool:
        """Check that ``value`` is one of ``choices`` (with a "did you mean").

        ``aliases`` maps words users write for a choice (``csv``) to it (``delimited``),
        for the "did you mean" where spelling alone does not find it.
        """
        if value in choices:
            return True
        allowed = ", ".join(repr(c) for c in choices)
        alias = (aliases or {}).get(str(value).lower())
        hint = f" Did you mean {alias!r}?" if alias else did_you_mean(str(value), choices)
        self.add(parameter, f"must be one of {allowed}", value, f"Use one of them.{hint}")
        return False

    def unknown_keys(self, where: str, keys: Iterable[str], known: Iterable[str]) -> None:
        """Report every key not in ``known``."""
        known = list(known)
        for key in keys:
            if key not in known:
                self.add(f"{where}{key}", "is not a known parameter", key,
                         f"Remove it.{did_you_mean(key, known)}")
