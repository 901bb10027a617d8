"""Pipelines (issue 12): prepare data -> ParallelRunStep scoring -> a script step that joins
the scores back to the input by key; reuse per step; a failed step stops what reads from it.

The Python pipeline runs on the session's LocalCluster; the YAML pipelines run inline (in
this process) through ``daskprs run``, so each test stays a few seconds long.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from daskprs import ParallelRunConfig, ParallelRunStep
from daskprs.cli import main
from daskprs.pipeline import Pipeline, PipelineData, PythonScriptStep
from tests.azure_sample_files import SAMPLES, STAND_INS, write_data_table

RAW = pd.DataFrame({"id": [7, 3, 9, 1, 4, 8, 2, 6], "x": [5, -1, 2, 0, 3, -2, 4, 1]})
PREPARE = """
    import argparse, os
    import pandas as pd
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw"); parser.add_argument("--out")
    args = parser.parse_args()
    frame = pd.read_csv(args.raw)
    frame = frame[frame["x"] >= 0].sort_values("id")
    frame.to_parquet(os.path.join(args.out, "part-0.parquet"), index=False)
"""
SCORE = """
    def init():
        pass

    def run(mini_batch):
        scores = mini_batch[["id"]].copy()
        scores["score"] = mini_batch["x"] * {factor}
        return scores
"""
JOIN = """
    import argparse, os
    import pandas as pd
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepared"); parser.add_argument("--scores"); parser.add_argument("--out")
    args = parser.parse_args()
    prepared = pd.read_parquet(args.prepared)
    scores = pd.read_csv(os.path.join(args.scores, "parallel_run_step.txt"), header=None,
                         names=["id", "score"])
    joined = prepared.merge(scores, on="id", how="left").sort_values("id")
    joined.to_csv(os.path.join(args.out, "joined.csv"), index=False)
