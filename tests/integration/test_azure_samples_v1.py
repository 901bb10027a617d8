"""Microsoft's ParallelRunStep (v1) samples run unchanged on daskprs.

The entry scripts of Azure/MachineLearningNotebooks' ``parallel-run`` samples are vendored
byte for byte under ``tests/azure_samples/v1/`` (see its README for the commit). Each test
copies one, checks that it is still the published file, makes data of the shape its
notebook uses (nothing is downloaded), builds the notebook's ``ParallelRunConfig`` and step
(Azure-only objects such as ``environment`` and ``compute_target`` left out), runs it on the
session's 2-worker cluster, and checks the row count and that every input is in the output
exactly once.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

SAMPLES = Path(__file__).resolve().parents[1] / "azure_samples" / "v1"
# git blob hashes at Azure/MachineLearningNotebooks f1aff553c475be391acb2e5d4e4094867b5963c0
PUBLISHED = {
    "iris/iris_score.py": "763ed6da9cf377dcd27f5d4a1998b51a20efcdd6",
    "partition_per_folder/total_file_size.py": "2bc59c5f60b9314a33d42a787877471d5561eb0b",
    "partition_per_column/total_income.py": "583ab400107bdf32d630ed882bc63839b57f744c",
    "mnist/digit_identification.py": "5d27629f9cecdbf3e55358146e21234eaf6bf4cf",
}


def sample(tmp_path: Path, name: str) -> Path:
    """Copy the vendored script ``name`` into ``tmp_path/Code`` (the notebooks'
    ``scripts_folder``) after checking it is the published file; return the folder."""
    script = SAMPLES / name
    data = script.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob == PUBLISHED[name], f"{script} is no longer the file Microsoft published"
    folder = tmp_path / "Code"
    folder.mkdir(exist_ok=True)
    shutil.copy(script, folder / script.name)
    return folder


def user_logs(output: Path, kind: str) -> str:
    return "".join(p.read_text(encoding="utf-8")
                   for p in sorted((output / "logs" / "user" / kind).glob("*")))


# ---------------------------------------------------------------- tabular-dataset-inference-iris

IRIS_COLUMNS = ["sepal.length", "sepal.width", "petal.length", "petal.width"]
IRIS_ROWS = 150


def iris_like(rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Four measurements a row (each row distinct) and a variety per row, encoded 0..2:
    the script assigns ``predict(...).reshape((n, 1))`` to a column, which pandas >= 3
    refuses for strings (the notebook pinned pandas 1.4.4), and accepts for numbers."""
    rng = np.random.default_rng(7)
    variety = np.arange(rows) % 3
    centre = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.5, 2.0]])
    values = centre[np.arange(rows) % 3] + rng.normal(0, 0.2, (rows, 4))
    values[:, 0] = np.round(values[:, 0], 1) + np.arange(rows) * 1e-3  # a unique key
    frame = pd.DataFrame(np.round(values, 3), columns=IRIS_COLUMNS)
    return frame, variety


