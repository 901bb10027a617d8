"""A script that runs a step at module level without ``if __name__ == "__main__":``.

LocalCluster's worker processes import the script again; without the guard each would
run the step again. The script gets one clear error before any cluster starts. Each case
runs a real script in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import daskprs

STEP = """\
from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

table = Dataset.Tabular.from_parquet_files("data/part.parquet")
config = ParallelRunConfig(source_directory="src", entry_script="score.py",
                           mini_batch_size="10 rows", process_count_per_node=1{target})
step = ParallelRunStep(name="guarded", parallel_run_config=config, inputs=[table],
                       output="out")
"""
# stands in for the job, so that accepted scripts start no cluster
STUB = """\
import daskprs.job
daskprs.job.run_step = lambda step, **options: print("run_step reached")
"""


def project(root: Path, body: str, target: str = "") -> Path:
    (root / "src").mkdir()
    (root / "src" / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n",
                                           encoding="utf-8")
    (root / "data").mkdir()
    pd.DataFrame({"x": range(20)}).to_parquet(root / "data" / "part.parquet")
    script = root / "job.py"
    script.write_text(STEP.format(target=target) + textwrap.dedent(body), encoding="utf-8")
    return script


def python(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    source_root = str(Path(daskprs.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [source_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_script_without_the_main_guard_gets_one_clear_error_before_any_cluster(
        tmp_path: Path) -> None:
    script = project(tmp_path, "result = step.run(progress=False)\nprint(result.status)\n")

    done = python(tmp_path, str(script))

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert "Nanny" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"  - step.run() ({script}, line 8): is called at module level without the main "
        f"guard, and the worker processes LocalCluster starts import this script again (each "
        f"would run the step again), got 'result = step.run(progress=False)'. Put the lines "
        f"that run the step under the main guard 'if __name__ == \"__main__\":', as in the "
        f"README's Python quickstart.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("body", "target"), [
    pytest.param('if __name__ == "__main__":\n    step.run()\n', "", id="guarded call"),
    pytest.param('def main():\n    step.run()\n\n\nif "__main__" == __name__:\n    main()\n', "",
                 id="guarded main()"),
    pytest.param("step.run()\n", ', compute_target="inline"', id="unguarded, inline"),
    pytest.param("step.run(client='tcp://127.0.0.1:8786')\n", "",
                 id="unguarded, existing cluster"),
])
def test_scripts_whose_workers_do_not_rerun_the_step_are_accepted(
        tmp_path: Path, body: str, target: str) -> None:
    script = project(tmp_path, STUB + body, target)

    done = python(tmp_path, str(script))

    assert done.returncode == 0, done.stderr
    assert done.stdout == "run_step reached\n"


def test_the_import_of_the_script_by_a_worker_process_is_refused(tmp_path: Path) -> None:
    """What a spawned worker does: run the script as ``__mp_main__``."""
    script = project(tmp_path, STUB + "step.run()\n")

    done = python(tmp_path, "-c", f"import runpy; runpy.run_path({str(script)!r}, "
                                  f"run_name='__mp_main__')")

    assert done.returncode == 1
    assert "run_step reached" not in done.stdout
    assert (f"step.run() ({script}, line 10): was called while a worker process imported "
            f"your script again: the call is at module level without the main guard, got "
            f"'step.run()'.") in done.stderr
