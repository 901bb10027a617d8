"""File inputs end to end on a real (2-process) Dask cluster.

What a user scoring files would check: every file in the output exactly once and in order,
whatever way the input was named; one mini-batch per partition key value; bad inputs
refused before any cluster starts; and an entry script written for Azure running unchanged
through the command line and the Python API, its log lines in ``logs/user/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from daskprs import ConfigError, Dataset, InputError, ParallelRunConfig, ParallelRunStep
from daskprs.inputs.files import plan_files
from daskprs.sizes import parse_file_size

FILES, FOLDERS = 10_000, 10
REGIONS, DAYS = ("east", "north", "south"), ("d1", "d2")

RETURN_PATHS = """
def run(mini_batch):
    return mini_batch
"""

RETURN_KEYS = """
import json
import os

def run(mini_batch, mini_batch_context):
    key = json.dumps(mini_batch_context.partition_key_value, sort_keys=True)
    if isinstance(mini_batch, list):
        items = ["/".join(p.split(os.sep)[-3:]) for p in mini_batch]
    else:
        items = [str(i) for i in mini_batch["id"]]
    return [f"{mini_batch_context.mini_batch_id}|{key}|{item}" for item in items]
"""

AZURE_SCRIPT = """
import argparse
import os

from azureml_user.parallel_run import EntryScript


def init():
    global model
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, unknown = parser.parse_known_args()
    with open(args.model, encoding="utf-8") as handle:
        model = int(handle.read())
    EntryScript().logger.info("init: model %s loaded, ignoring %s", args.model, unknown)


def run(mini_batch):
    logger = EntryScript().logger
    logger.info("scoring %d files on %s", len(mini_batch), EntryScript().agent_name)
    results = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as handle:
            value = int(handle.read())
        results.append(f"{os.path.basename(path)},{value % model}")
    return results
"""


# ---------------------------------------------------------------- helpers

def run_step(client: Any, source: Path, inputs: list[Any], output: Path, **config: Any) -> Any:
    """Build and run a step on ``client``; return its JobResult."""
    arguments = config.pop("arguments", None)
    side_inputs = config.pop("side_inputs", None)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py", **config)
    step = ParallelRunStep(name="score-files", parallel_run_config=cfg, inputs=inputs,
                           output=str(output), arguments=arguments, side_inputs=side_inputs)
    return step.run(client=client, progress=False)


def output_lines(output: Path) -> list[str]:
    return (output / "parallel_run_step.txt").read_text(encoding="utf-8").splitlines()


def job_json(output: Path) -> dict[str, Any]:
    return json.loads((output / "logs" / "job_result.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """10,000 small files in 10 folders ``s0 .. s9``; their sorted paths."""
    root = tmp_path_factory.mktemp("many-files")
    for folder in range(FOLDERS):
        (root / f"s{folder}").mkdir()
        for number in range(FILES // FOLDERS):
            (root / f"s{folder}" / f"f{number:04d}.txt").write_text(str(number))
    return root, sorted(str(p) for p in root.rglob("*.txt"))


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make starting a cluster fail the test: errors must come before it."""
    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("a cluster was started before the error was found")

    monkeypatch.setattr("daskprs.execution.run_on_cluster", refuse)


# ---------------------------------------------------------------- 10,000 files

def test_ten_thousand_files_in_mini_batches_of_ten_come_out_once_each_in_order(
        client: Any, tmp_path: Path, write_script: Any,
        many_files: tuple[Path, list[str]]) -> None:
    root, paths = many_files
    source = write_script(tmp_path, RETURN_PATHS)
    out = tmp_path / "out"
    result = run_step(client, source, [Dataset.File.from_files(str(root / "*" / "*.txt"))], out,
                      mini_batch_size=10)
    assert result.status == "Completed", result.first_errors
    summary = job_json(out)
    assert summary["mini_batches"]["total"] == summary["mini_batches"]["succeeded"] == 1_000
    assert summary["items"] == {"total": FILES, "succeeded": FILES, "failed": 0}
    assert output_lines(out) == paths


