"""The worker's side of the runner: start it, hand it a mini-batch, wait, kill, replace."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

OutcomeStatus = Literal["ok", "error", "timed_out", "crashed"]


@dataclass
class Outcome:
    """What one call into the runner came to.

    Parameters
    ----------
    status
        ``ok``, ``error`` (user code raised), ``timed_out`` or ``crashed`` (the runner died).
    value
        The returned value, when ok.
    error
        One line, ``Type: message``.
    traceback
        The full traceback, when user code raised.
    """

    status: OutcomeStatus
    value: Any = None
    error: str = ""
    traceback: str = ""
    pid: int | None = None
    seconds: float = 0.0


class RunnerProcess:
    """One runner child process.

    Parameters
    ----------
    settings
        The ``init`` message's settings (script, arguments, working folder, log files).
    env
        The runner's environment.
    stdout_path, stderr_path
        Files that receive the runner's stdout and stderr (appended).
    """

    def __init__(self, settings: dict[str, Any], env: dict[str, str], stdout_path: str,
                 stderr_path: str) -> None:
        self.settings = settings
        self.env = env
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.process: subprocess.Popen[bytes] | None = None
        self.conn: Connection | None = None
        self.pid: int | None = None

    def start(self, timeout: float) -> Outcome:
        """Start the process and run ``init()``; wait at most ``timeout`` seconds."""
        ours, theirs = socket.socketpair()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daskprs.worker.runner", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=self.env, cwd=self.settings["cwd"], start_new_session=True)
        theirs.close()
        self.pid = self.process.pid
        self.conn = Connection(ours.detach())
        self.conn.send(("init", self.settings))
        return self._receive(timeout, "init()")

    def run(self, mini_batch: Any, context: Any, timeout: float) -> Outcome:
        """Hand one mini-batch to ``run()``; wait at most ``timeout`` seconds."""
        assert self.conn is not None
        clock = time.perf_counter()
        try:
            self.conn.send(("run", mini_batch, context))
            outcome = self._receive(timeout, "run()")
        except (BrokenPipeError, ConnectionResetError, OSError):
            outcome = self._crashed()
        outcome.pid, outcome.seconds = self.pid, time.perf_counter() - clock
        return outcome

    def stop(self, timeout: float) -> None:
        """Ask the runner to call ``shutdown()`` and exit; kill it if it does not."""
        if self.alive() and self.conn is not None:
            try:
                self.conn.send(("shutdown",))
                self._receive(timeout, "shutdown()")
            except OSError:
                pass
        self.kill()

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Kill the runner and everything it started (its own process session)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _receive(self, timeout: float, what: str) -> Outcome:
        assert self.conn is not None
        try:
            ready = self.conn.poll(timeout)
        except (OSError, EOFError):
            return self._crashed()
        if not ready:
            self.kill()
            return Outcome("timed_out", error=f"TimeoutError: {what} took longer than "
                           f"{timeout:g} s (run_invocation_timeout); its process was killed")
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            return self._crashed()
        if message[0] == "ok":
            return Outcome("ok", value=message[1])
        _, kind, text, trace = message
        return Outcome("error", error=f"{kind}: {text}" if text else kind, traceback=trace)

    def _crashed(self) -> Outcome:
        assert self.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.kill()
        code = self.process.returncode
        cause = f"signal {-code}" if code < 0 else f"exit code {code}"
        if code < 0 and -code in signal.valid_signals():
            cause = f"signal {signal.Signals(-code).name}"
        return Outcome("crashed", error=f"RunnerCrashed: the runner process ended with {cause}")
