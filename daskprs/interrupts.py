"""Last words: what must be written when the process is about to exit at once (a second
Ctrl-C), when ``finally`` blocks will not run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)
_LAST_WORDS: list[Callable[[], None]] = []


@contextlib.contextmanager
def last_words(callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` if the process exits at once while this block runs."""
    _LAST_WORDS.append(callback)
    try:
        yield
    finally:
        _LAST_WORDS.remove(callback)


def say_last_words() -> None:
    """Run every registered callback, newest first; errors are logged, never raised."""
    for callback in reversed(list(_LAST_WORDS)):
        try:
            callback()
        except Exception:
            logger.exception("writing the result of an interrupted job failed")