def test_the_iris_sample_scores_every_row_once_with_a_mapped_model(
        client: Any, tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    scripts_folder = sample(tmp_path, "iris/iris_score.py")
    frame, variety = iris_like(IRIS_ROWS)
    (tmp_path / "iris").mkdir()
    frame.to_csv(tmp_path / "iris" / "iris.csv", index=False)
    model = DecisionTreeClassifier(random_state=0).fit(frame, variety)
    (tmp_path / "iris_model.pkl").mkdir()  # as the notebook downloads it
    with open(tmp_path / "iris_model.pkl" / "iris_model.pkl", "wb") as handle:
        pickle.dump(model, handle)

    parallel_run_config = ParallelRunConfig(
        source_directory=str(scripts_folder), entry_script="iris_score.py",
        mini_batch_size="1KB", error_threshold=5, output_action="append_row",
        append_row_file_name="iris_outputs.txt", node_count=2, run_invocation_timeout=600)
    step = ParallelRunStep(
        name="example-iris",
        inputs=[Dataset.Tabular.from_delimited_files(str(tmp_path / "iris"))
                .as_named_input("iris_data")],
        output=str(tmp_path / "out"), parallel_run_config=parallel_run_config,
        arguments=["--model_name", "iris-prs"], allow_reuse=False,
        models={"iris-prs": str(tmp_path / "iris_model.pkl" / "iris_model.pkl")})
    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.first_errors
    assert result.mini_batches["total"] > 1
    df = pd.read_csv(tmp_path / "out" / "iris_outputs.txt", delimiter=" ", header=None)
    df.columns = [*IRIS_COLUMNS, "variety"]  # as the notebook reads it
    assert df.shape[0] == IRIS_ROWS
    assert sorted(df["sepal.length"].round(3)) == sorted(frame["sepal.length"].round(3))
    expected = dict(zip(frame["sepal.length"].round(3), model.predict(frame), strict=True))
    assert [expected[k] for k in df["sepal.length"].round(3)] == df["variety"].tolist()
    assert "init() is called." in user_logs(tmp_path / "out", "entry_script_log")


# ------------------------------------------------------ file-dataset-partition-per-folder

# the notebook's uploads: test_files/<genre> to dataset_partition_test/<user>/<season>
UPLOADS = [("disco", "user1", "winter"), ("orchestra", "user1", "fall"),
           ("piano", "user2", "summer"), ("spirituality", "user3", "fall"),
           ("piano", "user4", "spring"), ("piano", "user4", "fall")]


def wav_files(root: Path) -> dict[tuple[str, str, str], int]:
    """One small wav-like file per upload, each of its own size; {(user, season,
    genre): size}."""
    sizes = {}
    for number, (genre, user, season) in enumerate(UPLOADS):
        folder = root / "dataset_partition_test" / user / season
        folder.mkdir(parents=True)
        size = 44 + 100 * (number + 1)
        (folder / f"{genre}.wav").write_bytes(b"RIFF" + bytes(size - 4))
        sizes[(user, season, genre)] = size
    return sizes


@pytest.mark.parametrize("where", ["glob", "folder"])
def test_the_partition_per_folder_sample_sees_each_file_once_in_its_partition(
        client: Any, tmp_path: Path, where: str) -> None:
    scripts_folder = sample(tmp_path, "partition_per_folder/total_file_size.py")
    sizes = wav_files(tmp_path / "datastore")
    path = {"glob": tmp_path / "datastore" / "dataset_partition_test" / "*" / "*" / "*.wav",
            "folder": tmp_path / "datastore" / "dataset_partition_test"}[where]
    partitioned_file_dataset = Dataset.File.from_files(
        path=str(path), partition_format="dataset_partition_test/{user}/{season}/{genres}.wav")

    parallel_run_config = ParallelRunConfig(
        source_directory=str(scripts_folder), entry_script="total_file_size.py",
        partition_keys=["user", "genres"], error_threshold=5, output_action="append_row",
        append_row_file_name="file_size_outputs.txt", node_count=2,
        run_invocation_timeout=600)
    step = ParallelRunStep(
        name="summarize-file-size",
        inputs=[partitioned_file_dataset.as_named_input("partitioned_file_input")],
        output=str(tmp_path / "out"), parallel_run_config=parallel_run_config,
        allow_reuse=False)
    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.first_errors
    assert result.mini_batches["total"] == 5  # user4's two piano files are one partition
    df = pd.read_csv(tmp_path / "out" / "file_size_outputs.txt", delimiter=",", header=None)
    df.columns = ["File Name", "File Size", "Ratio of Size in Partition", "user", "genres",
                  "Total File Size of Partition"]
    assert df.shape[0] == len(UPLOADS)
    seen = sorted(zip(df["user"], df["genres"] + ".wav", df["File Size"], strict=True))
    assert seen == sorted((u, f"{g}.wav", s) for (u, _, g), s in sizes.items())
    for (user, genre), rows in df.groupby(["user", "genres"]):
        total = sum(s for (u, _, g), s in sizes.items() if (u, g) == (user, genre))
        assert rows["Total File Size of Partition"].tolist() == [total] * len(rows)
        assert rows["Ratio of Size in Partition"].sum() == pytest.approx(1.0)
    stdout = user_logs(tmp_path / "out", "stdout")
    assert "partition_key_value = {'user': 'user4', 'genres': 'piano'}" in stdout
    assert "dataset = FileDataset(name='partitioned_file_input'" in stdout


# ----------------------------------------------------- tabular-dataset-partition-per-column

OJ_COLUMNS = ["WeekStarting", "Quantity", "logQuantity", "Advert", "Price", "Age60",
              "COLLEGE", "INCOME", "Hincome150", "Large HH", "Minorities", "WorkingWoman",
              "SSTRDIST", "SSTRVOL", "CPDIST5", "CPWVOL5", "Store", "Brand"]
STORES, BRANDS, WEEKS = (2, 5, 8), ("dominicks", "minute.maid", "tropicana"), 6


def oj_sales() -> pd.DataFrame:
    """Orange-juice sales shaped as dominicks_OJ.csv: one row per store, brand and week."""
    rng = np.random.default_rng(11)
    rows = []
    for store in STORES:
        income = round(10 + store / 10, 4)  # demographic columns are per store
        for brand in BRANDS:
            for week in range(WEEKS):
                quantity = int(rng.integers(1000, 20000))
                rows.append([f"1990-06-{14 + week:02d}", quantity, round(np.log(quantity), 4),
                             int(rng.integers(0, 2)), round(rng.uniform(1, 4), 2), 0.23,
                             0.25, income, 5.1, 0.25, 0.11, 0.3, 2.1, 1.1, 1.9, 0.4, store,
                             brand])
    return pd.DataFrame(rows, columns=OJ_COLUMNS)


def test_the_partition_per_column_sample_adds_each_partitions_income_to_its_rows(
        client: Any, tmp_path: Path) -> None:
    scripts_folder = sample(tmp_path, "partition_per_column/total_income.py")
    sales = oj_sales()
    (tmp_path / "oj_sales_data").mkdir()
    sales.to_csv(tmp_path / "oj_sales_data" / "oj.csv", index=False)
    dataset = Dataset.Tabular.from_delimited_files(str(tmp_path / "oj_sales_data" / "*.csv"))

    parallel_run_config = ParallelRunConfig(
        source_directory=str(scripts_folder), entry_script="total_income.py",
        partition_keys=["Store", "Brand"], error_threshold=5, output_action="append_row",
        append_row_file_name="revenue_outputs.txt", node_count=2, run_invocation_timeout=600)
    step = ParallelRunStep(
        name="summarize-revenue",
        inputs=[dataset.as_named_input("partitioned_tabular_input")],
        output=str(tmp_path / "out"), parallel_run_config=parallel_run_config,
        allow_reuse=False)
    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.first_errors
    assert result.mini_batches["total"] == len(STORES) * len(BRANDS)
    df = pd.read_csv(tmp_path / "out" / "revenue_outputs.txt", delimiter=" ", header=None)
    df.columns = [*OJ_COLUMNS, "total_income"]  # as the notebook reads it
    assert df.shape[0] == len(sales)
    keys = ["WeekStarting", "Store", "Brand"]
    assert sorted(map(tuple, df[keys].to_numpy().tolist())) == \
        sorted(map(tuple, sales[keys].to_numpy().tolist()))
    expected = sales.groupby(["Store", "Brand"])["INCOME"].sum()
    for (store, brand), rows in df.groupby(["Store", "Brand"]):
        assert rows["total_income"].tolist() == pytest.approx(
            [expected[(store, brand)]] * WEEKS)


# ------------------------------------------------------- file-dataset-image-inference-mnist

MNIST_IMAGES = 12


def mnist_model(folder: Path) -> None:
    """A TensorFlow 1 graph with the tensor names the script looks up (``network/X:0``,
    ``network/output/MatMul:0``), saved as ``mnist-tf.model``: it answers the digit whose
    pixel (0..9 of the top row) is brightest."""
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.name_scope("network"):
        x = tf.compat.v1.placeholder(tf.float32, shape=(None, 784), name="X")
        weights = tf.compat.v1.Variable(np.eye(784, 10, dtype=np.float32), name="W")
        with tf.compat.v1.name_scope("output"):
            tf.matmul(x, weights)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(folder / "mnist-tf.model"))


