"""The files a job writes under ``logs/`` point only to files that describe this job.

The jobs here run with ``compute_target: inline`` (serially in this process, no cluster).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from click.testing import CliRunner, Result

from daskprs.cli import main

GOOD = "def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n"
FAILING = ("def init():\n    pass\n\n\ndef run(mini_batch):\n"
           "    raise ValueError('bad model')\n")


def project(root: Path, script: str) -> Path:
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "score.py").write_text(script, encoding="utf-8")
    (root / "data").mkdir(exist_ok=True)
    pd.DataFrame({"x": range(20)}).to_parquet(root / "data" / "part.parquet")
    config = {"name": "score-logs", "output": "out",
              "inputs": [{"type": "tabular", "format": "parquet", "path": "data"}],
              "parallel_run_config": {"source_directory": "src", "entry_script": "score.py",
                                      "mini_batch_size": "10 rows", "run_max_try": 1,
                                      "compute_target": "inline"}}
    path = root / "conf.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run(config: Path) -> Result:
    return CliRunner().invoke(main, ["run", str(config), "--no-progress"])


def test_a_completed_job_points_to_no_job_error_file(tmp_path: Path) -> None:
    result = run(project(tmp_path, GOOD))

    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "logs" / "job_result.txt").read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("Completed")
    assert "job_error.txt" not in text
    assert not (tmp_path / "out" / "logs" / "job_error.txt").exists()
    assert ("where to look: logs/sys/mini_batches.csv (every attempt), logs/sys/client.txt "
            "(the driver's log)") in text


def test_a_failed_job_points_to_its_job_error_file(tmp_path: Path) -> None:
    result = run(project(tmp_path, FAILING))

    assert result.exit_code == 1, result.output
    text = (tmp_path / "out" / "logs" / "job_result.txt").read_text(encoding="utf-8")
    assert "where to look: logs/job_error.txt (first errors)" in text
    assert "ValueError: bad model" in (tmp_path / "out" / "logs" / "job_error.txt").read_text(
        encoding="utf-8")
    assert result.stderr.splitlines()[-1].endswith(f"See {tmp_path / 'out'}/logs/job_error.txt")


def test_a_fixed_rerun_removes_the_job_error_file_of_the_failed_run(tmp_path: Path) -> None:
    config = project(tmp_path, FAILING)
    assert run(config).exit_code == 1
    (tmp_path / "src" / "score.py").write_text(GOOD, encoding="utf-8")

    result = run(config)

    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out" / "logs" / "job_error.txt").exists()
    text = (tmp_path / "out" / "logs" / "job_result.txt").read_text(encoding="utf-8")
    assert "job_error.txt" not in text