"""


@pytest.fixture(autouse=True)
def restore_daskprs_logging() -> Iterator[None]:
    """Undo the stderr handler ``daskprs run`` adds to logger ``daskprs``."""
    logger = logging.getLogger("daskprs")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def project(tmp_path: Path, factor: int = 2) -> Path:
    """``raw.csv`` and the three scripts, each in a folder of its own."""
    RAW.to_csv(tmp_path / "raw.csv", index=False)
    write(tmp_path / "prepare", "prepare.py", PREPARE)
    write(tmp_path / "score", "score.py", SCORE.format(factor=factor))
    write(tmp_path / "join", "join.py", JOIN)
    return tmp_path


def three_steps(root: Path, compute_target: Any = None) -> Pipeline:
    prepared, scores, joined = (PipelineData("prepared"), PipelineData("scores"),
                                PipelineData("joined"))
    prepare = PythonScriptStep("prepare.py", source_directory=str(root / "prepare"),
                               arguments=["--raw", str(root / "raw.csv"), "--out", prepared],
                               outputs=[prepared])
    config = ParallelRunConfig(source_directory=str(root / "score"), entry_script="score.py",
                               mini_batch_size="2 rows", error_threshold=0,
                               append_row_separator=",", compute_target=compute_target)
    score = ParallelRunStep(name="score", parallel_run_config=config,
                            inputs=[prepared.parse_parquet_files()], output=scores)
    join = PythonScriptStep("join.py", source_directory=str(root / "join"),
                            arguments=["--prepared", prepared, "--scores", scores,
                                       "--out", joined],
                            inputs=[prepared, scores], outputs=[joined])
    # listed out of order: the pipeline orders them by what they read
    return Pipeline(steps=[join, score, prepare], output_root=str(root / "runs"))


def joined(root: Path) -> list[tuple[int, int, int]]:
    table = pd.read_csv(root / "runs" / "join" / "joined" / "joined.csv")
    assert list(table.columns) == ["id", "x", "score"]
    return list(table.itertuples(index=False, name=None))


def statuses(result: Any) -> list[tuple[str, str, bool]]:
    return [(s.name, s.status, s.reused) for s in result.steps]


def test_three_step_pipeline_joins_scores_by_key_then_reuses_and_reruns_what_changed(
        tmp_path: Path, client: Any) -> None:
    root = project(tmp_path)

    first = three_steps(root).run(client=client, progress=False)

    assert statuses(first) == [("prepare", "Completed", False), ("score", "Completed", False),
                               ("join", "Completed", False)]
    assert joined(root) == [(1, 0, 0), (2, 4, 8), (4, 3, 6), (6, 1, 2), (7, 5, 10), (9, 2, 4)]
    assert first["score"].result.items == {"total": 6, "succeeded": 6, "failed": 0}
    assert first["score"].result.mini_batches["total"] == 3

    again = three_steps(root).run(client=client, progress=False)

    assert statuses(again) == [("prepare", "Completed", True), ("score", "Completed", True),
                               ("join", "Completed", True)]
    assert again["score"].result.run_id == first["score"].result.run_id

    write(root / "score", "score.py", SCORE.format(factor=10))
    changed = three_steps(root).run(client=client, progress=False)

    assert statuses(changed) == [("prepare", "Completed", True), ("score", "Completed", False),
                                 ("join", "Completed", False)]
    assert joined(root) == [(1, 0, 0), (2, 4, 40), (4, 3, 30), (6, 1, 10), (7, 5, 50),
                            (9, 2, 20)]
    assert changed.status == "Completed"


PIPELINE_YAML = """
    output_root: runs
    steps:
      - name: prepare
        type: script
        script: prepare.py
        source_directory: prepare
        arguments: [--raw, ../raw.csv, --out, "${{{{outputs.prepared}}}}"]
        outputs: [prepared]
      - name: score
        inputs:
          - {{name: prepared, type: tabular, path: "${{{{steps.prepare.outputs.prepared}}}}"}}
        output: "${{{{outputs.scores}}}}"
        parallel_run_config:
          source_directory: score
          entry_script: score.py
          mini_batch_size: 2 rows
          error_threshold: 0
          append_row_separator: ","
          compute_target: inline
      - name: join
        type: script
        script: {join}
        source_directory: join
        arguments: [--prepared, "${{{{steps.prepare.outputs.prepared}}}}",
                    --scores, "${{{{steps.score.outputs.scores}}}}",
                    --out, "${{{{outputs.joined}}}}"]
        outputs: [joined]
"""


def test_daskprs_run_of_a_pipeline_file_prints_the_table_of_steps(tmp_path: Path) -> None:
    root = project(tmp_path)
    config = write(root, "pipeline.yaml", PIPELINE_YAML.format(join="join.py"))

    done = CliRunner().invoke(main, ["run", str(config), "--no-progress"])

    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0].startswith("pipeline Completed: 3 steps, ")
    assert lines[0].endswith(f" s, output root {root / 'runs'}")
    assert [line.split() for line in lines[1:]] == [
        ["step", "kind", "status", "reused", "seconds"],
        ["prepare", "script", "Completed", "no", lines[2].split()[-1]],
        ["score", "parallel", "Completed", "no", lines[3].split()[-1]],
        ["join", "script", "Completed", "no", lines[4].split()[-1]]]
    assert joined(root) == [(1, 0, 0), (2, 4, 8), (4, 3, 6), (6, 1, 2), (7, 5, 10), (9, 2, 4)]

    again = CliRunner().invoke(main, ["run", str(config), "--no-progress"])

    assert again.exit_code == 0
    assert [line.split()[3] for line in again.stdout.splitlines()[2:]] == ["yes"] * 3

    write(root / "prepare", "prepare.py", textwrap.dedent(PREPARE) + "print('prepared')\n")
    changed = CliRunner().invoke(main, ["run", str(config), "--no-progress"])

    assert changed.exit_code == 0
    assert [line.split()[3] for line in changed.stdout.splitlines()[2:]] == ["no"] * 3
    assert joined(root) == [(1, 0, 0), (2, 4, 8), (4, 3, 6), (6, 1, 2), (7, 5, 10), (9, 2, 4)]


def test_a_failed_step_stops_the_steps_that_read_from_it_and_exits_1(tmp_path: Path) -> None:
    root = project(tmp_path)
    write(root / "join", "broken.py", "raise SystemExit('no scores to join')\n")
    publish = """
      - name: publish
        type: script
        script: join.py
        source_directory: join
        arguments: [--prepared, "${{steps.join.outputs.joined}}"]
    """
    config = write(root, "pipeline.yaml", textwrap.dedent(PIPELINE_YAML.format(join="broken.py"))
                   + textwrap.indent(textwrap.dedent(publish), "  "))

    done = CliRunner().invoke(main, ["run", str(config), "--no-progress"])

    assert done.exit_code == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("pipeline Failed: 4 steps, ")
    assert [line.split()[:4] for line in lines[2:6]] == [
        ["prepare", "script", "Completed", "no"], ["score", "parallel", "Completed", "no"],
        ["join", "script", "Failed", "no"], ["publish", "script", "Skipped", "no"]]
    assert lines[6:] == [
        "join: the script exited with code 1: no scores to join; stopped the steps that "
        "read from it: 'publish'",
        "publish: not run: it reads from step 'join', which failed"]
    assert (root / "runs" / "join" / "logs" / "stderr.txt").read_text() == \
        "no scores to join\n"


RENDEZVOUS = """
    import pathlib, sys, time
    meeting, me, other, out = (pathlib.Path(p) for p in sys.argv[1:])
    (meeting / me.name).touch()
    deadline = time.monotonic() + 120  # only to end a run that would hang
    while not (meeting / other.name).exists():
        if time.monotonic() > deadline:
            sys.exit(f"{other.name} never started while {me.name} ran")
        time.sleep(0.05)
    (out / "done.txt").write_text(me.name)
