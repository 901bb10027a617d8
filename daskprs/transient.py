"""Transient errors: which exceptions ``retry_on`` names, and the back-off between tries.

An attempt whose ``run()`` raised an exception named in ``retry_on`` (matched on the
exception's class hierarchy, by qualified name ``botocore.exceptions.ClientError`` or plain
name ``ClientError``) is *transient*: it is tried again after a back-off without being
charged to ``run_max_try``, up to ``transient_max_try`` times per mini-batch. The back-off
is exponential with "equal jitter": before the ``n``-th transient retry the worker waits
``d / 2 + uniform(0, d / 2)`` seconds, where ``d = min(BACKOFF_CAP, BACKOFF_BASE × 2^(n-1))``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
TRANSIENT = "transient"
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def qualified_name(kind: type) -> str:
    """``module.QualName`` of a class; ``builtins.`` for the built-in exceptions."""
    return f"{kind.__module__}.{kind.__qualname__}"


def exception_kinds(exc: BaseException) -> tuple[str, ...]:
    """The qualified names of an exception's classes, most derived first (no ``object``)."""
    return tuple(qualified_name(kind) for kind in type(exc).__mro__ if kind is not object)


def matches(kinds: Sequence[str], retry_on: Iterable[str]) -> bool:
    """Whether one of ``kinds`` (qualified names) is named in ``retry_on``, by its
    qualified name or its plain name."""
    names = set(retry_on)
    if not names:
        return False
    for kind in kinds:
        plain = kind.rsplit(".", 1)[-1]
        if kind in names or plain in names or kind.removeprefix("builtins.") in names:
            return True
    return False


def backoff_seconds(retry: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before the ``retry``-th transient retry (1, 2, ...) of a mini-batch."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(retry - 1, 0))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def retry_on_names(values: Sequence[object]) -> list[str]:
    """``retry_on`` as names: classes become their qualified name, strings stay."""
    return [qualified_name(v) if isinstance(v, type) else str(v) for v in values]


__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "TRANSIENT", "backoff_seconds", "exception_kinds",
           "matches", "qualified_name", "retry_on_names"]
