"""The README's Python quickstart runs as written after ``bash scripts/demo.sh`` (issue 16).

The test builds a folder laid out like a clone after the demo: ``demo-data/`` made by the
demo's own data maker (``examples/demo/make_data.py``, with fewer rows) and a copy of
``examples/demo/``. It saves the first ``python`` block under "Quickstart: Python" to a file,
runs it there with this interpreter in a process group of its own (its LocalCluster's workers
and runners included), and reads what the job wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = 20_000
HANG_SECONDS = 900  # only to stop a run that hangs; the job takes seconds


def readme_block(heading: str, language: str) -> str:
    """The first ```language block after the ``## heading`` line of README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1]
    match = re.search(rf"^```{language}\n(.*?)^```", section, flags=re.S | re.M)
    assert match, f"no ```{language} block under '## {heading}' in README.md"
    return match.group(1)


def run_script(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python script`` in ``cwd``, importing this checkout's daskprs; killed if it hangs."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=HANG_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script.name} did not end within {HANG_SECONDS} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture
def after_demo(tmp_path: Path) -> Path:
    """A folder with what a clone holds after ``scripts/demo.sh``, with ``ROWS`` rows."""
    shutil.copytree(REPO / "examples" / "demo", tmp_path / "examples" / "demo")
    subprocess.run([sys.executable, str(REPO / "examples" / "demo" / "make_data.py"),
                    "--rows", str(ROWS), "--files", "2", "--out", "demo-data"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=HANG_SECONDS)
    return tmp_path


@pytest.mark.timeout(HANG_SECONDS + 300)
def test_readme_python_quickstart_scores_every_demo_row_once_in_order(after_demo):
    script = after_demo / "quickstart.py"
    script.write_text(readme_block("Quickstart: Python", "python"), encoding="utf-8")

    done = run_script(script, after_demo)

    assert done.returncode == 0, done.stderr[-4000:]
    results = [path for path in after_demo.rglob("job_result.json")
               if "demo-data" not in path.parts]
    assert len(results) == 1, results
    summary = json.loads(results[0].read_text(encoding="utf-8"))
    assert summary["status"] == "Completed"
    assert summary["items"] == {"total": ROWS, "succeeded": ROWS, "failed": 0}
    output = results[0].parent.parent
    scores = pd.read_csv(output / summary["output"]["file"], header=None,
                         sep=summary["output"]["separator"])
    assert scores[0].tolist() == list(range(ROWS))  # every id once, in order
    assert set(scores[1]) == {0, 1}