def test_a_folder_input_and_a_list_input_give_the_same_output_as_the_glob(
        client: Any, tmp_path: Path, write_script: Any,
        many_files: tuple[Path, list[str]]) -> None:
    root, paths = many_files
    source = write_script(tmp_path, RETURN_PATHS)
    listed = [str(root / "s9"), str(root / "s2" / "f0007.txt"),  # also inside s2: once
              *[str(root / f"s{n}" / "*.txt") for n in range(1, 9)], str(root / "s0")]
    for name, dataset in (("folder", Dataset.File.from_files(str(root))),
                          ("list", Dataset.File.from_files(listed))):
        out = tmp_path / name
        result = run_step(client, source, [dataset], out, mini_batch_size=10)
        assert result.status == "Completed", (name, result.first_errors)
        assert job_json(out)["mini_batches"]["total"] == 1_000, name
        assert output_lines(out) == paths, name


# ---------------------------------------------------------------- partition_keys

def test_partition_keys_of_a_file_input_give_each_key_value_one_mini_batch(
        client: Any, tmp_path: Path, write_script: Any) -> None:
    images = tmp_path / "images"
    for region in REGIONS:
        for day in DAYS:
            (images / region / day).mkdir(parents=True)
            for number in range(4):
                (images / region / day / f"{number}.png").write_bytes(b"png")
    source = write_script(tmp_path, RETURN_KEYS)
    out = tmp_path / "out"
    dataset = Dataset.File.from_files(str(images), partition_format="/{region}/{day}/")
    result = run_step(client, source, [dataset.as_named_input("images")], out,
                      partition_keys=["region", "day"])
    assert result.status == "Completed", result.first_errors
    # values hold quotes and spaces, so append_row quotes them: read them back as values
    rows = [value.split("|") for value in result.read_output()[0].tolist()]
    ids = [row[0] for row in rows]
    assert list(dict.fromkeys(ids)) == [f"images-{n}" for n in range(6)]
    expected = [(f"images-{2 * r + d}", {"day": day, "region": region})
                for r, region in enumerate(REGIONS) for d, day in enumerate(DAYS)]
    assert [(i, json.loads(k)) for i, k, _ in rows[::4]] == expected
    for mini_batch_id, key, item in rows:
        value = json.loads(key)
        assert item.split("/")[:2] == [value["region"], value["day"]], (mini_batch_id, item)
    assert [row[2] for row in rows] == [f"{r}/{d}/{n}.png" for r in REGIONS for d in DAYS
                                        for n in range(4)]


def test_partition_keys_of_a_tabular_input_give_each_key_value_one_mini_batch(
        client: Any, tmp_path: Path, write_script: Any) -> None:
    folder = tmp_path / "table"
    folder.mkdir()
    rng = np.random.default_rng(3)
    frames = []
    for number in range(3):  # every region in every file: key values span files
        frame = pd.DataFrame({"id": np.arange(number * 500, (number + 1) * 500),
                              "region": rng.choice(np.array([*REGIONS, None], dtype=object),
                                                   500)})
        frame.to_parquet(folder / f"part-{number}.parquet", row_group_size=100, index=False)
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    source = write_script(tmp_path, RETURN_KEYS)
    out = tmp_path / "out"
    result = run_step(client, source, [Dataset.Tabular.from_parquet_files(str(folder))], out,
                      partition_keys=["region"], mini_batch_size="100 rows")
    assert result.status == "Completed", result.first_errors
    table = pd.DataFrame([value.split("|") for value in result.read_output()[0].tolist()],
                         columns=["mini_batch_id", "key", "id"])
    table["region"] = table["key"].map(lambda text: json.loads(text)["region"] or "<none>")
    table["id"] = table["id"].astype(int)
    assert table.groupby("mini_batch_id")["region"].nunique().eq(1).all()
    assert table.groupby("region")["mini_batch_id"].nunique().eq(1).all()
    firsts = table.drop_duplicates("mini_batch_id")
    assert firsts["mini_batch_id"].tolist() == [f"input0-{n}" for n in range(4)]
    assert firsts["key"].tolist() == [json.dumps({"region": r}) for r in [*REGIONS, None]]
    truth = rows.set_index("id")["region"].reindex(table["id"])
    assert [json.dumps({"region": None if pd.isna(v) else v}) for v in truth] == \
        table["key"].tolist()
    assert sorted(table["id"]) == list(range(1_500))


