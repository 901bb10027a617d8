"""The notebooks in ``notebooks/`` run top to bottom on a real Jupyter kernel (issue 7).

Each notebook is executed once with nbclient (a cell that raises fails the run), then the
tests read what its cells printed and displayed. The timeouts only stop a run that hangs:
they are far above what a cell needs on a loaded machine, and no test measures time.

nbclient does not merge a cell's stream outputs: the kernel flushes stdout on a timer, so
one ``print()`` can arrive as two outputs on a busy machine. The tests join each cell's
outputs of one stream (``stdout``, ``stderr``) before reading lines.

The kernel is this interpreter, whatever kernelspecs the machine has: the tests write a
kernelspec whose ``argv`` is ``sys.executable`` into a temporary folder, under a name no
other kernelspec uses, and give nbclient a kernel manager that looks only there. A
kernelspec named ``python3`` could point to another Python (a user's, or one that has no
daskprs), and setting ``JUPYTER_PATH`` would change the environment of everything else
the session runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL_NAME = "daskprs-tests"
CELL_TIMEOUT = 600  # seconds; a cell that takes longer has hung
KERNEL_STARTUP_TIMEOUT = 300  # seconds
# A test that executes a notebook runs all of its cells: more than the suite's 300 s default.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A kernelspec folder whose only kernel runs this interpreter."""
    folder = tmp_path_factory.mktemp("kernels")
    spec = folder / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "daskprs tests", "language": "python"}), encoding="utf-8")
    return [str(folder)]


@pytest.fixture(scope="module")
def executed(kernel_dirs: list[str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Callable[[str], nbformat.NotebookNode]]:
    """``executed(name)``: the notebook ``notebooks/<name>.ipynb`` after a run, run once."""
    runs: dict[str, nbformat.NotebookNode] = {}

    def execute(name: str) -> nbformat.NotebookNode:
        if name not in runs:
            notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
            manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                         kernel_spec_manager=KernelSpecManager(
                                             kernel_dirs=kernel_dirs))
            cwd = tmp_path_factory.mktemp(name)
            # cleanup_kc: shut the kernel down after the run (nbclient keeps a kernel it
            # did not create alive otherwise)
            NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT,
                           startup_timeout=KERNEL_STARTUP_TIMEOUT,
                           resources={"metadata": {"path": str(cwd)}}).execute(cleanup_kc=True)
            runs[name] = notebook
        return runs[name]

    yield execute


def stream(cell: nbformat.NotebookNode, name: str) -> str:
    """All the text ``cell`` wrote to the stream ``name`` (``stdout``, ``stderr``), joined."""
    return "".join(output.text for output in cell.outputs
                   if output.output_type == "stream" and output.name == name)


def printed(notebook: nbformat.NotebookNode) -> list[str]:
    """Every line the notebook's cells printed to stdout."""
    return [line for cell in notebook.cells if cell.cell_type == "code"
            for line in stream(cell, "stdout").splitlines()]


def displayed(notebook: nbformat.NotebookNode, mime: str) -> list[str]:
    """The ``mime`` payloads the notebook displayed, in order."""
    return [output.data[mime] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs
            if output.output_type in ("execute_result", "display_data") and mime in output.data]


def lines_starting(notebook: nbformat.NotebookNode, prefix: str) -> list[str]:
    return [line for line in printed(notebook) if line.startswith(prefix)]


@pytest.mark.parametrize("name", ["tabular_quickstart", "file_quickstart", "moving_from_azure"])
def test_notebook_runs_every_cell_and_shows_the_job_result_and_its_timeline(executed, name):
    notebook = executed(name)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert [o for cell in code for o in cell.outputs if o.output_type == "error"] == []
    tables = displayed(notebook, "text/html")
    assert any(table.startswith("<table><tr><th style='text-align:left'>status</th>"
                                "<td style='text-align:left'>Completed</td>")
               for table in tables)
    assert len(displayed(notebook, "image/png")) == 1  # the timeline, shown once


