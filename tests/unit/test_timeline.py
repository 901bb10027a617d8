"""The timeline drawn from ``logs/sys/mini_batches.csv`` (issue 7): rows, bars, colours, file."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.colors import to_hex

from daskprs.cli import main
from daskprs.result import JobResult
from daskprs.timeline import STATUS_COLORS, plot_timeline

HEADER = ["run_id", "mini_batch_id", "input", "first_item", "last_item", "attempt", "worker",
          "pid", "start_utc", "seconds", "items", "succeeded", "failed", "status", "error"]
RUN = "20260101T120000-abc123"
# (mini-batch, attempt, worker, start second, seconds, status): a job with failures on two
# workers; table-00001 fails once then succeeds, table-00002 times out then succeeds,
# table-00003 crashes its runner then succeeds.
ATTEMPTS = [
    ("table-00000", 1, "worker-0", 0.0, 1.0, "succeeded"),
    ("table-00001", 1, "worker-1", 0.0, 0.5, "failed"),
    ("table-00001", 2, "worker-1", 0.5, 1.0, "succeeded"),
    ("table-00002", 1, "worker-0", 1.0, 3.0, "timed_out"),
    ("table-00003", 1, "worker-1", 1.5, 0.25, "crashed"),
    ("table-00003", 2, "worker-1", 2.0, 1.0, "succeeded"),
    ("table-00002", 2, "worker-0", 4.0, 1.0, "succeeded"),
]


def write_attempts(folder: Path, attempts=ATTEMPTS, run_id: str = RUN) -> Path:
    """Write a ``mini_batches.csv`` as the job writes it (header once, ``\\n`` endings)."""
    path = folder / "mini_batches.csv"
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if new:
            writer.writerow(HEADER)
        for mini_batch, attempt, worker, start, seconds, status in attempts:
            ok = status == "succeeded"
            writer.writerow([run_id, mini_batch, "table", "a.parquet#0", "a.parquet#9", attempt,
                             worker, 4000 + attempt, f"2026-01-01T12:00:{start:06.3f}+00:00",
                             seconds, 10, 10 if ok else 0, 0 if ok else 10, status,
                             "" if ok else "ValueError: boom"])
    return path


def bars(figure) -> list[tuple[str, float, float, str]]:
    """(worker, left, width, colour) of every bar, in drawing order."""
    axes = figure.axes[0]
    workers = [label.get_text() for label in axes.get_yticklabels()]
    return [(workers[round(patch.get_y() + patch.get_height() / 2)], patch.get_x(),
             patch.get_width(), to_hex(patch.get_facecolor())) for patch in axes.patches]


def test_timeline_has_one_row_per_worker_and_one_bar_per_attempt_coloured_by_status(tmp_path):
    figure = plot_timeline(write_attempts(tmp_path))

    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["worker-0", "worker-1"]
    assert list(axes.get_yticks()) == [0, 1]
    expected = sorted((worker, start, seconds, STATUS_COLORS[status])
                      for _, _, worker, start, seconds, status in ATTEMPTS)
    assert sorted(bars(figure)) == expected
    assert len(axes.patches) == 7


def test_timeline_legend_names_each_status_present_with_its_colour(tmp_path):
    figure = plot_timeline(write_attempts(tmp_path))

    legend = figure.axes[0].get_legend()
    labels = [text.get_text() for text in legend.get_texts()]
    colours = [to_hex(handle.get_facecolor()) for handle in legend.legend_handles]
    assert labels == ["succeeded", "failed", "timed out", "crashed"]
    assert colours == ["#2ca02c", "#d62728", "#ff7f0e", "#9467bd"]


def test_timeline_title_counts_attempts_by_status_and_names_the_run(tmp_path):
    figure = plot_timeline(write_attempts(tmp_path))

    assert figure.axes[0].get_title(loc="left") == (
        "7 attempts of 4 mini-batches on 2 workers: 4 succeeded, 1 failed, 1 timed out, "
        f"1 crashed\nrun {RUN}")


def test_timeline_labels_each_unsuccessful_attempt_with_its_mini_batch(tmp_path):
    figure = plot_timeline(write_attempts(tmp_path))

    labels = sorted(text.get_text() for text in figure.axes[0].texts)
    assert labels == ["table-00001 #1", "table-00002 #1", "table-00003 #1"]


def test_timeline_draws_only_the_last_run_of_a_resumed_job(tmp_path):
    write_attempts(tmp_path, ATTEMPTS[:2], run_id="20260101T110000-old000")
    path = write_attempts(tmp_path, ATTEMPTS[2:3], run_id=RUN)

    figure = plot_timeline(path)

    assert bars(figure) == [("worker-1", 0.0, 1.0, STATUS_COLORS["succeeded"])]
    assert figure.axes[0].get_title(loc="left").endswith(f"run {RUN}")


def test_lost_worker_attempt_without_seconds_is_still_a_visible_bar(tmp_path):
    path = write_attempts(tmp_path, ATTEMPTS[:1])
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerow(
            [RUN, "table-00001", "table", "a", "b", 1, "worker-1", 4001,
             "2026-01-01T12:00:00.500+00:00", "", 10, 0, 0, "worker_lost", "WorkerLost: lost"])

    lost = [bar for bar in bars(plot_timeline(path)) if bar[0] == "worker-1"]

    assert lost == [("worker-1", 0.5, pytest.approx(0.004), STATUS_COLORS["worker_lost"])]


def test_timeline_is_written_as_a_png_file(tmp_path):
    target = tmp_path / "timeline.png"

    plot_timeline(write_attempts(tmp_path), path=str(target))

    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_of_something_else_than_mini_batches_csv_says_what_to_give(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"not a mini_batches\.csv, got columns \['a', 'b'\]"):
        plot_timeline(other)


def test_timeline_without_matplotlib_gives_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)

    with pytest.raises(ImportError, match=r"pip install 'daskprs\[plot\]'"):
        plot_timeline(write_attempts(tmp_path))


def output_folder(tmp_path: Path) -> Path:
    """An output folder as a failed-then-retried job leaves it: job result and attempts."""
    output = tmp_path / "out"
    (output / "logs" / "sys").mkdir(parents=True)
    result = JobResult(status="Completed", run_id=RUN, output={"url": str(output),
                                                               "action": "summary_only"})
    (output / "logs" / "job_result.json").write_text(json.dumps(result.to_dict()),
                                                     encoding="utf-8")
    write_attempts(output / "logs" / "sys")
    return output


def test_job_result_plot_timeline_reads_the_attempts_of_its_output(tmp_path):
    result = JobResult.load(str(output_folder(tmp_path)))

    figure = result.plot_timeline(str(tmp_path / "t.png"))

    assert len(figure.axes[0].patches) == 7
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_show_timeline_writes_the_png_and_says_where(tmp_path):
    output = output_folder(tmp_path)
    target = tmp_path / "timeline.png"

    outcome = CliRunner().invoke(main, ["show", str(output), "--timeline", str(target)])

    assert outcome.exit_code == 0, outcome.output
    assert outcome.output.splitlines()[0] == "Completed"
    assert outcome.output.splitlines()[-1] == f"timeline: {target}"
    assert target.read_bytes()[:4] == b"\x89PNG"


def test_show_timeline_of_a_folder_without_attempts_exits_2(tmp_path):
    output = output_folder(tmp_path)
    (output / "logs" / "sys" / "mini_batches.csv").unlink()

    outcome = CliRunner().invoke(main, ["show", str(output), "--timeline",
                                        str(tmp_path / "t.png")])

    assert outcome.exit_code == 2
    assert "no logs/sys/mini_batches.csv to draw a timeline from" in outcome.output
    assert not (tmp_path / "t.png").exists()


def test_timeline_of_a_job_without_attempts_says_so(tmp_path):
    path = write_attempts(tmp_path, [])

    figure = plot_timeline(path, path=str(tmp_path / "empty.png"))

    axes = figure.axes[0]
    assert [text.get_text() for text in axes.texts] == ["no attempts recorded"]
    assert len(axes.patches) == 0
    assert axes.get_title(loc="left") == "0 attempts of 0 mini-batches on 0 workers: none"
