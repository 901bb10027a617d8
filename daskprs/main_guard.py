"""Scripts that start a LocalCluster need ``if __name__ == "__main__":``.

LocalCluster starts its workers with multiprocessing's ``spawn``, which imports the
script that started them again, as ``__mp_main__``. A ``step.run()`` at module level
then runs in every worker being started, and each fails with a wall of tracebacks.
:func:`refuse_unguarded_call` finds the missing guard in the script's syntax tree before
any cluster starts; :func:`refuse_worker_import` refuses the call made by that second
import, should one happen anyway.
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
from types import FrameType

from daskprs.errors import ConfigError, Problem

FIX = ("Put the lines that run the step under the main guard 'if __name__ == "
       "\"__main__\":', as in the README's Python quickstart")


def refuse_worker_import() -> None:
    """Raise when this is a worker process importing the script again (``__mp_main__``)
    and its module-level code reached ``step.run()``.

    Raises
    ------
    ConfigError
        Naming the script, the line and the fix.
    """
    frame = _module_frame("__mp_main__")
    if frame is not None:
        raise ConfigError([Problem(
            "step.run()", _where(frame), "was called while a worker process imported your "
            "script again: the call is at module level without the main guard",
            _line(frame), FIX)])


def refuse_unguarded_call() -> None:
    """Raise when ``step.run()`` is reached from module-level code of a script outside its
    main guard, and worker processes would import that script again.

    Raises
    ------
    ConfigError
        Naming the script, the line and the fix.
    """
    frame = _module_frame("__main__")
    if frame is None or not _reimported_by_workers():
        return
    guarded = _guarded_lines(frame.f_code.co_filename)
    if guarded is None or frame.f_lineno in guarded:
        return
    raise ConfigError([Problem(
        "step.run()", _where(frame), "is called at module level without the main guard, and "
        "the worker processes LocalCluster starts import this script again (each would run "
        "the step again)", _line(frame), FIX)])


def _module_frame(name: str) -> FrameType | None:
    """The outermost frame running the top level of module ``name``, if any."""
    frame, found = sys._getframe(1), None
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == name:
            found = frame
        frame = frame.f_back  # type: ignore[assignment]
    return found


def _reimported_by_workers() -> bool:
    """Whether multiprocessing's ``spawn`` imports ``__main__`` again in each child (the
    rules of ``multiprocessing.spawn.get_preparation_data`` and ``_fixup_main_*``)."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return name != "__main__" and not name.endswith(".__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return False
    return os.path.splitext(os.path.basename(path))[0] != "ipython"


def _guarded_lines(path: str) -> set[int] | None:
    """Line numbers below an ``if __name__ == "__main__":`` of the file at ``path``;
    None when the file cannot be read or parsed (then nothing is claimed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            branch = _main_test(node.test)
            body = node.body if branch == "==" else node.orelse if branch == "!=" else []
            for statement in body:
                lines.update(range(statement.lineno, (statement.end_lineno or 0) + 1))
    return lines


def _main_test(test: ast.expr) -> str | None:
    """``"=="`` or ``"!="`` when ``test`` compares ``__name__`` with ``"__main__"``."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], (ast.Eq, ast.NotEq))):
        return None
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    texts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    if not (names and texts):
        return None
    return "==" if isinstance(test.ops[0], ast.Eq) else "!="


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}, line {frame.f_lineno}"


def _line(frame: FrameType) -> str:
    return linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
