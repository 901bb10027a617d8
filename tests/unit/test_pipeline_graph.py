"""Pipelines before they run (issue 12): step order, references, cycles, the folders
placeholders resolve to, and the messages of ``daskprs validate`` for a wrong pipeline."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from daskprs import ConfigError, Dataset, ParallelRunConfig, ParallelRunStep
from daskprs.cli import main
from daskprs.pipeline import OutputFileDatasetConfig, Pipeline, PipelineData, PythonScriptStep


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for name in ("prepare.py", "join.py"):
        (folder / name).write_text("print('hello')\n", encoding="utf-8")
    (folder / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n",
                                     encoding="utf-8")
    return folder


def script(src: Path, stem: str, **kwargs: object) -> PythonScriptStep:
    return PythonScriptStep(f"{stem}.py", source_directory=str(src), **kwargs)  # type: ignore


def scoring(src: Path, inputs: list[object], output: object,
            arguments: list[object] | None = None, **config: object) -> ParallelRunStep:
    settings = {"append_row_separator": ",", **config}
    return ParallelRunStep(name="score", parallel_run_config=ParallelRunConfig(
        source_directory=str(src), entry_script="score.py", **settings),  # type: ignore
        inputs=inputs, output=output, arguments=arguments)  # type: ignore[arg-type]


def test_steps_run_after_the_steps_they_read_from_whatever_the_listed_order(src: Path) -> None:
    prepared, scores, joined = PipelineData("prepared"), PipelineData("scores"), \
        PipelineData("joined")
    prepare = script(src, "prepare", arguments=["--out", prepared], outputs=[prepared])
    score = scoring(src, [prepared.parse_parquet_files()], scores)
    join = script(src, "join", arguments=["--scores", scores, "--out", joined],
                  outputs=[joined])

    pipeline = Pipeline(steps=[join, score, prepare], output_root="runs")

    assert pipeline.graph.order == ["prepare", "score", "join"]
    assert pipeline.graph.upstream == {"join": ["score"], "score": ["prepare"], "prepare": []}
    assert pipeline.graph.downstream("prepare") == ["score", "join"]


def test_placeholders_resolve_to_folders_and_a_parallel_output_to_its_table(
        src: Path, tmp_path: Path) -> None:
    prepared, scores = PipelineData("prepared"), OutputFileDatasetConfig("scores")
    prepare = script(src, "prepare", arguments=["--out", prepared], outputs=[prepared])
    score = scoring(src, [prepared.parse_parquet_files()], scores,
                    arguments=["--prepared", prepared])  # a placeholder as an argument
    join = script(src, "join", arguments=[f"--scores={scores}"],
                  inputs=[scores.read_delimited_files()])
    root = tmp_path / "runs"

    folders = Pipeline(steps=[prepare, score, join], output_root=str(root)).folders

    assert folders.script_arguments(prepare) == ["--out", f"{root}/prepare/prepared"]
    assert folders.script_arguments(join) == [f"--scores={root}/score/scores"]
    resolved = folders.parallel_step(score)
    assert resolved.output == f"{root}/score/scores"
    assert resolved.inputs[0].paths == (f"{root}/prepare/prepared",)
    assert resolved.arguments == ["--prepared", f"{root}/prepare/prepared"]
    table = folders.dataset(join.inputs[0])
    assert (table.format, table.paths, table.separator, table.header) == (
        "delimited", (f"{root}/score/scores/parallel_run_step.txt",), ",", False)


def test_a_parquet_output_is_read_as_its_data_folder(src: Path, tmp_path: Path) -> None:
    prepared, scores = PipelineData("prepared"), PipelineData("scores")
    prepare = script(src, "prepare", outputs=[prepared])
    score = scoring(src, [prepared.as_dataset()], scores, output_action="parquet")
    join = script(src, "join", inputs=[scores.parse_parquet_files()])

    folders = Pipeline(steps=[prepare, score, join], output_root=str(tmp_path)).folders

    assert folders.dataset(join.inputs[0]).paths == (f"{tmp_path}/score/scores/data",)
    assert folders.dataset(score.inputs[0]).paths == (f"{tmp_path}/prepare/prepared",)


def test_a_destination_replaces_the_folder_under_the_output_root(src: Path,
                                                                   tmp_path: Path) -> None:
    kept = OutputFileDatasetConfig("kept", destination=str(tmp_path / "kept-here"))
    prepare = script(src, "prepare", arguments=["--out", kept], outputs=[kept])

    folders = Pipeline(steps=[prepare], output_root=str(tmp_path / "runs")).folders

    assert folders.script_arguments(prepare) == ["--out", str(tmp_path / "kept-here")]


def test_reading_data_no_step_writes_names_the_step_and_the_reference(src: Path) -> None:
    prepared, stray = PipelineData("prepared"), PipelineData("prepared")
    prepare = script(src, "prepare", outputs=[prepared])
    score = scoring(src, [stray.parse_parquet_files()], PipelineData("scores"))

    with pytest.raises(ConfigError) as caught:
        Pipeline(steps=[prepare, score])

    assert str(caught.value) == (
        "invalid configuration, 1 problem:\n"
        "  - score.inputs[0] (keyword argument): reads a PipelineData that no step of the "
        "pipeline writes, got 'prepared'. Add the step that writes it (output= or "
        "outputs=[...]) to the pipeline's steps. A step writes another PipelineData named "
        "'prepared': pass that object.")


def test_steps_that_read_each_others_output_are_a_cycle(src: Path) -> None:
    first, second = PipelineData("first"), PipelineData("second")
    prepare = script(src, "prepare", arguments=["--in", second], outputs=[first])
    join = script(src, "join", arguments=["--in", first], outputs=[second])

    with pytest.raises(ConfigError) as caught:
        Pipeline(steps=[prepare, join])

    assert str(caught.value) == (
        "invalid configuration, 1 problem:\n"
        "  - steps (keyword argument): form a cycle: 'prepare' -> 'join' -> 'prepare', got "
        "['prepare', 'join']. Make one of these steps read data the others do not write.")


def test_two_steps_with_one_name_and_a_placeholder_written_twice_are_refused(src: Path
                                                                             ) -> None:
    shared = PipelineData("shared")
    one = script(src, "prepare", outputs=[shared])
    two = script(src, "join", name="prepare")
    three = script(src, "join", outputs=[shared])

    with pytest.raises(ConfigError) as caught:
        Pipeline(steps=[one, two, three, "score"])

    assert [str(p) for p in caught.value.problems] == [
        "steps[1].name (keyword argument): is the name of steps[0] too, got 'prepare'. Give "
        "every step its own name.",
        "steps[3] (keyword argument): must be a ParallelRunStep or a PythonScriptStep, got "
        "'str'. Build the step with ParallelRunStep(...) or PythonScriptStep(...).",
        "join: output 'shared' (keyword argument): is written by step 'prepare' too, got "
        "'shared'. Give each step its own PipelineData to write."]


def test_a_table_read_from_a_summary_only_step_is_refused(src: Path) -> None:
    scores = PipelineData("scores")
    score = scoring(src, [Dataset.Tabular.from_parquet_files("x.parquet")], scores,
                    output_action="summary_only")
    join = script(src, "join", inputs=[scores.parse_parquet_files()])

    with pytest.raises(ConfigError) as caught:
        Pipeline(steps=[score, join])

    assert [str(p) for p in caught.value.problems] == [
        "join.inputs[0] (keyword argument): reads the table of step 'score', which writes no "
        "table (output_action 'summary_only'), got 'scores'. Set output_action 'append_row' "
        "or 'parquet' in step 'score', or read its folder as a file input."]


def test_a_script_step_names_a_missing_script_and_a_bad_output(src: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        PythonScriptStep("missing.py", source_directory=str(src), outputs=["out"])  # type: ignore

    assert [str(p) for p in caught.value.problems] == [
        f"script_name (keyword argument): is not a file in source_directory {str(src)!r}, got "
        f"'missing.py'. Give the script's path relative to source_directory.",
        "outputs[0] (keyword argument): must be a PipelineData or OutputFileDatasetConfig, got "
        "'str'. Use outputs=[PipelineData('prepared')]."]


def test_validate_plans_the_steps_that_read_no_placeholder_and_starts_nothing(
        src: Path, tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    table.write_text("id,x\n1,2\n3,4\n", encoding="utf-8")
    scores = PipelineData("scores")
    score = scoring(src, [Dataset.Tabular.from_delimited_files(str(table))], scores,
                    mini_batch_size="1 rows")
    join = script(src, "join", arguments=["--scores", scores])

    plan = Pipeline(steps=[score, join], output_root=str(tmp_path / "runs")).validate()

    assert str(plan).splitlines() == [
        f"valid: pipeline of 2 steps, output root {tmp_path / 'runs'}",
        f"  score: valid: score: 1 input files, 2 mini-batches of 1 rows, 2 items; output "
        f"{tmp_path / 'runs'}/score/scores",
        "  join (after score): script join.py"]
    assert not (tmp_path / "runs").exists()


PIPELINE = """
    steps:
      - name: prepare
        type: script
        script: prepare.py
        source_directory: src
        arguments: [--out, "${{outputs.prepared}}", --in, "${{steps.join.outputs.joined}}"]
        outputs: [prepared]
      - name: score
        inputs:
          - {name: prepared, type: tabular, path: "${{steps.prepare.outputs.prepared}}"}
        parallel_run_config: {source_directory: src, entry_script: score.py}
      - name: join
        type: script
        script: join.py
        source_directory: src
        arguments: [--scores, "${{steps.scoer.outputs.output}}", --out, "${{outputs.joined}}"]
        outputs: [joined]
