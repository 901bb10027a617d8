"""``_daskprs/lock.json``: one live job per output, also when two jobs take over a stale
lock at the same moment."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from daskprs.errors import OutputError
from daskprs.outputs.guard import OutputLock
from daskprs.storage import Location

TRIALS = 200
DEAD_PID = 2**30  # above any pid_max: os.kill says no such process


def stale_lock(output: Path, run_id: str) -> bytes:
    """A lock left by a job whose process is gone, on this host."""
    data = json.dumps({"pid": DEAD_PID, "host": socket.gethostname(), "run_id": run_id,
                       "started": "2020-01-01T00:00:00+0000"}).encode()
    (output / "_daskprs").mkdir(parents=True, exist_ok=True)
    (output / "_daskprs" / "lock.json").write_bytes(data)
    return data


def contend(output: str, trials: int, barrier: Any, results: Any) -> None:
    """One of two processes: at each start signal, try to take the lock; report."""
    location = Location(output)
    for trial in range(trials):
        barrier.wait(timeout=120)
        lock = OutputLock(location, f"run-{trial}-{os.getpid()}")
        try:
            lock.acquire()
            outcome = "acquired"
        except OutputError:
            outcome = "refused"
        except Exception as exc:  # anything else is a bug the test reports
            outcome = f"{type(exc).__name__}: {exc}"
        results.put((trial, outcome))


def test_two_processes_taking_over_one_stale_lock_never_both_win(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=contend, args=(str(tmp_path), TRIALS, barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes: list[tuple[str, str]] = []
    try:
        for trial in range(TRIALS):
            for leftover in (tmp_path / "_daskprs").glob("lock.json*"):
                leftover.unlink()
            stale_lock(tmp_path, f"stale-{trial}")
            barrier.wait(timeout=120)  # both contenders start now
            got = sorted(results.get(timeout=120)[1] for _ in range(2))
            outcomes.append((got[0], got[1]))
    finally:
        for worker in workers:
            worker.join(timeout=120)
            if worker.is_alive():
                worker.kill()

    assert Counter(outcomes) == Counter({("acquired", "refused"): TRIALS})


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    stale_lock(tmp_path, "stale")

    OutputLock(Location(str(tmp_path)), "mine").acquire()

    holder = json.loads((tmp_path / "_daskprs" / "lock.json").read_bytes())
    assert (holder["run_id"], holder["pid"]) == ("mine", os.getpid())
    assert sorted(p.name for p in (tmp_path / "_daskprs").iterdir()) == ["lock.json"]


def test_a_live_lock_is_refused_with_the_job_that_holds_it(tmp_path: Path) -> None:
    OutputLock(Location(str(tmp_path)), "first").acquire()

    with pytest.raises(OutputError, match=r"is in use by job first \(pid \d+ on "):
        OutputLock(Location(str(tmp_path)), "second").acquire()


def test_a_lock_another_job_is_taking_over_is_refused(tmp_path: Path) -> None:
    """Another process holds the take-over marker of this stale lock: it decides."""
    stale = stale_lock(tmp_path, "stale")
    lock = OutputLock(Location(str(tmp_path)), "mine")
    Path(lock.takeover_path(stale)).write_bytes(b"{}")

    with pytest.raises(OutputError, match="is being taken over by another job"):
        lock.acquire()

    assert (tmp_path / "_daskprs" / "lock.json").read_bytes() == stale


def test_an_unreadable_lock_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "_daskprs").mkdir()
    (tmp_path / "_daskprs" / "lock.json").write_bytes(b"{not json")

    OutputLock(Location(str(tmp_path)), "mine").acquire()

    assert json.loads((tmp_path / "_daskprs" / "lock.json").read_bytes())["run_id"] == "mine"


def test_release_gives_the_lock_back(tmp_path: Path) -> None:
    first = OutputLock(Location(str(tmp_path)), "first")
    first.acquire()
    first.release()

    OutputLock(Location(str(tmp_path)), "second").acquire()