# ---------------------------------------------------------------- bad inputs

def test_a_glob_that_matches_nothing_is_refused_before_the_cluster_starts(
        tmp_path: Path, write_script: Any, no_cluster: None) -> None:
    source = write_script(tmp_path, RETURN_PATHS)
    pattern = str(tmp_path / "images" / "*.png")
    with pytest.raises(InputError, match=r"matches no files\. Check the path"):
        run_step(None, source, [Dataset.File.from_files(pattern)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_where_a_file_is_expected_is_refused_before_the_cluster_starts(
        tmp_path: Path, write_script: Any, no_cluster: None) -> None:
    images = tmp_path / "images"
    (images / "b.png").mkdir(parents=True)
    (images / "a.png").write_bytes(b"png")
    source = write_script(tmp_path, RETURN_PATHS)
    with pytest.raises(InputError) as info:
        run_step(None, source, [Dataset.File.from_files(str(images / "*.png"))], tmp_path / "out")
    assert f"matches 1 folder(s) where a file is expected, got '{images / 'b.png'}'" \
        in str(info.value)
    assert f"Use '{images / '*.png'}/**' to take every file below" in str(info.value)
    assert not (tmp_path / "out").exists()
    (images / "b.png" / "inner.png").write_bytes(b"png")  # a recursive glob steps through
    recursive = Dataset.File.from_files(str(images / "**")).as_named_input("images")
    plan = plan_files([recursive], parse_file_size(10))
    assert plan.mini_batches[0].paths == (str(images / "a.png"),
                                          str(images / "b.png" / "inner.png"))


def test_an_unreadable_file_is_refused_before_the_cluster_starts(
        tmp_path: Path, write_script: Any, no_cluster: None) -> None:
    images = tmp_path / "images"
    images.mkdir()
    secret = images / "b.png"
    secret.write_bytes(b"png")
    (images / "a.png").write_bytes(b"png")
    secret.chmod(0)
    try:
        if os.access(secret, os.R_OK):
            pytest.skip("this user (root) reads files whatever their mode: chmod 000 cannot "
                        "make a file unreadable here")
        source = write_script(tmp_path, RETURN_PATHS)
        with pytest.raises(InputError, match=r"1 file\(s\) cannot be read \(permission denied"):
            run_step(None, source, [Dataset.File.from_files(str(images))], tmp_path / "out")
    finally:
        secret.chmod(0o644)


def test_an_unreadable_file_is_named_in_the_error(
        tmp_path: Path, write_script: Any, no_cluster: None, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """The same check where permissions cannot be tested (root): ``os.access`` says no."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        (images / name).write_bytes(b"png")
    secret = str(images / "b.png")
    real_access = os.access
    monkeypatch.setattr("daskprs.inputs.listing.os.access",
                        lambda path, mode: path != secret and real_access(path, mode))
    source = write_script(tmp_path, RETURN_PATHS)
    with pytest.raises(InputError) as info:
        run_step(None, source, [Dataset.File.from_files(str(images))], tmp_path / "out")
    assert str(info.value) == (
        f"input 'input0': 1 file(s) cannot be read (permission denied), got {secret!r}. Give "
        f"this user read access (chmod a+r {secret!r}) or move the file out of the input.")


def test_mixed_tabular_and_file_inputs_are_refused_before_the_cluster_starts(
        tmp_path: Path, write_script: Any, make_parquet: Any, no_cluster: None) -> None:
    make_parquet(tmp_path / "table", files=1, rows_per_file=10, row_group_size=10)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    source = write_script(tmp_path, RETURN_PATHS)
    inputs = [Dataset.Tabular.from_parquet_files(str(tmp_path / "table")),
              Dataset.File.from_files(str(tmp_path / "images"))]
    with pytest.raises(ConfigError) as info:
        run_step(None, source, inputs, tmp_path / "out")
    assert "inputs (keyword argument): mixes tabular and file inputs, got ['file', " \
           "'tabular']. Give one kind of input per step" in str(info.value)


def test_a_side_input_that_does_not_exist_is_refused_before_the_cluster_starts(
        tmp_path: Path, write_script: Any, no_cluster: None) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    source = write_script(tmp_path, RETURN_PATHS)
    labels = Dataset.File.from_files(str(tmp_path / "labels.txt")).as_named_input("labels")
    with pytest.raises(InputError, match=r"side input 'labels': .*labels.txt' matches no files"):
        run_step(None, source, [Dataset.File.from_files(str(tmp_path / "images"))],
                 tmp_path / "out", side_inputs=[labels], arguments=["--labels", labels])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- an Azure entry script

@pytest.fixture
def azure_job(tmp_path: Path, write_script: Any) -> Path:
    """Files ``0.txt .. 39.txt`` holding their number, a model file, the Azure-style script."""
    data = tmp_path / "data"
    data.mkdir()
    for number in range(40):
        (data / f"{number:02d}.txt").write_text(str(number))
    (tmp_path / "model.txt").write_text("3")
    write_script(tmp_path, AZURE_SCRIPT)
    return tmp_path


def expected_predictions() -> list[str]:
    return [f"{number:02d}.txt,{number % 3}" for number in range(40)]


def entry_script_log(output: Path) -> str:
    folder = output / "logs" / "user" / "entry_script_log"
    return "".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.log.txt")))


def test_an_azure_entry_script_runs_unchanged_through_the_command_line(azure_job: Path) -> None:
    config = azure_job / "conf" / "files.yaml"
    config.parent.mkdir()
    config.write_text(textwrap.dedent("""
        name: score-files
        inputs:
          - {name: numbers, type: file, path: ../data/*.txt}
        side_inputs:
          - {name: model, type: file, path: ../model.txt}
        output: ../out
        arguments: [--model, "${{side_inputs.model}}", --unknown-flag, "1"]
        parallel_run_config:
          source_directory: ../src
          entry_script: score.py
          mini_batch_size: 4
          process_count_per_node: 2
          compute_target: local
        """))
    done = subprocess.run([sys.executable, "-m", "daskprs", "run", str(config), "--no-progress"],
                          capture_output=True, text=True, timeout=300, cwd=azure_job)
    assert done.returncode == 0, done.stderr
    out = azure_job / "out"
    assert output_lines(out) == expected_predictions()
    log = entry_script_log(out)
    assert f"init: model {azure_job / 'model.txt'} loaded, ignoring ['--unknown-flag', '1']" \
        in log
    assert log.count("scoring 4 files on worker-") == 10
    names = sorted(p.name for p in (out / "logs" / "user" / "entry_script_log").iterdir())
    assert names and all(n.startswith("worker-") and n.endswith(".log.txt") for n in names)


def test_an_azure_entry_script_runs_unchanged_through_the_python_api(
        client: Any, azure_job: Path) -> None:
    out = azure_job / "out"
    result = run_step(client, azure_job / "src",
                      [Dataset.File.from_files(str(azure_job / "data" / "*.txt"))], out,
                      mini_batch_size=4, arguments=["--model", str(azure_job / "model.txt")])
    result.raise_for_status()
    assert output_lines(out) == expected_predictions()
    log = entry_script_log(out)
    assert f"init: model {azure_job / 'model.txt'} loaded, ignoring []" in log
    assert log.count("scoring 4 files on ") == 10


# ---------------------------------------------------------------- the digits example

def test_the_digits_example_classifies_every_image_it_wrote(client: Any, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    data = tmp_path / "digits-data"
    made = subprocess.run([sys.executable, str(repo / "examples" / "digits" / "make_data.py"),
                           "--out", str(data)], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    from daskprs.yaml_config import load_step

    step = load_step(str(repo / "conf" / "digits.yaml"), [
        f"inputs.0.path={data / 'images'}", f"side_inputs.0.path={data / 'model.joblib'}",
        f"output={tmp_path / 'out'}"])
    step.run(client=client, progress=False).raise_for_status()
    predicted = pd.read_csv(tmp_path / "out" / "parallel_run_step.txt", names=["file", "digit"])
    truth = pd.read_csv(data / "labels.csv")
    assert predicted["file"].tolist() == truth["file"].tolist()
    assert (predicted["digit"] == truth["label"]).mean() > 0.9
