"""Azure v2 YAML (``type: parallel`` jobs, parallel components, one node of a pipeline)
mapped onto a ParallelRunStep; ``azureml:`` names through the data table."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from daskprs.cli import main
from daskprs.errors import ConfigError
from daskprs.yaml_config import load_step

SCRIPT = "def init():\n    pass\n\ndef run(mini_batch):\n    return mini_batch\n"

JOB = """\
$schema: https://azuremlschemas.azureedge.net/latest/parallelJob.schema.json
type: parallel
name: score_images
compute: azureml:cpu-cluster
inputs:
  images: {type: uri_folder, path: ./images, mode: ro_mount}
  score_model: {type: uri_folder, path: ./model, mode: download}
  threshold: 0.5
outputs:
  scores: {type: uri_file, path: ./out/scores.csv, mode: rw_mount}
  extra: {type: uri_folder, path: ./extra}
input_data: ${{inputs.images}}
mini_batch_size: "3"
resources: {instance_count: 2}
max_concurrency_per_instance: 3
mini_batch_error_threshold: 5
error_threshold: -1
logging_level: DEBUG
retry_settings: {max_retries: 4, timeout: 90}
environment_variables: {MY_FLAG: "1"}
task:
  type: run_function
  code: ./src
  entry_script: score.py
  environment:
    image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04
    conda_file: ./conda.yml
  program_arguments: >-
    --model ${{inputs.score_model}}
    --threshold ${{inputs.threshold}}
    --extra ${{outputs.extra}}
  append_row_to: ${{outputs.scores}}