"""


def test_steps_that_do_not_read_from_each_other_run_at_the_same_time(tmp_path: Path) -> None:
    source = write(tmp_path / "src", "meet.py", RENDEZVOUS).parent
    write(source, "both.py", """
        import pathlib, sys
        print(sorted(pathlib.Path(p, "done.txt").read_text() for p in sys.argv[1:]))
    """)
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    left, right = PipelineData("left"), PipelineData("right")
    steps = [PythonScriptStep("meet.py", name=name, source_directory=str(source),
                              arguments=[str(meeting), name, other, out], outputs=[out])
             for name, other, out in (("a", "b", left), ("b", "a", right))]
    both = PythonScriptStep("both.py", source_directory=str(source), arguments=[left, right])

    result = Pipeline(steps=[both, *steps], output_root=str(tmp_path / "runs")).run()

    assert statuses(result) == [("a", "Completed", False), ("b", "Completed", False),
                                ("both", "Completed", False)]
    assert (tmp_path / "runs" / "both" / "logs" / "stdout.txt").read_text() == \
        "['a', 'b']\n"




def azure_sample(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(SAMPLES / name, folder)
    return folder


def oj_sales(folder: Path, stores: tuple[int, ...], brands: tuple[str, ...], weeks: int
             ) -> pd.DataFrame:
    """Data of the shape of the sample's oj_sales_data.csv (left out of the vendored copy)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame([
        (day.strftime("%Y-%m-%d"), store, brand, int(rng.integers(5000, 20000)),
         int(rng.integers(0, 2)), round(float(rng.uniform(1.5, 3.5)), 2), 0.0)
        for store in stores for brand in brands
        for day in pd.date_range("1990-06-14", periods=weeks, freq="7D")],
        columns=["WeekStarting", "Store", "Brand", "Quantity", "Advert", "Price",
                 "Revenue"])
    frame["Revenue"] = frame["Quantity"] * frame["Price"]
    (folder / "oj_sales_data").mkdir()
    frame.to_csv(folder / "oj_sales_data" / "oj_sales_data.csv", index=False)
    return frame