"""


def validate(tmp_path: Path, text: str) -> tuple[int, str]:
    config = tmp_path / "pipeline.yaml"
    config.write_text(textwrap.dedent(text), encoding="utf-8")
    done = CliRunner().invoke(main, ["validate", str(config)])
    return done.exit_code, done.stderr.replace(str(config), "pipeline.yaml")


def test_validate_names_the_step_and_the_reference_to_a_step_the_file_lacks(
        src: Path, tmp_path: Path) -> None:
    code, stderr = validate(tmp_path, PIPELINE.replace(', --in, "${{steps.join.outputs.joined}}"',
                                                       ""))

    assert code == 2
    assert stderr == (
        "error: invalid configuration, 1 problem:\n"
        "  - join.arguments[1] (pipeline.yaml): refers to a step the pipeline does not have, "
        "got '${{steps.scoer.outputs.output}}'. Use one of 'prepare', 'score', 'join'. Did "
        "you mean 'score'?\n")


def test_validate_names_an_output_a_step_does_not_declare(src: Path, tmp_path: Path) -> None:
    text = PIPELINE.replace("scoer.outputs.output", "score.outputs.scores").replace(
        "${{outputs.prepared}}", "${{outputs.prepped}}")

    code, stderr = validate(tmp_path, text)

    assert code == 2
    assert stderr.splitlines()[1:] == [
        "  - prepare.arguments[1] (pipeline.yaml): refers to an output the step 'prepare' "
        "does not declare, got '${{outputs.prepped}}'. Use 'prepared'.",
        "  - join.arguments[1] (pipeline.yaml): refers to an output step 'score' does not "
        "declare, got '${{steps.score.outputs.scores}}'. Use 'output'."]


def test_validate_of_a_file_whose_steps_read_in_a_circle_names_the_cycle(
        src: Path, tmp_path: Path) -> None:
    code, stderr = validate(tmp_path, PIPELINE.replace("scoer", "score"))

    assert code == 2
    assert stderr == (
        "error: invalid configuration, 1 problem:\n"
        "  - steps (pipeline.yaml): form a cycle: 'prepare' -> 'score' -> 'join' -> 'prepare', "
        "got ['prepare', 'score', 'join']. Make one of these steps read data the others do "
        "not write.\n")


def test_validate_reports_a_bad_key_of_a_pipeline_step_with_its_step(src: Path,
                                                                     tmp_path: Path) -> None:
    text = PIPELINE.replace(', --in, "${{steps.join.outputs.joined}}"', "").replace(
        "scoer", "score").replace("entry_script: score.py}", "entry_script: score.py, "
                                  "mini_batch_size: lots}")

    code, stderr = validate(tmp_path, text)

    assert code == 2
    assert stderr.splitlines()[1].startswith(
        "  - score.parallel_run_config.mini_batch_size (pipeline.yaml: steps[1]."
        "parallel_run_config.mini_batch_size): ")


AZURE = """
    type: pipeline
    jobs:
      prep:
        type: command
        code: src
        command: python prepare.py --out ${{outputs.images}}
        outputs:
          images: {type: uri_folder}
      score:
        type: parallel
        inputs:
          images: {type: uri_folder, path: "${{parent.jobs.prep.outputs.imagez}}"}
        input_data: ${{inputs.images}}
        task: {type: run_function, code: src, entry_script: score.py}
