"""Validation of the stall guard, transient-error and straggler parameters of a config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daskprs.transient import NAME_PATTERN, retry_on_names
from daskprs.validation import Checker

_SECONDS = ("init_timeout", "first_mini_batch_timeout", "no_progress_timeout")


def check_stall_parameters(checker: Checker, get: Callable[[str], Any]) -> dict[str, Any]:
    """Check ``init_timeout``, ``first_mini_batch_timeout``, ``no_progress_timeout``,
    ``retry_on``, ``transient_max_try`` and ``straggler_factor``; return normalized values
    (``retry_on`` as a list of names)."""
    for name in _SECONDS:
        value = get(name)
        if value is not None:
            checker.number(name, value, 0, None, f"Give seconds as a positive number such as "
                           f"600, or leave {name} unset for the default", low_inclusive=False)
    checker.integer("transient_max_try", get("transient_max_try"), 0,
                    "Use 0 or more (transient failures allowed per mini-batch)")
    factor = get("straggler_factor")
    if factor is not None:
        checker.number("straggler_factor", factor, 1, None,
                       "Use a factor such as 5 (times the median mini-batch time), or leave "
                       "it unset to start no backup attempts", low_inclusive=False)
    return _check_retry_on(checker, get("retry_on"))


def _check_retry_on(checker: Checker, retry_on: Any) -> dict[str, Any]:
    if retry_on is None:
        return {}
    fix = "Use retry_on=[ConnectionError, 'botocore.exceptions.ClientError']"
    if isinstance(retry_on, (str, type)):
        retry_on = [retry_on]
    if not isinstance(retry_on, (list, tuple)):
        checker.add("retry_on", "must be a list of exception classes or names", retry_on, fix)
        return {}
    ok = True
    for value in retry_on:
        if isinstance(value, type):
            if not issubclass(value, BaseException):
                checker.add("retry_on", "must name exception classes", value, fix)
                ok = False
        elif not isinstance(value, str) or not NAME_PATTERN.match(value):
            checker.add("retry_on", "must hold exception classes or dotted names", value, fix)
            ok = False
    return {"retry_on": retry_on_names(retry_on)} if ok else {}
