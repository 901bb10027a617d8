"""The runner: the child process of a Dask worker in which all user code executes.

Started with ``python -m daskprs.worker.runner FD``, as the leader of its own process
session; it speaks to its worker over the socket ``FD`` with pickled messages
(``multiprocessing.connection``)::

    worker -> runner   ("init", settings) | ("run", mini_batch, context) | ("shutdown",)
    runner -> worker   ("ok", value) | ("error", type, message, traceback, unusable)
                       | ("started",)   the mini-batch is unpickled; run() is called now

``unusable`` says the runner must be replaced (after a ``MemoryError``); the runner then
exits. Its stdout and stderr are the worker's ``logs/user/stdout`` and ``stderr`` files;
what Python code writes there passes the redactor. When its worker goes away, the runner
kills its process group (itself and what ``run()`` started).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import os
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any

from daskprs.compat import add_shim_to_path
from daskprs.result_check import check_result
from daskprs.storage.secrets import RedactingStream, redact, remember

_PARENT_POLL_SECONDS = 1.0


def main(argv: list[str]) -> int:
    """Serve one worker until it says shutdown or goes away."""
    conn = Connection(int(argv[1]))
    os.set_inheritable(conn.fileno(), False)  # a child exec'd by run() must not hold it
    _watch_parent()
    kind, settings = conn.recv()
    assert kind == "init", kind
    remember(*settings["secrets"])
    sys.stdout = sys.__stdout__ = RedactingStream(sys.stdout, settings["secrets"])
    sys.stderr = sys.__stderr__ = RedactingStream(sys.stderr, settings["secrets"])
    logging.basicConfig(stream=sys.stdout, level=settings["logging_level"],
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
    try:
        if settings.get("warm_up"):
            warm_up()
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
        except EOFError:  # the worker went away without a shutdown
            _end_group()
            return 0
        except BaseException as exc:  # a mini-batch that cannot be unpickled here
            unusable = isinstance(exc, MemoryError)
            _report(conn, settings, exc, "receiving a mini-batch", unusable=unusable)
            if unusable:
                return 1
            continue
        if message[0] == "shutdown":
            _shutdown(script, settings)
            conn.send(("ok", None))
            return 0
        _, mini_batch, context = message
        conn.send(("started",))
        try:
            result = run(mini_batch, context) if with_context else run(mini_batch)
            problem = check_result(result)
            if problem:
                raise TypeError(problem.split(": ", 1)[1])
            conn.send(("ok", result))
        except MemoryError as exc:  # the runner may be unusable: report, then end
            del message, mini_batch  # free what can be freed before reporting
            _report(conn, settings, exc,
                    f"run() of {context.mini_batch_id}, attempt {context.attempt}",
                    unusable=True)
            return 1
        except BaseException as exc:
            _report(conn, settings, exc,
                    f"run() of {context.mini_batch_id}, attempt {context.attempt}")


def warm_up() -> None:
    """Import what unpickling a DataFrame mini-batch needs (pandas, numpy, and pyarrow for
    pandas' string columns, when installed), so that no ``run()`` pays for it."""
    try:
        import pickle

        import pandas as pd

        frame = pd.DataFrame({"i": [1], "f": [1.0], "s": ["x"], "b": [True],
                              "t": pd.to_datetime(["2024-01-01"]),
                              "c": pd.Categorical(["x"])})
        pickle.loads(pickle.dumps(frame))
    except Exception:  # not installed, or broken: the first mini-batch will say so
        return


def _load_script(settings: dict[str, Any]) -> Any:
    os.chdir(settings["cwd"])
    for folder in (settings["source_directory"], settings["cwd"]):
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
    add_shim_to_path()  # azureml.core for Azure scripts, unless the real one is installed
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


def _report(conn: Connection, settings: dict[str, Any], exc: BaseException, where: str,
            unusable: bool = False) -> None:
    secrets = settings["secrets"]
    text = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                  secrets)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with open(settings["error_log"], "a", encoding="utf-8") as handle:
        handle.write(f"{stamp} pid {os.getpid()}: {where} failed\n{text}\n")
    message = redact(str(exc).splitlines()[0], secrets) if str(exc) else ""
    try:
        conn.send(("error", type(exc).__name__, message, text, unusable))
    except Exception as send_error:  # an unpicklable result, a closed pipe
        conn.send(("error", type(send_error).__name__, str(send_error), text, unusable))


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


def _watch_parent() -> None:
    """End the runner and its process group when its worker process dies (the runner is
    then re-parented), also while ``run()`` is busy."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_SECONDS)
        _end_group()

    threading.Thread(target=watch, name="daskprs-watch-worker", daemon=True).start()


def _end_group() -> None:
    """Kill this runner's process group (the runner included) when it leads one."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if os.getpgrp() == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
