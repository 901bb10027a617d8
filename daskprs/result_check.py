"""What ``run()`` may return, checked without importing numpy or pandas.

The runner imports this before the entry script; a result can only be a numpy or pandas
object when the script imported those modules, so they are looked up, not imported.
"""

from __future__ import annotations

import sys
from typing import Any


def check_result(result: Any) -> str | None:
    """Return an error message when ``result`` is not a type ``run()`` may return."""
    if isinstance(result, (list, tuple)):
        return None
    numpy, pandas = sys.modules.get("numpy"), sys.modules.get("pandas")
    if numpy is not None and isinstance(result, numpy.ndarray):
        return None
    if pandas is not None and isinstance(result, (pandas.Series, pandas.DataFrame)):
        return None
    return (f"TypeError: run() returned {type(result).__name__}; return a list, tuple, "
            f"numpy array, pandas Series or DataFrame with one element per successful item")