def test_azure_1a_pipeline_partitions_then_trains_one_model_per_store_and_brand(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vendored pipeline.yml runs as it is: its command job (partition_data.py, through
    its component file) writes an MLTable folder that its parallel job reads by partition
    keys. ``mltable`` is the empty stand-in (the scripts import it and use nothing)."""
    pytest.importorskip("mlflow", reason="pip install daskprs[azure-samples]")
    folder = azure_sample("1a_oj_sales_prediction", tmp_path)
    stores, brands = (1000, 1001), ("dominicks", "minute.maid", "tropicana")
    frame = oj_sales(folder, stores, brands, weeks=12)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(STAND_INS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")
    config = str(folder / "pipeline.yml")

    done = CliRunner().invoke(main, ["run", config, "--scheduler", "local", "--no-progress"])

    assert done.exit_code == 0, done.output
    assert [line.split()[:4] for line in done.stdout.splitlines()[2:]] == [
        ["partition_job", "script", "Completed", "no"],
        ["parallel-train", "parallel", "Completed", "no"]]
    root = folder / "daskprs-runs" / "pipeline"
    mltable = (root / "partition_job" / "tabular_output_data" / "MLTable").read_text()
    assert "{Store}/{Brand}/{file_name}.{extension}" in mltable
    job = json.loads((root / "parallel-train" / "job" / "logs" / "job_result.json").read_text())
    assert (job["status"], job["items"]["total"]) == ("Completed", len(frame))
    assert job["mini_batches"]["succeeded"] == len(stores) * len(brands)
    models = root / "parallel-train" / "model_folder"
    saved = sorted(str(p.parent.relative_to(models)) for p in models.rglob("MLmodel"))
    assert saved == sorted(f"{s}/{b.replace('.', '_')}" for s in stores for b in brands)

    again = CliRunner().invoke(main, ["run", config, "--scheduler", "local", "--no-progress"])

    assert again.exit_code == 0, again.output   # MLflow's mlruns/ in the code folder aside
    assert [line.split()[:4] for line in again.stdout.splitlines()[2:]] == [
        ["partition_job", "script", "Completed", "yes"],
        ["parallel-train", "parallel", "Completed", "yes"]]


def test_azure_3a_pipeline_validates_its_command_and_parallel_jobs_and_their_link(
        tmp_path: Path) -> None:
    """Validated, not run: prepare_data.py downloads MNIST, and digit_identification.py
    needs TensorFlow 1 (``tf.Session``), which has no wheel for this Python."""
    folder = azure_sample("3a_mnist_batch_identification", tmp_path)
    (folder / "mnist_models").mkdir()
    write_data_table(folder, tmp_path / "blobs")

    done = CliRunner().invoke(main, ["validate", str(folder / "pipeline.yml")])

    assert done.exit_code == 0, done.output
    root = folder / "daskprs-runs" / "pipeline"
    assert done.stdout.splitlines() == [
        f"valid: pipeline of 2 steps, output root {root}",
        "  prepare_data: script prepare_data.py",
        f"  predict-digits-mnist (after prepare_data): ParallelRunStep reading "
        f"{root}/prepare_data/mnist_png; output {tmp_path / 'blobs'}/predict-digits-mnist"]
    assert not root.exists()


def test_a_step_whose_input_matches_nothing_fails_before_its_work_and_exits_2(
        tmp_path: Path) -> None:
    root = project(tmp_path)
    config = write(root, "pipeline.yaml", """
        steps:
          - name: score
            inputs: [{name: table, type: tabular, format: delimited, path: missing/*.csv}]
            output: "${{outputs.scores}}"
            parallel_run_config: {source_directory: score, entry_script: score.py,
                                  compute_target: inline}
          - name: join
            type: script
            script: join.py
            source_directory: join
            arguments: [--scores, "${{steps.score.outputs.scores}}"]
    """)

    done = CliRunner().invoke(main, ["run", str(config), "--no-progress"])

    assert done.exit_code == 2
    lines = done.stdout.splitlines()
    assert [line.split()[:4] for line in lines[2:4]] == [
        ["score", "parallel", "Failed", "no"], ["join", "script", "Skipped", "no"]]
    assert lines[4].startswith("score: InputError: ")
    assert lines[4].endswith("; stopped the steps that read from it: 'join'")
    assert lines[5] == "join: not run: it reads from step 'score', which failed"