"""


def test_an_azure_pipeline_names_the_job_and_the_output_it_refers_to_wrongly(
        src: Path, tmp_path: Path) -> None:
    code, stderr = validate(tmp_path, AZURE)

    assert code == 2
    assert stderr == (
        "error: invalid configuration, 1 problem:\n"
        "  - jobs.score.inputs.images.path (pipeline.yaml): refers to an output job 'prep' "
        "does not declare, got '${{parent.jobs.prep.outputs.imagez}}'. Use 'images'.\n")


def test_an_azure_pipeline_orders_its_command_job_before_the_parallel_job_reading_it(
        src: Path, tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(textwrap.dedent(AZURE.replace("imagez", "images")), encoding="utf-8")

    done = CliRunner().invoke(main, ["validate", str(config)])

    assert done.exit_code == 0
    root = tmp_path / "daskprs-runs" / "pipeline"
    assert done.stdout.splitlines() == [
        f"valid: pipeline of 2 steps, output root {root}",
        "  prep: script prepare.py",
        f"  score (after prep): ParallelRunStep reading {root}/prep/images; output "
        f"{root}/score/job"]


def test_an_azure_command_job_must_run_a_python_script(src: Path, tmp_path: Path) -> None:
    code, stderr = validate(tmp_path, AZURE.replace("python prepare.py", "bash prepare.sh"))

    assert code == 2
    assert stderr.splitlines()[1] == (
        "  - jobs.prep.command (pipeline.yaml): must run a Python script (python <script> ...), "
        "got 'bash prepare.sh --out ${{outputs.images}}'. Run other programs from a Python "
        "script.")


def test_set_names_a_step_of_the_pipeline_file_and_its_key(src: Path, tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    text = PIPELINE.replace(', --in, "${{steps.join.outputs.joined}}"', "").replace(
        "scoer", "score")
    config.write_text(textwrap.dedent(text), encoding="utf-8")

    done = CliRunner().invoke(main, [
        "validate", str(config), "--set", "score.parallel_run_config.mini_batch_size=lots",
        "--set", "scor.output=x"])

    assert done.exit_code == 2
    lines = done.stderr.splitlines()
    assert lines[1] == (
        "  - --set scor.output (command line): must start with a step name, got 'scor'. Use "
        "--set <step>.<key>=<value>. Use one of 'prepare', 'score', 'join'. Did you mean "
        "'score'?")
    assert lines[2].startswith(
        "  - score.parallel_run_config.mini_batch_size (--set score.parallel_run_config."
        "mini_batch_size): must be bytes such as '1MB'")


def test_a_placeholder_name_must_be_an_identifier() -> None:
    with pytest.raises(ConfigError) as caught:
        PipelineData("my scores")

    assert [str(p) for p in caught.value.problems] == [
        "PipelineData(name) (keyword argument): must be letters, digits and _, not starting "
        "with a digit, got 'my scores'. Use PipelineData('scores')."]


def test_azure_style_arguments_are_accepted_steps_given_as_the_first_argument(src: Path
                                                                             ) -> None:
    prepared = PipelineData("prepared", datastore=object(), output_mode="upload")
    prepare = PythonScriptStep("prepare.py", name="prepare_data", source_directory=str(src),
                               compute_target="cpu-cluster", outputs=[prepared],
                               arguments=["--out", prepared], allow_reuse=False)

    pipeline = Pipeline([prepare], description="from Azure")

    assert pipeline.graph.order == ["prepare_data"]
    assert prepare.allow_reuse is False
