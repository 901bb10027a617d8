"""Microsoft's Azure ML v2 parallel-job samples, run unchanged from their own YAML files.

The samples are vendored byte for byte under ``tests/azure_samples/v2`` (see SOURCE.md
there). Each test copies one sample folder, adds what Azure would have brought (a data table
``azureml_data.yaml``, data of the sample's shape, a small scikit-learn model saved where
the sample keeps its model) and runs the sample's parallel job:

- ``1a_oj_sales_prediction``: the pipeline's command step (``partition_data.py``) is run as
  a plain script, as Azure would; its MLTable output is bound through the data table; the
  parallel node ``parallel_train`` (partition keys, ``return []``) runs with ``--job``.
- ``2a_iris_batch_prediction``: the parallel node ``batch_prediction`` (MLTable input,
  ``azureml://datastores/${{default_datastore}}/...`` output, Azure options in
  ``program_arguments``).
- ``3a_mnist_batch_identification``: validated only (its script uses TensorFlow 1's
  ``tf.Session``, which no TensorFlow for this Python has).
- ``1g_pipeline_with_parallel_nodes``: the notebook defines its two parallel nodes in
  Python (``parallel_run_function``); the tests write them as parallel component YAML with
  the notebook's values and bind the sample's MLTable folders with ``--set``.

Pipelines themselves (running the command steps, wiring outputs to inputs) are not tested
here. ``mltable`` is an empty stand-in module (see tests/azure_samples/stand_ins).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from daskprs.yaml_config import load_step
from tests.azure_sample_files import SAMPLES, STAND_INS, write_data_table

IRIS_ROWS, IRIS_COLUMNS = 150, 44

pytest.importorskip("mlflow", reason="pip install daskprs[azure-samples]")


@pytest.fixture(scope="module")
def sample_client() -> Iterator[Any]:
    """Two single-threaded worker processes whose runners find the ``mltable`` stand-in
    (the session cluster's workers were started without it on ``PYTHONPATH``). mlflow's
    pip-requirements inference (a subprocess per saved model, tens of seconds on a busy
    machine) is cut short: the models then list mlflow's default requirements."""
    from distributed import Client, LocalCluster

    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(STAND_INS), before) if p)
    os.environ["MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(cluster)
        client.wait_for_workers(2, timeout=60)
        yield client
        client.close()
        cluster.close()
    finally:
        os.environ.pop("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", None)
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def copy_sample(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / name
    shutil.copytree(SAMPLES / name, folder)
    monkeypatch.chdir(tmp_path)  # outputs without a path go to ./daskprs-runs
    return folder


def write_iris(path: Path) -> np.ndarray:
    """Data of the shape of the samples' iris.csv: 44 float columns, no header row (the
    MLTable's ``all_files_same_headers`` takes the first row as the header)."""
    values = np.random.default_rng(3).normal(size=(IRIS_ROWS, IRIS_COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, values, delimiter=",", fmt="%.18e")
    return values


def write_iris_model(folder: Path, values: np.ndarray) -> None:
    """A scikit-learn classifier pickled where the sample's MLmodel says ``model.pkl`` is
    (the vendored MLmodel is kept; its model.pkl was made by scikit-learn 0.20)."""
    import cloudpickle
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(random_state=0).fit(values[1:], values[1:, 0] > 0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pkl").write_bytes(cloudpickle.dumps(model))
    if not (folder / "MLmodel").exists():
        shutil.copy(SAMPLES / "2a_iris_batch_prediction" / "iris-model" / "MLmodel", folder)


def read_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=" ", header=None)


def assert_scored_every_row_once(output: Path, values: np.ndarray) -> None:
    scored = read_rows(output)
    rows = values[1:]  # the first row is the header
    assert len(scored) == len(rows)
    np.testing.assert_allclose(scored.iloc[:, :4].to_numpy(), rows[:, :4], rtol=1e-12)
    assert scored.iloc[:, 4].tolist() == (rows[:, 0] > 0).tolist()


def test_1a_parallel_train_saves_one_model_per_partition_and_completes(
        sample_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_sample("1a_oj_sales_prediction", tmp_path, monkeypatch)
    stores, brands, weeks = (1000, 1001), ("dominicks", "minute.maid"), 20
    rng = np.random.default_rng(0)
    frame = pd.DataFrame([
        (day.strftime("%Y-%m-%d"), store, brand, int(rng.integers(5000, 20000)),
         int(rng.integers(0, 2)), round(float(rng.uniform(1.5, 3.5)), 2), 0.0)
        for store in stores for brand in brands
        for day in pd.date_range("1990-06-14", periods=weeks, freq="7D")],
        columns=["WeekStarting", "Store", "Brand", "Quantity", "Advert", "Price", "Revenue"])
    frame["Revenue"] = frame["Quantity"] * frame["Price"]
    (folder / "oj_sales_data").mkdir()
    frame.to_csv(folder / "oj_sales_data" / "oj_sales_data.csv", index=False)
    subprocess.run([sys.executable, "src/partition_data/partition_data.py", "--data_source",
                    "oj_sales_data/oj_sales_data.csv", "--partition_keys", "Store,Brand",
                    "--tabular_output_data", str(tmp_path / "partitioned")], cwd=folder,
                   check=True, env={**os.environ, "PYTHONPATH": str(STAND_INS)})
    (folder / "azureml_data.yaml").write_text(
        "bindings:\n  parent.jobs.partition_job.outputs.tabular_output_data: "
        f"{tmp_path / 'partitioned'}\n", encoding="utf-8")

    step = load_step(str(folder / "pipeline.yml"), job="parallel_train")
    result = step.run(client=sample_client, progress=False)

    assert result.status == "Completed", result.summary()
    assert result.mini_batches["total"] == len(stores) * len(brands)
    assert result.mini_batches["succeeded"] == len(stores) * len(brands)
    assert result.items["total"] == len(frame)
    models = tmp_path / "daskprs-runs" / "parallel-train-outputs" / "model_folder"
    saved = sorted(str(p.parent.relative_to(models)) for p in models.rglob("MLmodel"))
    assert saved == sorted(f"{s}/{b.replace('.', '_')}" for s in stores for b in brands)


def test_2a_iris_batch_prediction_scores_every_row_once(
        sample_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_sample("2a_iris_batch_prediction", tmp_path, monkeypatch)
    values = write_iris(folder / "neural-iris-mltable" / "iris.csv")
    write_iris_model(folder / "iris-model", values)
    write_data_table(folder, tmp_path / "blobs")

    step = load_step(str(folder / "pipeline.yml"), job="batch_prediction")
    result = step.run(client=sample_client, progress=False)

    assert result.status == "Completed", result.summary()
    config = step.parallel_run_config
    assert (config.node_count, config.process_count_per_node) == (2, 2)
    assert config.allowed_failed_percent == 30  # from program_arguments
    assert result.items == {"total": IRIS_ROWS - 1, "succeeded": IRIS_ROWS - 1, "failed": 0}
    assert_scored_every_row_once(
        tmp_path / "blobs" / "batch-prediction" / "aggregated_returns.csv", values)


def test_3a_mnist_parallel_node_validates_in_mini_batches_of_five_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validated, not run: digit_identification.py calls TensorFlow 1 (``tf.Session``,
    ``tf.reset_default_graph``), removed in TensorFlow 2; TensorFlow 1 has no wheel for
    the Python versions daskprs supports."""
    folder = copy_sample("3a_mnist_batch_identification", tmp_path, monkeypatch)
    images = tmp_path / "mnist_png"
    images.mkdir()
    for number in range(12):
        (images / f"{number}.png").write_bytes(b"\x89PNG")
    (folder / "mnist_models").mkdir()
    write_data_table(folder, tmp_path / "blobs",
                     {"parent.jobs.prepare_data.outputs.mnist_png": images})

    summary = load_step(str(folder / "pipeline.yml"), job="predict_digits_mnist").validate()

    assert (summary.input_files, summary.mini_batches, summary.items) == (12, 3, 12)


FILE_COMPONENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/parallelComponent.schema.json
type: parallel
name: file_batch_score
display_name: Batch Score with File Dataset
description: parallel component for batch score
inputs:
  job_data_path:
    type: mltable
    description: The data to be split and scored in parallel
outputs:
  job_output_path:
    type: mltable
input_data: ${{inputs.job_data_path}}
resources:
  instance_count: 2
max_concurrency_per_instance: 1
mini_batch_size: "1"
mini_batch_error_threshold: 1
retry_settings:
  max_retries: 2
  timeout: 60
logging_level: DEBUG
task:
  type: run_function
  code: ./src
  entry_script: file_batch_inference.py
  program_arguments: --job_output_path ${{outputs.job_output_path}}
  environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
"""

TABULAR_COMPONENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/parallelComponent.schema.json
type: parallel
name: batch_score_with_tabular_input
display_name: Batch Score with Tabular Dataset
description: parallel component for batch score
inputs:
  job_data_path:
    type: mltable
    description: The data to be split and scored in parallel
  score_model:
    type: uri_folder
    description: The model for batch score.
outputs:
  job_output_path:
    type: mltable
input_data: ${{inputs.job_data_path}}
resources:
  instance_count: 2
max_concurrency_per_instance: 2
mini_batch_size: "100"
mini_batch_error_threshold: 5
logging_level: DEBUG
retry_settings:
  max_retries: 2
  timeout: 60
task:
  type: run_function
  code: ./src
  entry_script: tabular_batch_inference.py
  environment:
    image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04
    conda_file: ./src/environment_parallel.yml
  program_arguments: >-
    --model ${{inputs.score_model}}
    --job_output_path ${{outputs.job_output_path}}
    --error_threshold 5
    --allowed_failed_percent 30
    --task_overhead_timeout 1200
    --progress_update_timeout 600
    --first_task_creation_timeout 600
    --copy_logs_to_parent True
    --resource_monitor_interva 20
  append_row_to: ${{outputs.job_output_path}}
"""


def test_1g_file_batch_inference_copies_every_file_once(
        sample_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_sample("1g_pipeline_with_parallel_nodes", tmp_path, monkeypatch)
    component = folder / "file_batch_inference.yml"
    component.write_text(FILE_COMPONENT, encoding="utf-8")

    step = load_step(str(component), ["inputs.job_data_path=./dataset/mnist-data"])
    result = step.run(client=sample_client, progress=False)

    assert result.status == "Completed", result.summary()
    assert result.mini_batches["succeeded"] == 4
    written = tmp_path / "daskprs-runs" / "file-batch-score-outputs" / "job_output_path"
    images = folder / "dataset" / "mnist-data"
    assert sorted(p.name for p in written.iterdir()) == ["0.png", "1.png", "2.png", "3.png"]
    for number in range(4):  # the script writes each file's path into a file of its name
        assert (written / f"{number}.png").read_text() == str(images / f"{number}.png")


def test_1g_tabular_batch_inference_plans_no_empty_mini_batch_and_scores_every_row_once(
        sample_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_sample("1g_pipeline_with_parallel_nodes", tmp_path, monkeypatch)
    values = write_iris(folder / "dataset" / "iris-mltable" / "iris.csv")
    write_iris_model(folder / "model" / "iris_model", values)
    component = folder / "tabular_batch_inference.yml"
    component.write_text(TABULAR_COMPONENT, encoding="utf-8")

    step = load_step(str(component), ["inputs.job_data_path=./dataset/iris-mltable",
                                      "inputs.score_model=./model"])
    result = step.run(client=sample_client, progress=False)

    assert result.status == "Completed", result.summary()
    assert step.parallel_run_config.error_threshold == 5  # from program_arguments
    # mini_batch_size "100" (bytes) on rows of ~1 KB: one row per mini-batch, none empty
    assert result.mini_batches["total"] == IRIS_ROWS - 1
    assert result.items == {"total": IRIS_ROWS - 1, "succeeded": IRIS_ROWS - 1, "failed": 0}
    output = tmp_path / "daskprs-runs" / "batch-score-with-tabular-input-outputs"
    assert_scored_every_row_once(output / "job_output_path" / "parallel_run_step.txt", values)
