"""Azure compatibility without a cluster: Azure's options in ``arguments``, the ``models``
mapping with ``azureml.core.Model``/``Run``, ``AZUREML_BI_OUTPUT_PATH``,
``mini_batch_context.dataset`` and ``partition_format`` with leading folders.

Jobs here run with ``compute_target: inline`` (in this process).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from daskprs import ConfigError, Dataset, InputError, ParallelRunConfig, ParallelRunStep
from daskprs.azure_arguments import AZURE_OPTIONS, report_ignored_options
from daskprs.compat import COMPAT_DIR, add_shim_to_path, azureml_core_installed, mini_batch_dataset
from daskprs.datasets import FileDataset, TabularDataset
from daskprs.inputs.partition_format import parse_partition_format
from daskprs.inputs.plan import FileSource, MiniBatch, TabularSource
from daskprs.yaml_config import load_step

AZURE_V2_ARGUMENTS = ["--model", "model.pkl", "--error_threshold", "5",
                      "--allowed_failed_percent", "30", "--task_overhead_timeout", "1200",
                      "--progress_update_timeout", "600", "--first_task_creation_timeout", "600",
                      "--copy_logs_to_parent", "True", "--resource_monitor_interval", "20",
                      "--mini_batch_size=4 rows"]

AZURE_SCRIPT = """
import json
import os
import sys

from azureml.core import Model, Run


def init():
    global model_text, azure_run
    with open(Model.get_model_path("scorer"), encoding="utf-8") as handle:
        model_text = handle.read().strip()
    azure_run = Run.get_context()
    azure_run.log("loaded", 1)
    with open(os.path.join(os.environ["AZUREML_BI_OUTPUT_PATH"], "argv.json"), "w") as handle:
        json.dump(sys.argv[1:], handle)


def run(mini_batch, mini_batch_context):
    azure_run.log_row("batch", id=mini_batch_context.mini_batch_id, rows=len(mini_batch))
    azure_run.log_list("ids", mini_batch["id"].tolist())
    kind = type(mini_batch_context.dataset).__name__
    return [f"{model_text}|{kind}|{i}" for i in mini_batch["id"]]
"""


def frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(rows), "x": [i / 10 for i in range(rows)]})


def make_project(tmp_path: Path, rows: int = 10) -> tuple[Path, Path]:
    """An Azure-style entry script in ``src``, a table and a model file; (src, model)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(AZURE_SCRIPT, encoding="utf-8")
    frame(rows).to_parquet(tmp_path / "table.parquet", index=False)
    model = tmp_path / "model.txt"
    model.write_text("model-v1\n", encoding="utf-8")
    return src, model


def make_step(tmp_path: Path, src: Path, arguments: list[Any] | None = None,
              models: dict[str, Any] | None = None, **config: Any) -> ParallelRunStep:
    cfg = ParallelRunConfig(source_directory=str(src), entry_script="score.py",
                            compute_target="inline", **config)
    return ParallelRunStep(name="azure-compat", parallel_run_config=cfg,
                           inputs=[Dataset.Tabular.from_parquet_files(
                               str(tmp_path / "table.parquet")).as_named_input("table")],
                           output=str(tmp_path / "out"), arguments=arguments, models=models)


# ---------------------------------------------------------------- Azure options in arguments

def test_azure_options_in_arguments_set_the_config_and_stay_in_the_arguments(
        tmp_path: Path) -> None:
    src, model = make_project(tmp_path)
    step = make_step(tmp_path, src, AZURE_V2_ARGUMENTS, {"scorer": str(model)})
    config = step.parallel_run_config
    assert (config.error_threshold, config.allowed_failed_percent, config.mini_batch_size) \
        == (5, 30, "4 rows")
    assert str(step.mini_batch_size) == "4 rows"
    assert step.arguments == AZURE_V2_ARGUMENTS


