"""One scenario suite, run against local disk, an S3 server (moto) and Azure (Azurite)."""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd
import pytest

from daskprs import Dataset, JobResult, ParallelRunConfig, ParallelRunStep

ROWS_PER_FILE = 1_000
FILES = 3


def _upload_table(storage, folder: str) -> None:
    fs = storage.fs
    fs.makedirs(storage.path(folder), exist_ok=True)
    for number in range(FILES):
        start = number * ROWS_PER_FILE
        frame = pd.DataFrame({"id": range(start, start + ROWS_PER_FILE),
                              "x": [float(i) for i in range(ROWS_PER_FILE)]})
        with fs.open(storage.path(folder, f"part-{number}.parquet"), "wb") as handle:
            frame.to_parquet(handle, index=False, row_group_size=250)


def _step(storage, tmp_path, write_script, body: str, action: str = "append_row", **config) -> Any:
    source = write_script(tmp_path, body)
    settings = {"mini_batch_size": "400 rows", "output_action": action, **config}
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py", **settings)
    table = Dataset.Tabular.from_parquet_files(storage.url("in") + "/",
                                               storage_options=storage.storage_options)
    return ParallelRunStep(name="scenario", parallel_run_config=cfg, inputs=[table],
                           output=storage.url("out"),
                           output_storage_options=storage.storage_options)


IDS = """
def run(mini_batch):
    return mini_batch["id"].tolist()
"""


def test_every_row_appears_once_in_order_and_logs_are_written(storage, tmp_path, write_script,
                                                              client):
    _upload_table(storage, "in")
    result = _step(storage, tmp_path, write_script, IDS).run(client=client, progress=False)

    assert result.status == "Completed"
    fs = storage.fs
    lines = fs.cat_file(storage.path("out", "parallel_run_step.txt")).decode().splitlines()
    assert [int(x) for x in lines] == list(range(FILES * ROWS_PER_FILE))
    job = json.loads(fs.cat_file(storage.path("out", "logs", "job_result.json")))
    assert job["items"] == {"total": 3000, "succeeded": 3000, "failed": 0}
    assert job["mini_batches"]["total"] == FILES * 3  # 1000 rows -> 400, 400, 200
    csv = fs.cat_file(storage.path("out", "logs", "sys", "mini_batches.csv")).decode()
    assert len(csv.splitlines()) == 1 + FILES * 3
    for name in ("readme.txt", "job_result.txt", "sys/client.txt"):
        assert fs.exists(storage.path("out", "logs", name)), name
    workers = fs.ls(storage.path("out", "logs", "sys", "workers"), detail=False)
    assert len(workers) == 2


def test_staging_objects_are_removed_after_a_successful_commit(storage, tmp_path, write_script,
                                                               client):
    _upload_table(storage, "in")
    _step(storage, tmp_path, write_script, IDS).run(client=client, progress=False)

    fs = storage.fs
    leftovers = [p for p in fs.find(storage.path("out", "_daskprs"))
                 if "/commits/" in p or "/results/" in p or "/attempts/" in p
                 or "/committed/" in p or "/assembly/" in p]
    assert leftovers == []


def test_parquet_output_round_trips(storage, tmp_path, write_script, client):
    _upload_table(storage, "in")
    body = """
import pandas as pd
def run(mini_batch):
    return pd.DataFrame({"id": mini_batch["id"], "double": mini_batch["x"] * 2})
"""
    result = _step(storage, tmp_path, write_script, body, action="parquet").run(client=client,
                                                                      progress=False)

    frame = result.read_output().sort_values("id").reset_index(drop=True)
    assert frame["id"].tolist() == list(range(FILES * ROWS_PER_FILE))
    assert frame["double"].tolist() == [2.0 * (i % ROWS_PER_FILE) for i in range(3000)]
    parts = sorted(p.rsplit("/", 1)[-1] for p in storage.fs.ls(storage.path("out", "data"),
                                                                detail=False))
    # one part per mini-batch, named by run (old or new for readers), and the manifest
    run_id = JobResult.load(storage.url("out"), storage.storage_options).run_id
    assert parts == [f"_manifest-{run_id}.json",
                     *(f"part-{i:05d}-{run_id}.parquet" for i in range(FILES * 3))]


def test_a_failed_job_publishes_nothing_and_keeps_the_previous_output(storage, tmp_path,
                                                                       write_script, client):
    _upload_table(storage, "in")
    _step(storage, tmp_path, write_script, IDS).run(client=client, progress=False)
    before = storage.fs.cat_file(storage.path("out", "parallel_run_step.txt"))
    failing = """
def run(mini_batch):
    if mini_batch["id"].iloc[0] == 1400:
        raise ValueError("this mini-batch fails")
    return mini_batch["id"].tolist()
"""
    result = _step(storage, tmp_path, write_script, failing, allowed_failed_count=0,
                   run_max_try=1).run(client=client, progress=False)

    assert result.status == "Failed"
    assert storage.fs.cat_file(storage.path("out", "parallel_run_step.txt")) == before
    with pytest.raises(Exception, match="failed; it published no output"):
        result.read_output()


