"""Kills while an output is published, and reuse of an output changed behind the job's back
(issue 17, items 2, 3 and 5), with real CLI processes, local disk and a moto S3 server.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import yaml

from daskprs import JobResult
from tests.storage_servers import new_bucket

VERSIONED = """
import pandas as pd

def run(mini_batch):
    return pd.DataFrame({{"id": mini_batch["id"], "version": "{version}"}})
"""
FAILS = """
def run(mini_batch):
    raise RuntimeError("this version is broken")
"""


def job(tmp_path: Path, make_parquet: Any, write_script: Any, output: str,
        options: dict[str, Any] | None = None, action: str = "parquet") -> Path:
    """600 rows in 300 mini-batches (300 Parquet parts), on an embedded cluster."""
    make_parquet(tmp_path / "data", files=1, rows_per_file=600, row_group_size=600)
    source = write_script(tmp_path, VERSIONED.format(version="v1"))
    document = {"name": "published", "inputs": [{"name": "input0", "type": "tabular",
                                                 "format": "parquet",
                                                 "path": str(tmp_path / "data")}],
                "output": {"path": output, "storage_options": options or {}},
                "parallel_run_config": {"source_directory": str(source),
                                        "entry_script": "score.py", "mini_batch_size": "2 rows",
                                        "output_action": action, "compute_target": "local",
                                        "process_count_per_node": 2}}
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    return config


def versions(frame: pd.DataFrame) -> set[str]:
    return set(frame["version"])


def assert_one_version(frame: pd.DataFrame, first: pd.DataFrame, old: bool) -> None:
    """The old output whole (the kill came before the new job result named its parts), or
    the new one whole (it came after): never a mix."""
    if old:
        pd.testing.assert_frame_equal(frame, first)
    else:
        assert versions(frame) == {"v2"} and frame["id"].tolist() == list(range(600))


def kill_while_publishing(cli: Any, config: Path, fs: Any, data: str, *options: str) -> None:
    """Start a job and SIGKILL it (and its cluster) once it has published some, not all,
    of its new Parquet parts."""
    before = set(fs.ls(data, detail=False)) if fs.exists(data) else set()

    def new_parts() -> bool:
        fs.invalidate_cache()
        return bool(set(fs.ls(data, detail=False)) - before) if fs.exists(data) else False

    proc = cli.start(config, *options)
    cli.wait_for(proc, new_parts, "new Parquet parts being published")
    cli.signal(proc, signal.SIGKILL)
    cli.wait_gone(proc)


def test_s3_parquet_output_killed_while_publishing_v2_reads_as_v1_then_v2(
        cli, dask_processes, storage_servers, tmp_path, make_parquet, write_script):
    """Item 2: readers of the job result see the old output or the new one, never a mix
    (moto S3, real ``dask scheduler`` / ``dask worker`` processes)."""
    on_cluster = ("--scheduler", dask_processes.address)
    storage = new_bucket("s3", storage_servers["s3"])
    url = storage.url("out")
    config = job(tmp_path, make_parquet, write_script, url, storage.storage_options)
    code, out, err = cli.run(config, *on_cluster)
    assert code == 0, out + err
    published = JobResult.load(url, storage.storage_options)
    first = published.read_output()
    assert versions(first) == {"v1"} and first["id"].tolist() == list(range(600))

    write_script(tmp_path, VERSIONED.format(version="v2"))
    kill_while_publishing(cli, config, storage.fs, storage.path("out", "data"), *on_cluster)

    after_kill = JobResult.load(url, storage.storage_options)
    assert after_kill.status == "Completed"
    assert_one_version(after_kill.read_output(), first,
                       old=after_kill.run_id == published.run_id)
    code, out, err = cli.run(config, *on_cluster)
    assert code == 0, out + err
    final = JobResult.load(url, storage.storage_options).read_output()
    assert versions(final) == {"v2"} and final["id"].tolist() == list(range(600))
    fs = storage.fs
    parts = [p for p in fs.ls(storage.path("out", "data"), detail=False) if "part-" in p]
    assert len(parts) == 300  # v1's and the killed run's parts are gone


def test_local_parquet_killed_while_publishing_then_a_failing_run_keeps_the_old_output(
        cli, tmp_path, make_parquet, write_script):
    """Item 3: no kill, and no failing run after it, ever leaves the output without its
    previous version."""
    out = tmp_path / "out"
    config = job(tmp_path, make_parquet, write_script, str(out))
    code, stdout, err = cli.run(config)
    assert code == 0, stdout + err
    first = JobResult.load(str(out)).read_output()
    manifest = JobResult.load(str(out)).output["manifest"]

    write_script(tmp_path, VERSIONED.format(version="v2"))
    kill_while_publishing(cli, config, fsspec.filesystem("file"), str(out / "data"))
    write_script(tmp_path, FAILS)
    code, stdout, err = cli.run(config)

    assert code == 1, stdout + err
    # data/ holds exactly one whole version: one manifest, exactly the parts it names
    (kept_manifest,) = (out / "data").glob("_manifest-*.json")
    listed = yaml.safe_load(kept_manifest.read_text(encoding="utf-8"))
    on_disk = sorted(p.name for p in (out / "data").iterdir())
    assert on_disk == sorted([*listed["parts"], kept_manifest.name])
    kept = pd.read_parquet([out / "data" / name for name in listed["parts"]])
    assert_one_version(kept, first, old=kept_manifest.name == Path(manifest).name)


def test_a_completed_job_whose_output_was_overwritten_is_run_again_not_reused(
        cli, tmp_path, make_parquet, write_script):
    """Item 5, append_row: garbage in the output file is noticed."""
    out = tmp_path / "out"
    config = job(tmp_path, make_parquet, write_script, str(out), action="append_row")
    assert cli.run(config)[0] == 0
    good = (out / "parallel_run_step.txt").read_text(encoding="utf-8")
    (out / "parallel_run_step.txt").write_text("garbage\n", encoding="utf-8")

    code, stdout, err = cli.run(config)

    assert code == 0, stdout + err
    assert "(reused)" not in stdout
    assert "was changed after it was written" in err
    assert (out / "parallel_run_step.txt").read_text(encoding="utf-8") == good


def test_a_completed_job_whose_parquet_part_was_deleted_is_run_again_not_reused(
        cli, tmp_path, make_parquet, write_script):
    """Item 5, Parquet: a missing part is noticed."""
    out = tmp_path / "out"
    config = job(tmp_path, make_parquet, write_script, str(out))
    assert cli.run(config)[0] == 0
    first = JobResult.load(str(out)).read_output()
    next(p for p in (out / "data").iterdir() if p.name.startswith("part-")).unlink()

    code, stdout, err = cli.run(config)

    assert code == 0, stdout + err
    assert "(reused)" not in stdout
    pd.testing.assert_frame_equal(JobResult.load(str(out)).read_output(), first)


def test_a_job_on_object_storage_leaves_no_temporary_folder_on_the_client(
        client, storage_servers, tmp_path, make_parquet, write_script):
    """Item 12, the client's side (the workers' side: tests/integration/test_runner.py)."""
    import tempfile

    from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

    storage = new_bucket("s3", storage_servers["s3"])
    make_parquet(tmp_path / "data", files=1, rows_per_file=100, row_group_size=100)
    source = write_script(tmp_path, VERSIONED.format(version="v1"))
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size="10 rows")
    step = ParallelRunStep(name="temporary", parallel_run_config=config,
                           inputs=[Dataset.Tabular.from_parquet_files(str(tmp_path / "data"))],
                           output=storage.url("out"),
                           output_storage_options=storage.storage_options)
    before = set(Path(tempfile.gettempdir()).glob("daskprs-*"))

    result = step.run(client=client, progress=False)

    assert result.status == "Completed", result.summary()
    assert storage.fs.exists(storage.path("out", "logs", "job_result.txt"))
    # this job's folders only: another pytest worker's job may have its own open
    left = {path for path in set(Path(tempfile.gettempdir()).glob("daskprs-*")) - before
            if result.run_id in path.name}
    assert left == set(), sorted(map(str, left))
