"""Fixtures shared by the unit tests (no cluster is ever started here)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_daskprs_logging() -> Iterator[None]:
    """Undo the stderr handler the CLI adds to logger ``daskprs`` on every invocation.

    CliRunner swaps ``sys.stderr`` per call; a handler left behind would write to a
    closed stream in the next test.
    """
    logger = logging.getLogger("daskprs")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