"""


def sample(tmp_path: Path, text: str = JOB, name: str = "job.yml", files: int = 7) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "score.py").write_text(SCRIPT, encoding="utf-8")
    (tmp_path / "images").mkdir(exist_ok=True)
    for number in range(files):
        (tmp_path / "images" / f"{number}.png").write_bytes(b"png")
    (tmp_path / "model").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_every_field_of_a_parallel_job_maps_onto_the_step(tmp_path: Path) -> None:
    step = load_step(str(sample(tmp_path)))

    config = step.parallel_run_config
    assert step.name == "score-images"
    assert (config.node_count, config.process_count_per_node) == (2, 3)
    assert (config.run_max_try, config.run_invocation_timeout) == (5, 90)
    assert (config.allowed_failed_count, config.error_threshold) == (5, -1)
    assert config.logging_level == "DEBUG"
    assert dict(config.environment_variables or {}) == {"MY_FLAG": "1"}
    assert config.source_directory == str(tmp_path / "src")
    assert config.entry_script == "score.py"
    assert str(step.mini_batch_size) == "3 files"
    assert config.output_action == "append_row"
    assert config.append_row_file_name == "scores.csv"
    assert step.output == str(tmp_path / "out")
    assert step.kind == "file"
    assert step.inputs[0].name == "images"
    assert step.arguments == ["--model", str(tmp_path / "model"), "--threshold", "0.5",
                              "--extra", str(tmp_path / "extra")]
    assert (tmp_path / "extra").is_dir()  # the script writes into it


def test_validate_plans_the_files_in_mini_batches_of_the_azure_file_count(
        tmp_path: Path) -> None:
    summary = load_step(str(sample(tmp_path))).validate()

    assert (summary.input_files, summary.mini_batches, summary.items) == (7, 3, 7)


@pytest.mark.parametrize(("given", "meant"), [
    ("10kb", "10240 bytes"), ("100 mb", "104857600 bytes"), ("1GB", "1073741824 bytes"),
    ("100", "100 bytes")])
def test_mini_batch_size_as_azure_spells_it_for_a_table(tmp_path: Path, given: str,
                                                        meant: str) -> None:
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "MLTable").write_text(
        "paths:\n  - file: ./rows.csv\ntransformations:\n  - read_delimited: {header: "
        "all_files_same_headers}\n", encoding="utf-8")
    (tmp_path / "table" / "rows.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    text = JOB.replace("images: {type: uri_folder, path: ./images, mode: ro_mount}",
                       "images: {type: mltable, path: ./table, mode: direct}")
    text = text.replace('mini_batch_size: "3"', f'mini_batch_size: "{given}"')

    step = load_step(str(sample(tmp_path, text)))

    assert step.kind == "tabular"
    assert str(step.mini_batch_size) == meant


def test_compute_and_environment_are_ignored_with_one_warning_each(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="daskprs"):
        load_step(str(sample(tmp_path)))

    messages = [r.getMessage() for r in caplog.records]
    assert sum("compute 'azureml:cpu-cluster' is ignored" in m for m in messages) == 1
    assert sum("task.environment.image" in m for m in messages) == 1
    assert sum("task.environment.conda_file './conda.yml' is ignored" in m
               for m in messages) == 1


def test_a_pipeline_file_is_refused_with_its_parallel_nodes_named(tmp_path: Path) -> None:
    node = textwrap.indent(JOB.split("type: parallel\n", 1)[1], "    ")
    text = ("type: pipeline\njobs:\n  prep:\n    type: command\n  score:\n"
            f"    type: parallel\n{node}")
    path = sample(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_step(str(path))

    problem = caught.value.problems[0]
    assert problem.source == f"{path}: type"
    assert problem.message == ("is a pipeline; daskprs runs one parallel job of it at a time "
                               "(pipelines are a separate feature)")
    assert problem.fix == "Pick a parallel node with --job score (parallel nodes: score)"
    assert load_step(str(path), job="score").name == "score"
    with pytest.raises(ConfigError, match="is not a parallel node of the pipeline"):
        load_step(str(path), job="prep")


def test_azureml_datastore_paths_resolve_through_the_data_table(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "images").mkdir(parents=True)
    (store / "images" / "a.png").write_bytes(b"png")
    (tmp_path / "azureml_data.yaml").write_text(
        "default_datastore: blobs\ndatastores:\n  blobs: store\n", encoding="utf-8")
    text = JOB.replace("path: ./images,", "path: azureml://datastores/blobs/paths/images,")
    text = text.replace(
        "path: ./out/scores.csv",
        "path: 'azureml://datastores/${{default_datastore}}/paths/${{name}}/r.csv'")

    step = load_step(str(sample(tmp_path, text)))

    assert step.inputs[0].paths == (str(store / "images"),)
    assert step.output == str(store / "score-images")
    assert step.parallel_run_config.append_row_file_name == "r.csv"


def test_a_missing_datastore_is_an_error_naming_it_and_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "azureml_data.yaml").write_text("datastores:\n  blobs: store\n  lake: lake\n",
                                                encoding="utf-8")
    text = JOB.replace("path: ./images,", "path: azureml://datastores/other/paths/images,")
    path = sample(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_step(str(path))

    problem = caught.value.problems[0]
    assert problem.source == f"{path}: inputs.images.path"
    assert problem.value == "azureml://datastores/other/paths/images"
    assert problem.fix == (f"datastore 'other' is not in the data table "
                           f"{tmp_path / 'azureml_data.yaml'}; known datastores: blobs, lake. "
                           f"Add it under datastores: with a url (and storage_options)")


@pytest.mark.parametrize(("reference", "folder"), [("azureml:imgs:1", "v1"),
                                                   ("azureml:imgs:2", "v2"),
                                                   ("azureml:imgs@latest", "v2")])
def test_data_assets_resolve_by_version_and_latest(tmp_path: Path, reference: str,
                                                   folder: str) -> None:
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "a.png").write_bytes(b"png")
    table = tmp_path / "tables" / "my_table.yaml"
    table.parent.mkdir()
    table.write_text('data:\n  imgs:\n    "1": ../v1\n    "2": {url: ../v2}\n',
                     encoding="utf-8")
    text = JOB.replace("path: ./images,", f"path: {reference},")

    step = load_step(str(sample(tmp_path, text)), data_table=str(table))

    assert step.inputs[0].paths == (str(tmp_path / folder),)


def test_an_unknown_data_asset_version_lists_the_known_versions(tmp_path: Path) -> None:
    (tmp_path / "azureml_data.yaml").write_text('data:\n  imgs:\n    "1": v1\n',
                                                encoding="utf-8")
    text = JOB.replace("path: ./images,", "path: azureml:imgs:7,")

    with pytest.raises(ConfigError) as caught:
        load_step(str(sample(tmp_path, text)))

    assert caught.value.problems[0].fix.startswith("data asset 'imgs' has no version '7' in ")
    assert caught.value.problems[0].fix.endswith("; known versions: 1")


def test_problems_name_the_file_and_the_azure_key(tmp_path: Path) -> None:
    text = (JOB.replace("input_data: ${{inputs.images}}", "input_data: ${{inputs.imagez}}")
            .replace("max_retries: 4", "max_retries: -1")
            .replace("max_concurrency_per_instance: 3", "max_concurrency_per_instance: 0")
            .replace("entry_script: score.py", "entry_script: missing.py"))
    path = sample(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_step(str(path))

    found = {(p.parameter, p.source) for p in caught.value.problems}
    assert ("input_data", f"{path}: input_data") in found
    assert ("retry_settings.max_retries", f"{path}: retry_settings.max_retries") in found
    assert ("max_concurrency_per_instance", f"{path}: max_concurrency_per_instance") in found
    assert ("task.entry_script", f"{path}: task.entry_script") in found
    undefined = next(p for p in caught.value.problems if p.parameter == "input_data")
    assert undefined.fix == "Define inputs.imagez Did you mean 'images'?"


def test_a_parallel_component_takes_its_inputs_from_set(tmp_path: Path) -> None:
    text = """\
    $schema: https://azuremlschemas.azureedge.net/latest/parallelComponent.schema.json
    type: parallel
    name: file_score
    version: 1
    inputs:
      job_data_path: {type: uri_folder, description: the data}
      batch: {type: integer, default: 4}
    outputs:
      job_output_path: {type: uri_folder}
    input_data: ${{inputs.job_data_path}}
    mini_batch_size: "2"
    task:
      type: function
      code: ./src
      entry_script: score.py
      args: --batch ${{inputs.batch}}
      append_row_to: ${{outputs.job_output_path}}
    """
    path = sample(tmp_path, text, files=5)

    with pytest.raises(ConfigError) as caught:
        load_step(str(path))
    assert caught.value.problems[0].parameter == "inputs.job_data_path.path"

    step = load_step(str(path), ["inputs.job_data_path=images",
                                 f"outputs.job_output_path.path={tmp_path / 'o'}"])
    assert step.inputs[0].paths == (str(tmp_path / "images"),)
    assert step.arguments == ["--batch", "4"]
    assert step.output == str(tmp_path / "o")
    assert step.parallel_run_config.append_row_file_name == "parallel_run_step.txt"


def test_cli_validate_reads_azure_yaml_and_reports_problems_with_exit_2(
        tmp_path: Path) -> None:
    path = sample(tmp_path)

    good = CliRunner().invoke(main, ["validate", str(path)])
    bad = CliRunner().invoke(main, ["validate", str(path), "--set", "resources.instance_count=0"])

    assert good.exit_code == 0, good.output
    assert good.stdout.startswith("valid: score-images: 7 input files, 3 mini-batches")
    assert bad.exit_code == 2
    assert ("resources.instance_count (--set resources.instance_count): must be >= 1, got 0"
            in bad.stderr)


def test_data_table_and_job_are_refused_for_a_daskprs_config(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text("name: x\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="applies to Azure v2 YAML only"):
        load_step(str(path), job="score")


def test_the_readme_data_table_example_loads(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from daskprs.azure.data_table import load_data_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Azure v2 YAML and MLTable\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "azureml_data.yaml").write_text(example, encoding="utf-8")

    table = load_data_table(None, str(tmp_path))

    assert table.resolve("azureml:iris@latest").url == "abfs://data/iris/v2"  # type: ignore[union-attr]
    assert table.resolve("azureml://datastores/workspaceblobstore/paths/a/b.csv").url == (  # type: ignore[union-attr]
        "s3://bucket/azureml/a/b.csv")
    assert table.binding("parent.jobs.partition_job.outputs.tabular_output_data").url == (  # type: ignore[union-attr]
        str(tmp_path / "data" / "partitioned"))
