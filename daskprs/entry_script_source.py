"""Find and check the user's entry script without importing it."""

from __future__ import annotations

import ast
import os
from typing import Any


def script_defines(path: str, name: str) -> bool:
    """Whether the module at ``path`` binds ``name`` at top level.

    A top-level ``def``, an assignment, or an import binding the name counts.
    """
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return True
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound == name:
                    return True
    return False


def check_entry_script(entry_script: Any, source_directory: str | None) -> tuple[str, str] | None:
    """Return ``(message, fix)`` when the entry script cannot be used, else None."""
    if not isinstance(entry_script, (str, os.PathLike)):
        if callable(getattr(entry_script, "run", None)):
            return None
        return ("must be a path to a .py file or an object with a run() attribute",
                "Pass entry_script='score.py' or an object that defines run(mini_batch)")
    path = resolve_script_path(entry_script, source_directory)
    if not os.path.isfile(path):
        where = f" in source_directory {source_directory!r}" if source_directory else ""
        return (f"does not exist{where} (looked for {path!r})",
                "Give the script's path relative to source_directory, or fix source_directory")
    try:
        defines_run = script_defines(path, "run")
    except SyntaxError as exc:
        return (f"is not valid Python: {exc.msg} at line {exc.lineno}",
                "Fix the syntax error in the script")
    except (OSError, UnicodeDecodeError) as exc:
        return (f"cannot be read: {exc}", "Make the file readable UTF-8 text")
    if not defines_run:
        return ("defines no top-level run(mini_batch)",
                "Add 'def run(mini_batch): ...' returning one element per successful item")
    return None


def resolve_script_path(entry_script: str | os.PathLike[str], source_directory: str | None) -> str:
    """The absolute path of the entry script file."""
    script = os.fspath(entry_script)
    if source_directory and not os.path.isabs(script):
        script = os.path.join(source_directory, script)
    return os.path.abspath(script)