def test_files_the_script_writes_to_output_dir_reach_the_output(storage, tmp_path, write_script,
                                                                 client):
    _upload_table(storage, "in")
    body = """
import os
from daskprs import EntryScript
def run(mini_batch):
    first = int(mini_batch["id"].iloc[0])
    with open(os.path.join(EntryScript().output_dir, f"from-{first}.txt"), "w") as f:
        f.write(str(len(mini_batch)))
    return mini_batch["id"].tolist()
"""
    result = _step(storage, tmp_path, write_script, body, action="summary_only").run(client=client,
                                                                           progress=False)

    assert result.status == "Completed"
    fs = storage.fs
    written = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(storage.path("out"), detail=False)
                     if p.endswith(".txt"))
    starts = [f * ROWS_PER_FILE + s for f in range(FILES) for s in (0, 400, 800)]
    assert written == sorted(f"from-{s}.txt" for s in starts)
    assert not fs.exists(storage.path("out", "parallel_run_step.txt"))


FILE_SCRIPT = """
import json, os
def run(mini_batch):
    out = []
    for path in mini_batch:
        with open(path) as handle:
            text = handle.read()
        parts = path.replace(os.sep, "/").split("/")
        out.append(json.dumps({"tail": "/".join(parts[-3:]), "text": text,
                               "exists": os.path.exists(path), "path": path}))
    return out
"""


def _upload_files(storage) -> list[str]:
    fs = storage.fs
    names = [f"docs/{region}/file-{i:03d}.txt" for region in ("eu", "us") for i in range(15)]
    for name in names:
        fs.makedirs(storage.path("in", *name.split("/")[:-1]), exist_ok=True)
        fs.pipe_file(storage.path("in", *name.split("/")), name.encode())
    return names


def test_file_inputs_reach_run_as_local_files_with_their_folders(storage, tmp_path,
                                                                  write_script, client):
    names = _upload_files(storage)
    source = write_script(tmp_path, FILE_SCRIPT)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                            mini_batch_size=4)
    files = Dataset.File.from_files(storage.url("in", "docs") + "/",
                                    storage_options=storage.storage_options)
    step = ParallelRunStep(name="scenario-files", parallel_run_config=cfg,
                           inputs=[files.as_named_input("docs")], output=storage.url("out"),
                           output_storage_options=storage.storage_options)
    result = step.run(client=client, progress=False)

    assert result.status == "Completed"
    # each result is a JSON text (quotes, spaces): read the values back, not the raw lines
    values = JobResult.load(storage.url("out"), storage.storage_options).read_output(
        storage.storage_options)[0].tolist()
    seen = [json.loads(value) for value in values]
    assert [s["text"] for s in seen] == names            # every file once, in path order
    assert all(s["exists"] for s in seen)
    assert [s["tail"] for s in seen] == names            # <input name>/<path below the root>
    paths = [s["path"] for s in seen]
    if storage.name == "local":                           # local files are used in place
        assert paths == [storage.path("in", *n.split("/")) for n in names]
    else:                                                 # downloads are removed afterwards
        assert [p for p in paths if os.path.exists(p)] == []


def test_as_uri_passes_urls_instead_of_downloading(storage, tmp_path, write_script, client):
    names = _upload_files(storage)
    body = """
def run(mini_batch):
    return [path for path in mini_batch]
"""
    source = write_script(tmp_path, body)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                            mini_batch_size=10)
    files = Dataset.File.from_files(storage.url("in", "docs") + "/",
                                    storage_options=storage.storage_options).as_uri()
    step = ParallelRunStep(name="scenario-uri", parallel_run_config=cfg, inputs=[files],
                           output=storage.url("out"),
                           output_storage_options=storage.storage_options)
    step.run(client=client, progress=False)

    lines = storage.fs.cat_file(storage.path("out", "parallel_run_step.txt")).decode()
    assert lines.splitlines() == [storage.url("in", *n.split("/")) for n in names]


def test_a_side_input_reaches_run_as_a_local_file(storage, tmp_path, write_script, client):
    _upload_table(storage, "in")
    storage.fs.makedirs(storage.path("ref"), exist_ok=True)
    storage.fs.pipe_file(storage.path("ref", "labels.txt"), b"alpha\nbeta\n")
    body = """
import argparse, os
def init():
    global labels, path
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels")
    path = parser.parse_known_args()[0].labels
    with open(path) as handle:
        labels = handle.read().split()
def run(mini_batch):
    return [f"{i},{labels[i % 2]},{os.path.isabs(path)}" for i in mini_batch["id"]]
"""
    source = write_script(tmp_path, body)
    cfg = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                            mini_batch_size="1000 rows")
    labels = Dataset.File.from_files(storage.url("ref", "labels.txt"),
                                     storage_options=storage.storage_options)
    table = Dataset.Tabular.from_parquet_files(storage.url("in") + "/",
                                               storage_options=storage.storage_options)
    step = ParallelRunStep(name="scenario-side", parallel_run_config=cfg, inputs=[table],
                           side_inputs=[labels.as_named_input("labels")],
                           arguments=["--labels", labels], output=storage.url("out"),
                           output_storage_options=storage.storage_options)
    result = step.run(client=client, progress=False)

    assert result.status == "Completed"
    lines = storage.fs.cat_file(storage.path("out", "parallel_run_step.txt")).decode()
    assert lines.splitlines() == [f"{i},{['alpha', 'beta'][i % 2]},True"
                                  for i in range(FILES * ROWS_PER_FILE)]