def test_the_mnist_sample_labels_every_image_once(client: Any, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="TensorFlow (~600 MB) is not installed here; "
                        "the MNIST sample needs it (pip install tensorflow-cpu to run this)")
    from PIL import Image

    scripts_folder = sample(tmp_path, "mnist/digit_identification.py")
    images = tmp_path / "mnist"
    images.mkdir()
    for number in range(MNIST_IMAGES):
        pixels = np.zeros((28, 28), dtype=np.uint8)
        pixels[0, number % 10] = 255
        Image.fromarray(pixels).save(images / f"{number}.png")  # 8-bit grayscale
    (tmp_path / "models").mkdir()
    mnist_model(tmp_path / "models")

    parallel_run_config = ParallelRunConfig(
        source_directory=str(scripts_folder), entry_script="digit_identification.py",
        mini_batch_size="5", error_threshold=10, output_action="append_row",
        append_row_file_name="mnist_outputs.txt", process_count_per_node=2, node_count=2)
    parallelrun_step = ParallelRunStep(
        name="predict-digits-mnist", parallel_run_config=parallel_run_config,
        inputs=[Dataset.File.from_files(str(images)).as_named_input("mnist_sample_data")],
        output=str(tmp_path / "out"), allow_reuse=False,
        models={"mnist-prs": str(tmp_path / "models")})
    result = parallelrun_step.run(client=client, progress=False)

    assert result.status == "Completed", result.first_errors
    # the script returns lines "<file>: <digit>", which hold append_row's separator (a space):
    # daskprs quotes them as one CSV value (README, "append_row quoting"), where the
    # notebook's read_csv(delimiter=":") of Azure's file took two columns
    lines = result.read_output()[0]
    df = lines.str.split(": ", expand=True)
    df.columns = ["Filename", "Prediction"]
    df["Prediction"] = df["Prediction"].astype(int)
    assert df.shape[0] == MNIST_IMAGES
    assert sorted(df["Filename"]) == sorted(f"{n}.png" for n in range(MNIST_IMAGES))
    assert all(int(name.split(".")[0]) % 10 == label
               for name, label in zip(df["Filename"], df["Prediction"], strict=True))


