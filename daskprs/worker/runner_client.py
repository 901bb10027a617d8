"""The worker's side of the runner: start it, hand it a mini-batch, wait, kill, replace.

The ``run_invocation_timeout`` clock covers ``run()`` only: it starts when the runner says
it took the mini-batch (``("started",)``, sent after unpickling it), so neither a fresh
runner's imports nor the transfer of a large mini-batch are charged to ``run()``; the
hand-over has a generous bound of its own (:func:`handover_timeout`). The runner's death
is seen at once (a pidfd on Linux, else a poll every 0.1 s), also when a process it
forked still holds the socket open. Killing a runner kills its process group: everything
``run()`` started that did not leave it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

import psutil

OutcomeStatus = Literal["ok", "error", "timed_out", "crashed", "unhealthy", "overtaken"]
_POLL_SECONDS = 0.1       # how often death is checked where no pidfd exists
_EXIT_SECONDS = 5.0       # how long a runner that closed its socket may take to exit


@dataclass
class Outcome:
    """What one call into the runner came to.

    Parameters
    ----------
    status
        ``ok``, ``error`` (user code raised), ``timed_out``, ``crashed`` (the runner died)
        or ``unhealthy`` (the worker can run nothing: its runner's ``init()`` failed).
    value
        The returned value, when ok.
    error
        One line, ``Type: message``.
    traceback
        The full traceback, when user code raised.
    pid
        The runner's pid.
    seconds
        From handing the mini-batch over to the outcome.
    kinds
        Qualified names of the raised exception's classes, most derived first (``error``).
    """

    status: OutcomeStatus
    value: Any = None
    error: str = ""
    traceback: str = ""
    pid: int | None = None
    seconds: float = 0.0
    kinds: tuple[str, ...] = ()


def handover_timeout(timeout: float) -> float:
    """How long a runner may take to receive and unpickle a mini-batch before ``run()``
    (a bound for a stuck unpickle, far above any normal hand-over)."""
    return 3 * timeout + 30


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
        self.pidfd: int | None = None
        self.pid: int | None = None

    def start(self, timeout: float, started: Callable[[int], None] | None = None) -> Outcome:
        """Start the process and run ``init()``; give importing the script and ``init()``
        at most ``timeout`` seconds (the clock starts when the runner says it starts them:
        Python's and daskprs' own start-up have the bound :func:`handover_timeout`).
        ``started`` is called with the pid as soon as the process exists."""
        ours, theirs = socket.socketpair()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daskprs.worker.runner", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=self.env, cwd=self.settings["cwd"], start_new_session=True)
        theirs.close()
        self.pid = self.process.pid
        if started is not None:
            started(self.pid)
        self.pidfd = _pidfd(self.pid)
        self.conn = Connection(ours.detach())
        try:
            self.conn.send(("init", self.settings))
        except OSError:
            return self._crashed()
        startup = handover_timeout(timeout)
        first = self._next(startup, f"TimeoutError: the runner did not start within "
                           f"{startup:g} s; its process was killed")
        if not (isinstance(first, tuple) and first[0] == "started"):
            return self._outcome(first)
        return self._receive(timeout, f"TimeoutError: init() took longer than {timeout:g} s "
                             f"(init_timeout); its process was killed")

    def run(self, mini_batch: Any, context: Any, timeout: float) -> Outcome:
        """Hand one mini-batch to ``run()``; give ``run()`` at most ``timeout`` seconds."""
        assert self.conn is not None
        clock = time.perf_counter()
        handover = handover_timeout(timeout)
        try:
            self.conn.send(("run", mini_batch, context))
        except OSError:  # BrokenPipeError, ConnectionResetError: the runner is gone
            outcome = self._crashed()
        else:
            first = self._next(handover, f"TimeoutError: the runner did not take the "
                               f"mini-batch within {handover:g} s; its process was killed")
            if isinstance(first, tuple) and first[0] == "started":  # run() begins: the clock
                outcome = self._receive(timeout, f"TimeoutError: run() took longer than "
                                        f"{timeout:g} s (run_invocation_timeout); its process "
                                        f"was killed")
            else:
                outcome = self._outcome(first)
        outcome.pid, outcome.seconds = self.pid, time.perf_counter() - clock
        return outcome

    def stop(self, timeout: float) -> None:
        """Ask the runner to call ``shutdown()`` and exit; then kill its process group."""
        if self.alive() and self.conn is not None:
            try:
                self.conn.send(("shutdown",))
                self._receive(timeout, "")
            except OSError:
                pass
        self.kill()

    def alive(self) -> bool:
        """Whether the process is running (a dead one is not reaped here, so that its
        process group can still be killed)."""
        if self.process is None or self.process.returncode is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.process.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except (AttributeError, ChildProcessError):  # no waitid: let Popen look
            return self.process.poll() is None

    def kill(self) -> None:
        """Kill the runner and everything it started: its process group (its own session),
        and its descendants that left the group."""
        if self.process is None:
            return
        if self.process.returncode is None:  # not reaped: the pid still names the group
            strays = _descendants(self.process.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            for stray in strays:
                with contextlib.suppress(psutil.Error):
                    stray.kill()
            self.process.wait()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def _receive(self, timeout: float, late: str) -> Outcome:
        """The runner's next message as an Outcome (see :meth:`_next`)."""
        return self._outcome(self._next(timeout, late))

    def _next(self, timeout: float, late: str) -> tuple[Any, ...] | Outcome:
        """The runner's next message; or ``timed_out`` with the error ``late`` (the runner
        is killed) after ``timeout`` s, or ``crashed`` when the runner died."""
        assert self.conn is not None
        state = self._wait(timeout)
        if state == "timeout":
            self.kill()
            return Outcome("timed_out", error=late)
        if state == "died":
            return self._crashed()
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return self._crashed()

    def _outcome(self, message: tuple[Any, ...] | Outcome) -> Outcome:
        if isinstance(message, Outcome):
            return message
        if message[0] == "ok":
            return Outcome("ok", value=message[1])
        if message[0] != "error":
            self.kill()
            return Outcome("crashed", error=f"RunnerCrashed: the runner sent {message[0]!r} "
                           f"out of turn; its process was killed")
        _, kind, text, trace, unusable, *more = message
        if unusable:  # e.g. after a MemoryError: the runner must not be used again
            self.kill()
        return Outcome("error", error=f"{kind}: {text}" if text else kind, traceback=trace,
                       kinds=tuple(more[0]) if more else ())

    def _wait(self, timeout: float) -> str:
        """``message`` when the runner wrote, ``died`` when it ended, else ``timeout``."""
        assert self.conn is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "message" if self.conn.poll(0) else "timeout"
            watched: list[Any] = [self.conn]
            if self.pidfd is not None:
                watched.append(self.pidfd)
            try:
                ready = wait(watched, remaining if self.pidfd is not None
                             else min(remaining, _POLL_SECONDS))
            except OSError:
                return "died"
            if self.conn in ready:
                return "message"
            if ready or not self.alive():
                return "died"

    def _crashed(self) -> Outcome:
        assert self.process is not None
        self._wait_exit(_EXIT_SECONDS)
        self.kill()
        code = self.process.returncode
        cause = f"signal {-code}" if code < 0 else f"exit code {code}"
        if code < 0 and -code in signal.valid_signals():
            cause = f"signal {signal.Signals(-code).name}"
        return Outcome("crashed", error=f"RunnerCrashed: the runner process ended with {cause}")

    def _wait_exit(self, timeout: float) -> None:
        """Wait until the runner has exited, without reaping it."""
        if self.pidfd is not None:
            wait([self.pidfd], timeout)
            return
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