def test_an_azure_option_that_contradicts_the_config_names_both(tmp_path: Path) -> None:
    src, model = make_project(tmp_path)
    with pytest.raises(ConfigError) as info:
        make_step(tmp_path, src, ["--error_threshold", "5"], {"scorer": str(model)},
                  error_threshold=10)
    assert str(info.value).splitlines()[1] == (
        "  - arguments[0] (keyword argument): sets error_threshold to 5, but "
        "parallel_run_config.error_threshold is 10, got '--error_threshold 5'. Remove "
        "--error_threshold from arguments, or set parallel_run_config.error_threshold to 5.")


def test_an_azure_option_that_agrees_with_the_config_is_accepted(tmp_path: Path) -> None:
    src, model = make_project(tmp_path)
    step = make_step(tmp_path, src, ["--mini_batch_size", "1kb", "--logging_level", "debug"],
                     {"scorer": str(model)}, mini_batch_size="1KB")
    assert (step.parallel_run_config.mini_batch_size,
            step.parallel_run_config.logging_level) == ("1KB", "DEBUG")


def test_an_azure_option_with_a_value_out_of_range_is_blamed_on_the_argument(
        tmp_path: Path) -> None:
    src, model = make_project(tmp_path)
    with pytest.raises(ConfigError, match=r"arguments\[1\] \(keyword argument\): sets "
                                          r"allowed_failed_percent, which must be a number"):
        make_step(tmp_path, src, ["--x", "--allowed_failed_percent", "130"],
                  {"scorer": str(model)})


def test_ignored_azure_options_are_reported_once_by_name(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="daskprs"):
        ignored = report_ignored_options(AZURE_V2_ARGUMENTS)
    assert ignored == ["task_overhead_timeout", "progress_update_timeout",
                       "first_task_creation_timeout", "copy_logs_to_parent",
                       "resource_monitor_interval"]
    assert len(caplog.records) == 1
    assert "--copy_logs_to_parent True (there is no parent pipeline job" in caplog.text


def test_every_azure_v2_documented_option_is_known() -> None:
    documented = ("error_threshold", "allowed_failed_percent", "task_overhead_timeout",
                  "progress_update_timeout", "first_task_creation_timeout",
                  "copy_logs_to_parent", "metrics_name_prefix", "push_metrics_to_parent",
                  "resource_monitor_interval")
    assert set(documented) <= set(AZURE_OPTIONS)


# ---------------------------------------------------------------- azureml.core in a job

