"""The timeline of a job: one row per worker, one bar per attempt, coloured by outcome.

Drawn from ``logs/sys/mini_batches.csv`` (SPEC §5.1). matplotlib is an optional extra
(``pip install daskprs[plot]``), imported only when a timeline is drawn.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The colour of each attempt status, in legend order.
STATUS_COLORS: dict[str, str] = {
    "succeeded": "#2ca02c",
    "failed": "#d62728",
    "timed_out": "#ff7f0e",
    "crashed": "#9467bd",
    "worker_lost": "#8c564b",
    "canceled": "#7f7f7f",
}
OTHER_COLOR = "#000000"
BAR_HEIGHT = 0.6
MAX_LABELS = 20  # failed attempts labelled with their mini-batch id, at most


def plot_timeline(attempts: str | os.PathLike[str] | pd.DataFrame, path: str | None = None,
                  run_id: str | None = None) -> Figure:
    """Draw the attempts of a job as a timeline.

    Parameters
    ----------
    attempts
        A ``mini_batches.csv`` file or its rows as a DataFrame.
    path
        Also write the figure to this file (its extension chooses the format: ``.png``,
        ``.svg``, ``.pdf``).
    run_id
        The run to draw; by default the last one in the file (a resumed job appends a
        run per resume).

    Returns
    -------
    matplotlib.figure.Figure
        One row per worker, one bar per attempt from its start for its ``seconds``,
        coloured by ``status``; the title counts attempts per status.

    Raises
    ------
    ImportError
        When matplotlib is not installed; the message gives the command to install it.
    """
    frame = attempts if isinstance(attempts, pd.DataFrame) else pd.read_csv(
        attempts, dtype=str, keep_default_na=False)
    rows = _attempt_rows(frame, run_id)
    figure = _draw(rows)
    if path is not None:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    return figure


def _attempt_rows(frame: pd.DataFrame, run_id: str | None) -> pd.DataFrame:
    """The attempts of one run with ``start`` (s since the run's first start) and ``width``."""
    missing = {"run_id", "mini_batch_id", "attempt", "worker", "start_utc", "seconds",
               "status"} - set(frame.columns)
    if missing:
        raise ValueError(f"attempts: not a mini_batches.csv, got columns {list(frame.columns)!r}"
                         f" (missing {sorted(missing)!r}). Give <output>/logs/sys/"
                         f"mini_batches.csv.")
    frame = frame.astype({"run_id": str, "worker": str, "status": str})
    if run_id is None and len(frame):
        run_id = frame["run_id"].iloc[-1]
    rows = frame[frame["run_id"] == run_id].copy()
    rows["started"] = pd.to_datetime(rows["start_utc"], utc=True, format="ISO8601",
                                     errors="coerce")
    rows = rows[rows["started"].notna()]
    rows["seconds"] = pd.to_numeric(rows["seconds"], errors="coerce")
    origin = rows["started"].min() if len(rows) else pd.Timestamp.now(tz="UTC")
    rows["start"] = (rows["started"] - origin).dt.total_seconds()
    span = float((rows["start"] + rows["seconds"].fillna(0)).max()) if len(rows) else 0.0
    # an attempt whose end is unknown (worker lost) still gets a visible sliver
    rows["width"] = rows["seconds"].fillna(0).clip(lower=(span or 1.0) * 0.004)
    end = float((rows["start"] + rows["width"]).max()) if len(rows) else 0.0
    rows.attrs.update(run_id=run_id, origin=origin, span=end)
    return rows


def _draw(rows: pd.DataFrame) -> Figure:
    workers = sorted(set(rows["worker"]), key=_natural_key)
    figure = _new_figure(10.0, 1.6 + 0.45 * max(len(workers), 1))
    axes = figure.add_subplot()
    row_of = {worker: number for number, worker in enumerate(workers)}
    statuses = list(STATUS_COLORS) + sorted(set(rows["status"]) - set(STATUS_COLORS))
    for status in statuses:
        group = rows[rows["status"] == status]
        if group.empty:
            continue
        axes.barh([row_of[w] for w in group["worker"]], group["width"], left=group["start"],
                  height=BAR_HEIGHT, color=STATUS_COLORS.get(status, OTHER_COLOR),
                  edgecolor="white", linewidth=0.5, label=_status_label(status))
    _label_failures(axes, rows, row_of)
    axes.set_yticks(range(len(workers)), worker_labels(rows, workers))
    axes.set_ylim(max(len(workers), 1) - 0.5, -0.5)  # the first worker on top
    axes.set_xlim(0, (rows.attrs["span"] or 1.0) * 1.02)
    axes.set_xlabel(f"seconds since {rows.attrs['origin']:%Y-%m-%d %H:%M:%S} UTC")
    axes.grid(axis="x", alpha=0.3)
    axes.set_title(_title(rows, len(workers)), fontsize=10, loc="left")
    if len(rows):
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
    else:
        axes.text(0.5, 0.5, "no attempts recorded", ha="center", va="center",
                  transform=axes.transAxes)
    figure.tight_layout()
    return figure


def worker_labels(rows: pd.DataFrame, workers: list[str]) -> list[str]:
    """Each worker's name, with its runner's GPUs (``worker-0 (GPU 0)``) when the attempts
    have a ``device`` (files written before that column have none)."""
    if "device" not in rows.columns:
        return list(workers)
    used = rows[rows["device"].astype(str) != ""]
    devices = used.groupby("worker")["device"].last().to_dict()
    return [f"{worker} (GPU {devices[worker]})" if worker in devices else worker
            for worker in workers]


def _label_failures(axes: Any, rows: pd.DataFrame, row_of: dict[str, int]) -> None:
    """Name the mini-batch and attempt of each unsuccessful attempt, when they are few."""
    failures = rows[rows["status"] != "succeeded"]
    if len(failures) > MAX_LABELS:
        return
    for _, attempt in failures.iterrows():
        axes.annotate(f"{attempt['mini_batch_id']} #{attempt['attempt']}",
                      (attempt["start"], row_of[attempt["worker"]] - BAR_HEIGHT / 2),
                      xytext=(1, 2), textcoords="offset points", fontsize=7, va="bottom",
                      annotation_clip=False)


def _title(rows: pd.DataFrame, workers: int) -> str:
    counts = rows["status"].value_counts()
    parts = [f"{counts[s]} {_status_label(s)}" for s in list(STATUS_COLORS)
             + sorted(set(counts.index) - set(STATUS_COLORS)) if s in counts]
    attempts = len(rows)
    head = (f"{attempts} attempt{'s' * (attempts != 1)} of "
            f"{rows['mini_batch_id'].nunique()} mini-batches on {workers} "
            f"worker{'s' * (workers != 1)}")
    run = rows.attrs["run_id"]
    return f"{head}: {', '.join(parts) or 'none'}" + (f"\nrun {run}" if run else "")


def _status_label(status: str) -> str:
    return status.replace("_", " ")


def _natural_key(name: str) -> list[Any]:
    """``worker-2`` before ``worker-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _new_figure(width: float, height: float) -> Figure:
    """A figure that shows once in Jupyter and needs no GUI elsewhere.

    In an IPython kernel the figure is made through pyplot, which turns on the inline
    backend's display of figures, and closed at once so pyplot neither shows it a second
    time nor keeps it; elsewhere it is a bare Figure on the Agg canvas.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plot_timeline needs matplotlib: pip install 'daskprs[plot]'") \
            from exc
    if _in_ipython():
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(width, height))
        plt.close(figure)
        return figure
    return Figure(figsize=(width, height))


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None
