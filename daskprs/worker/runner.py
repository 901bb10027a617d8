"""The runner: the child process of a Dask worker in which all user code executes.

Started with ``python -m daskprs.worker.runner FD``; it speaks to its worker over the
socket ``FD`` with pickled messages (``multiprocessing.connection``)::

    worker -> runner   ("init", settings) | ("run", mini_batch, context) | ("shutdown",)
    runner -> worker   ("ok", value) | ("error", type, message, traceback)

Its stdout and stderr are the worker's ``logs/user/stdout`` and ``stderr`` files;
what Python code writes there passes the redactor.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import sys
import traceback
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any

from daskprs.result_check import check_result
from daskprs.storage.secrets import RedactingStream, redact, remember


def main(argv: list[str]) -> int:
    """Serve one worker until it says shutdown or goes away."""
    conn = Connection(int(argv[1]))
    kind, settings = conn.recv()
    assert kind == "init", kind
    remember(*settings["secrets"])
    sys.stdout = sys.__stdout__ = RedactingStream(sys.stdout, settings["secrets"])
    sys.stderr = sys.__stderr__ = RedactingStream(sys.stderr, settings["secrets"])
    logging.basicConfig(stream=sys.stdout, level=settings["logging_level"],
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
    try:
        script = _load_script(settings)
        init = getattr(script, "init", None)
        if callable(init):
            init()
    except BaseException as exc:
        _report(conn, settings, exc, "init()")
        return 1
    run = script.run
    with_context = takes_context(run)
    conn.send(("ok", {"pid": os.getpid(), "takes_context": with_context}))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return 0
        if message[0] == "shutdown":
            _shutdown(script, settings)
            conn.send(("ok", None))
            return 0
        _, mini_batch, context = message
        try:
            result = run(mini_batch, context) if with_context else run(mini_batch)
            problem = check_result(result)
            if problem:
                raise TypeError(problem.split(": ", 1)[1])
            conn.send(("ok", result))
        except BaseException as exc:
            _report(conn, settings, exc,
                    f"run() of {context.mini_batch_id}, attempt {context.attempt}")


def _load_script(settings: dict[str, Any]) -> Any:
    os.chdir(settings["cwd"])
    for folder in (settings["source_directory"], settings["cwd"]):
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
    if settings["script_object"] is not None:
        import cloudpickle

        sys.argv = ["entry_script", *settings["arguments"]]
        return cloudpickle.loads(settings["script_object"])
    path = settings["script_path"]
    sys.argv = [path, *settings["arguments"]]
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def takes_context(run: Any) -> bool:
    """Whether ``run`` takes ``(mini_batch, mini_batch_context)``: two positional
    parameters, or ``*args``."""
    try:
        parameters = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def _report(conn: Connection, settings: dict[str, Any], exc: BaseException, where: str) -> None:
    secrets = settings["secrets"]
    text = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                  secrets)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with open(settings["error_log"], "a", encoding="utf-8") as handle:
        handle.write(f"{stamp} pid {os.getpid()}: {where} failed\n{text}\n")
    message = redact(str(exc).splitlines()[0], secrets) if str(exc) else ""
    try:
        conn.send(("error", type(exc).__name__, message, text))
    except Exception as send_error:  # an unpicklable result, a closed pipe
        conn.send(("error", type(send_error).__name__, str(send_error), text))


def _shutdown(script: Any, settings: dict[str, Any]) -> None:
    shutdown = getattr(script, "shutdown", None)
    if not callable(shutdown):
        return
    try:
        shutdown()
    except BaseException as exc:
        text = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                      settings["secrets"])
        with open(settings["error_log"], "a", encoding="utf-8") as handle:
            handle.write(f"shutdown() failed (status unchanged)\n{text}\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