# ------------------------------------------------------------- beyond the samples: Run metrics

METRICS_SCRIPT = """
import os

from azureml.core import Run


def init():
    Run.get_context().log("output_path_is_set", os.environ["AZUREML_BI_OUTPUT_PATH"] != "")


def run(mini_batch):
    Run.get_context().log_list("files", [os.path.basename(p) for p in mini_batch])
    return mini_batch
"""


def test_run_get_context_metrics_of_each_runner_land_in_its_workers_file(
        client: Any, tmp_path: Path) -> None:
    import json

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text(METRICS_SCRIPT, encoding="utf-8")
    (tmp_path / "files").mkdir()
    for number in range(9):
        (tmp_path / "files" / f"{number}.txt").write_text(str(number))
    config = ParallelRunConfig(source_directory=str(tmp_path / "src"), entry_script="score.py",
                               mini_batch_size=2)
    step = ParallelRunStep(name="metrics", parallel_run_config=config,
                           inputs=[Dataset.File.from_files(str(tmp_path / "files"))],
                           output=str(tmp_path / "out"))
    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.first_errors
    files = sorted((tmp_path / "out" / "logs" / "user" / "metrics").glob("*.jsonl"))
    assert 1 <= len(files) <= 2
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    listed = [name for r in records if r["name"] == "files" for name in r["value"]]
    assert sorted(listed) == [f"{n}.txt" for n in range(9)]
    assert all(r["value"] is True for r in records if r["name"] == "output_path_is_set")