def test_tabular_quickstart_prints_exact_counts_of_its_20000_rows(executed):
    notebook = executed("tabular_quickstart")

    assert lines_starting(notebook, "items:") == [
        "items: {'total': 20000, 'succeeded': 20000, 'failed': 0}"]
    assert lines_starting(notebook, "mini-batches:") == [
        "mini-batches: {'total': 20, 'succeeded': 20, 'failed': 0, 'reused': 0}"]
    assert lines_starting(notebook, "rows:") == ["rows: 20000 label 1: 8000"]


def test_file_quickstart_prints_exact_counts_of_its_200_files_and_the_retry(executed):
    notebook = executed("file_quickstart")

    assert lines_starting(notebook, "items:") == [
        "items: {'total': 200, 'succeeded': 200, 'failed': 0}"]
    assert lines_starting(notebook, "mini-batches:") == [
        "mini-batches: {'total': 10, 'succeeded': 10, 'failed': 0, 'reused': 0}"]
    assert lines_starting(notebook, "attempts:") == [
        "attempts: {'total': 11, 'failed': 1, 'timed_out': 0, 'crashed': 0, 'worker_lost': 0,"
        " 'transient': 0}"]
    assert lines_starting(notebook, "words:") == ["words: 2382"]


def test_moving_from_azure_runs_the_azure_script_and_config_with_exact_counts(executed):
    notebook = executed("moving_from_azure")

    assert lines_starting(notebook, "items: {") == [
        "items: {'total': 20000, 'succeeded': 20000, 'failed': 0}"]
    assert lines_starting(notebook, "alarms:") == ["alarms: 3800"]
    assert "items: 20000 succeeded, 0 failed, of 20000" in printed(notebook)  # daskprs show
    assert any(line.startswith("timeline: ") and line.endswith("timeline.png")
               for line in printed(notebook))


def test_progress_bar_of_a_notebook_run_is_a_widget(executed):
    pytest.importorskip("ipywidgets", reason="tqdm draws a widget only with ipywidgets")
    notebook = executed("tabular_quickstart")

    run_cell = next(cell for cell in notebook.cells if "result = step.run()" in cell.source)
    kinds = [mime for output in run_cell.outputs for mime in output.get("data", {})]
    assert kinds == ["text/plain", "application/vnd.jupyter.widget-view+json"]
    for name in ("stdout", "stderr"):  # no text bar besides the widget
        assert "mini-batch/s" not in stream(run_cell, name)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebook_has_its_outputs_cleared(path):
    notebook = nbformat.read(path, as_version=4)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [(cell.outputs, cell.execution_count) for cell in code] == [([], None)] * len(code)
    assert notebook.metadata.kernelspec.name == "python3"


def test_printed_joins_a_line_the_kernel_flushed_in_two_stream_outputs():
    split = [nbformat.v4.new_output("stream", name="stdout", text="items: "),
             nbformat.v4.new_output("stream", name="stderr", text="a log line\n"),
             nbformat.v4.new_output("stream", name="stdout", text="{'total': 3}\nrows: 3\n")]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=split)])

    assert printed(notebook) == ["items: {'total': 3}", "rows: 3"]
    assert stream(notebook.cells[0], "stderr") == "a log line\n"


def test_pipeline_notebook_runs_three_steps_then_reuses_all_of_them(executed):
    notebook = executed("pipeline")

    assert [o for cell in notebook.cells if cell.cell_type == "code"
            for o in cell.outputs if o.output_type == "error"] == []
    assert lines_starting(notebook, "joined:") == ["joined: 80 rows, score sum 2800"]
    assert lines_starting(notebook, "reused:") == ["reused: [True, True, True]"]
    assert [line.split()[:4] for line in printed(notebook)
            if line.split()[1:3] in (["script", "Completed"], ["parallel", "Completed"])] == [
        ["prepare", "script", "Completed", "no"], ["score", "parallel", "Completed", "no"],
        ["join", "script", "Completed", "no"]]
    assert any(table.startswith("<table><tr><th style='text-align:left'>step</th>")
               for table in displayed(notebook, "text/html"))