def test_an_azure_script_runs_inline_with_models_metrics_and_the_output_path(
        tmp_path: Path) -> None:
    src, model = make_project(tmp_path, rows=10)
    step = make_step(tmp_path, src, AZURE_V2_ARGUMENTS, {"scorer": str(model)})
    result = step.run(progress=False)

    assert result.status == "Completed", result.first_errors
    out = tmp_path / "out"
    lines = (out / "parallel_run_step.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [f"model-v1|TabularDataset|{i}" for i in range(10)]
    assert json.loads((out / "argv.json").read_text()) == AZURE_V2_ARGUMENTS
    records = [json.loads(line) for line in
               (out / "logs" / "user" / "metrics" / "inline.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["name"]) for r in records] == [("log", "loaded")] + [
        ("row", "batch"), ("list", "ids")] * 3
    assert [r["value"] for r in records if r["kind"] == "row"] == [
        {"id": "table-0", "rows": 4}, {"id": "table-1", "rows": 4}, {"id": "table-2", "rows": 2}]
    assert sorted(i for r in records if r["kind"] == "list" for i in r["value"]) == \
        list(range(10))
    client_log = (out / "logs" / "sys" / "client.txt").read_text(encoding="utf-8")
    assert client_log.count("Azure options ignored by daskprs") == 1


def test_a_remote_model_is_downloaded_and_its_local_path_given_to_the_script(
        tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/azv1-models/scorer/model.txt", b"remote-model\n")
    src, _ = make_project(tmp_path, rows=3)
    step = make_step(tmp_path, src, models={"scorer": "memory://azv1-models/scorer/model.txt"})
    try:
        result = step.run(progress=False)
    finally:
        fs.rm("/azv1-models", recursive=True)

    assert result.status == "Completed", result.first_errors
    lines = (tmp_path / "out" / "parallel_run_step.txt").read_text().splitlines()
    assert lines == [f"remote-model|TabularDataset|{i}" for i in range(3)]


def test_a_model_name_the_script_asks_for_must_be_mapped_before_anything_runs(
        tmp_path: Path) -> None:
    src, model = make_project(tmp_path)
    with pytest.raises(ConfigError) as info:
        make_step(tmp_path, src, models={"other": str(model), "iris": str(model)})
    assert str(info.value).splitlines()[1] == (
        "  - models (keyword argument): has no entry 'scorer', which the entry script asks "
        "for with Model.get_model_path (known: ['iris', 'other']), got 'scorer'. Add it: "
        "models={'scorer': 'path/to/model'} (YAML: models: {scorer: path/to/model}).")
    assert not (tmp_path / "out").exists()


def test_a_missing_model_file_is_an_input_error_at_validation(tmp_path: Path) -> None:
    src, _ = make_project(tmp_path)
    step = make_step(tmp_path, src, models={"scorer": str(tmp_path / "gone.pkl")})
    with pytest.raises(InputError, match="model 'scorer'"):
        step.validate()


def test_a_changed_model_file_changes_the_job_fingerprint(tmp_path: Path) -> None:
    src, model = make_project(tmp_path)
    before = make_step(tmp_path, src, models={"scorer": str(model)}).validate().fingerprint
    model.write_text("model-v2, retrained\n", encoding="utf-8")
    after = make_step(tmp_path, src, models={"scorer": str(model)}).validate().fingerprint
    assert before != after


def test_yaml_models_are_relative_to_the_yaml_file(tmp_path: Path) -> None:
    make_project(tmp_path)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "model.txt").write_text("m\n", encoding="utf-8")
    (conf / "job.yaml").write_text(
        "name: azure-compat\ninputs: [{type: tabular, path: ../table.parquet}]\n"
        "output: ../out\nmodels: {scorer: model.txt}\n"
        "parallel_run_config: {source_directory: ../src, entry_script: score.py}\n",
        encoding="utf-8")
    step = load_step(str(conf / "job.yaml"))
    assert [(m.name, m.url) for m in step.models] == [("scorer", str(conf / "model.txt"))]


def test_get_model_path_of_an_unknown_name_lists_the_known_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASKPRS_MODELS", json.dumps({"a": "/m/a", "b": "/m/b"}))
    shim = import_shim(monkeypatch)
    assert shim.Model.get_model_path("a", version=3) == "/m/a"
    with pytest.raises(shim.ModelNotFoundException) as info:
        shim.Model.get_model_path("c")
    assert str(info.value) == (
        "Model.get_model_path: 'c' is not in the step's models mapping; known: ['a', 'b']. "
        "Add it to the step: models={'c': 'path/or/url'} (YAML: models: {c: path/or/url}).")


def import_shim(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``azureml.core`` from daskprs' shim, imported fresh (and forgotten after the test)."""
    for name in [n for n in sys.modules if n == "azureml" or n.startswith("azureml.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(COMPAT_DIR)
    import azureml.core

    assert azureml.core.__file__.startswith(COMPAT_DIR)
    return azureml.core


def test_the_shim_never_shadows_a_real_azureml_core(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "site" / "azureml" / "core"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n", encoding="utf-8")
    for name in [n for n in sys.modules if n == "azureml" or n.startswith("azureml.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != COMPAT_DIR])

    assert azureml_core_installed()
    assert add_shim_to_path() is False
    assert COMPAT_DIR not in sys.path


def test_the_shim_is_added_only_where_azureml_core_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "azureml" or n.startswith("azureml.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != COMPAT_DIR])
    assert not azureml_core_installed()
    assert add_shim_to_path() is True
    assert sys.path[-1] == COMPAT_DIR
    assert not azureml_core_installed()  # the shim itself is not "a real install"


# ---------------------------------------------------------------- mini_batch_context.dataset

def test_the_context_dataset_of_a_file_mini_batch_holds_its_files_under_the_input_name(
        ) -> None:
    mini_batch = MiniBatch(index=0, id="wav-0", input_name="wav",
                           source=FileSource({"anon": True}, "download"),
                           paths=("/d/u1/a.wav", "/d/u1/b.wav"), relatives=("a.wav", "b.wav"))
    assert mini_batch_dataset(mini_batch) == FileDataset(
        name="wav", storage_options={"anon": True}, paths=("/d/u1/a.wav", "/d/u1/b.wav"))


def test_the_context_dataset_of_a_tabular_mini_batch_names_the_file_of_its_rows() -> None:
    mini_batch = MiniBatch(index=0, id="t-0", input_name="t",
                           source=TabularSource("delimited", separator=";"), path="/d/t.csv")
    assert mini_batch_dataset(mini_batch) == TabularDataset(
        name="t", format="delimited", paths=("/d/t.csv",), separator=";")
    in_memory = MiniBatch(index=0, id="t-0", input_name="t", source=TabularSource("pandas"))
    assert mini_batch_dataset(in_memory) is None


# ---------------------------------------------------------------- partition_format

NOTEBOOK_FORMAT = "dataset_partition_test/{user}/{season}/{genres}.wav"


@pytest.mark.parametrize("root", ["/store", "/store/dataset_partition_test", "s3://b/x"])
def test_a_format_with_leading_folders_matches_from_the_folder_or_its_parent(
        root: str) -> None:
    layout = parse_partition_format(NOTEBOOK_FORMAT)
    full = "dataset_partition_test/user4/fall/piano.wav"
    base = root if root.endswith("dataset_partition_test") else f"{root}/dataset_partition_test"
    relative = full if not root.endswith("dataset_partition_test") else full.split("/", 1)[1]
    url = f"{base.rsplit('/dataset_partition_test', 1)[0]}/{full}"
    assert layout.values(relative, url) == {"user": "user4", "season": "fall",
                                            "genres": "piano"}


def test_a_format_matching_the_relative_path_ignores_the_root_folders() -> None:
    layout = parse_partition_format("/{region}/{day}/")
    assert layout.values("north/d1/a/b.png", "/data/north/d1/a/b.png") == {
        "region": "north", "day": "d1"}
    assert layout.values("b.png", "/data/north/b.png") is None


def test_partition_keys_plan_the_notebook_layout_from_the_folder_and_its_parent(
        tmp_path: Path) -> None:
    for user, season, genre in [("user1", "winter", "disco"), ("user4", "spring", "piano"),
                                ("user4", "fall", "piano")]:
        folder = tmp_path / "store" / "dataset_partition_test" / user / season
        folder.mkdir(parents=True)
        (folder / f"{genre}.wav").write_bytes(b"RIFF")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text("def run(mb, ctx):\n    return mb\n")
    config = ParallelRunConfig(source_directory=str(tmp_path / "src"), entry_script="score.py",
                               partition_keys=["user", "genres"])
    for path in ("store", "store/dataset_partition_test",
                 "store/dataset_partition_test/*/*/*.wav"):
        dataset = Dataset.File.from_files(str(tmp_path / path), partition_format=NOTEBOOK_FORMAT)
        step = ParallelRunStep(name="partitions", parallel_run_config=config,
                               inputs=[dataset], output=str(tmp_path / "out"))
        summary = step.validate()
        assert (summary.mini_batches, summary.items) == (2, 3), path
    assert not (tmp_path / "out").exists()
