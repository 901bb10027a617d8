"""Find and check the user's entry script without importing it."""

from __future__ import annotations

import ast
import inspect
import os
from typing import Any

RUN_FIX = ("Define it as 'def run(mini_batch):' (or 'def run(mini_batch, mini_batch_context):' "
           "for the context)")


def script_defines(path: str, name: str) -> bool:
    """Whether the module at ``path`` binds ``name`` at top level.

    A top-level ``def``, an assignment, or an import binding the name counts.
    """
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    return _binding(tree, name) is not None


def _binding(tree: ast.Module, name: str) -> ast.stmt | None:
    """The last top-level statement of ``tree`` that binds ``name``, or None."""
    found = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                found = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound == name:
                    found = node
    return found


def _run_signature_problem(node: ast.stmt | None) -> str | None:
    """What keeps ``run`` from being called as ``run(mini_batch)`` (or, when it takes two
    positional parameters, ``run(mini_batch, mini_batch_context)``), if ``node`` is a
    ``def`` (other bindings cannot be judged without importing the script)."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    if not positional and args.vararg is None:
        if args.kwonlyargs:
            keywords = ", ".join(a.arg for a in args.kwonlyargs)
            return f"defines run() with keyword-only parameters ({keywords})"
        return "defines run() without a parameter"
    required = len(positional) - len(args.defaults)
    missing = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
               if d is None]
    if required > 2 or missing:
        names = [a.arg for a in positional[2:required]] + missing
        return (f"defines run() with required parameters besides mini_batch and "
                f"mini_batch_context ({', '.join(names)})")
    return None


def check_entry_script(entry_script: Any, source_directory: str | None) -> tuple[str, str] | None:
    """Return ``(message, fix)`` when the entry script cannot be used, else None."""
    if not isinstance(entry_script, (str, os.PathLike)):
        run = getattr(entry_script, "run", None)
        if callable(run):
            return _object_run_problem(run)
        return ("must be a path to a .py file or an object with a run() attribute",
                "Pass entry_script='score.py' or an object that defines run(mini_batch)")
    path = resolve_script_path(entry_script, source_directory)
    if not os.path.isfile(path):
        where = f" in source_directory {source_directory!r}" if source_directory else ""
        return (f"does not exist{where} (looked for {path!r})",
                "Give the script's path relative to source_directory, or fix source_directory")
    try:
        with open(path, encoding="utf-8") as handle:
            run = _binding(ast.parse(handle.read(), filename=path), "run")
    except SyntaxError as exc:
        return (f"is not valid Python: {exc.msg} at line {exc.lineno}",
                "Fix the syntax error in the script")
    except (OSError, UnicodeDecodeError) as exc:
        return (f"cannot be read: {exc}", "Make the file readable UTF-8 text")
    if run is None:
        return ("defines no top-level run(mini_batch)",
                "Add 'def run(mini_batch): ...' returning one element per successful item")
    wrong = _run_signature_problem(run)
    if wrong:
        return (f"{wrong} at line {run.lineno}", RUN_FIX)
    return None


def resolve_script_path(entry_script: str | os.PathLike[str], source_directory: str | None) -> str:
    """The absolute path of the entry script file."""
    script = os.fspath(entry_script)
    if source_directory and not os.path.isabs(script):
        script = os.path.join(source_directory, script)
    return os.path.abspath(script)


def _object_run_problem(run: Any) -> tuple[str, str] | None:
    """The ``run`` attribute of an entry-script object must take the mini-batch (and the
    context, when it takes two positional parameters)."""
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):  # no signature to read (a builtin): judged when it runs
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in signature.parameters.values() if p.kind in kinds]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values())
    arguments = (None, None) if len(positional) >= 2 or varargs else (None,)
    try:
        signature.bind(*arguments)
    except TypeError as exc:
        return f"has a run() that cannot take the mini-batch ({exc})", RUN_FIX
    return None
