"""Shared fixtures: one small Dask cluster for the session, data makers, entry scripts.

Every piece of data is generated here; nothing is downloaded.
"""

from __future__ import annotations

import logging
import signal
import textwrap
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

N_WORKERS = 2


@pytest.fixture(scope="session")
def client() -> Iterator[object]:
    """A ``distributed.Client`` on a LocalCluster of 2 single-threaded worker processes."""
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():  # the scheduler's HTTP server may move off port 8787
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    dask_client = Client(cluster)
    try:
        dask_client.wait_for_workers(N_WORKERS, timeout=60)
        yield dask_client
    finally:
        dask_client.close()
        cluster.close()


@pytest.fixture
def cli_state() -> Iterator[None]:
    """The CLI installs signal handlers and a stderr log handler: put them back after."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    logger = logging.getLogger("daskprs")
    before, level = list(logger.handlers), logger.level
    yield
    for number, handler in handlers.items():
        signal.signal(number, handler)
    logger.handlers[:] = before
    logger.setLevel(level)


def make_frame(rows: int, start: int = 0, float_columns: int = 3, seed: int = 0
               ) -> pd.DataFrame:
    """``id`` = ``start .. start + rows - 1`` (int64) and ``f0 .. f<k-1>`` random floats."""
    rng = np.random.default_rng(seed + start)
    data: dict[str, object] = {"id": np.arange(start, start + rows, dtype=np.int64)}
    for column in range(float_columns):
        data[f"f{column}"] = rng.random(rows)
    return pd.DataFrame(data)


def _rows_list(files: int, rows_per_file: int | Sequence[int]) -> list[int]:
    if isinstance(rows_per_file, int):
        return [rows_per_file] * files
    if len(rows_per_file) != files:
        raise ValueError("rows_per_file must give one count per file")
    return list(rows_per_file)


def write_parquet_files(folder: Path, files: int, rows_per_file: int | Sequence[int],
                 row_group_size: int, float_columns: int = 3) -> list[Path]:
    """Write ``files`` Parquet files ``part-000.parquet`` ...; ids run on across files, so
    sorted path order is id order. ``rows_per_file`` is one count or one per file."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for number, rows in enumerate(_rows_list(files, rows_per_file)):
        frame = make_frame(rows, start, float_columns)
        path = folder / f"part-{number:03d}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                       row_group_size=row_group_size)
        paths.append(path)
        start += rows
    return paths


def write_csv_files(folder: Path, files: int, rows_per_file: int | Sequence[int],
             float_columns: int = 2) -> list[Path]:
    """Write ``files`` CSV files ``part-000.csv`` ... with a header; ids run on across files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for number, rows in enumerate(_rows_list(files, rows_per_file)):
        frame = make_frame(rows, start, float_columns)
        path = folder / f"part-{number:03d}.csv"
        frame.to_csv(path, index=False, float_format="%.5f", lineterminator="\n")
        paths.append(path)
        start += rows
    return paths


def write_entry_script(tmp_path: Path, body: str, name: str = "score.py") -> Path:
    """Write an entry script into ``tmp_path/src`` and return that folder (the
    ``source_directory``)."""
    folder = tmp_path / "src"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def make_parquet() -> Callable[..., list[Path]]:
    """``make_parquet(folder, files, rows_per_file, row_group_size, float_columns=3)``."""
    return write_parquet_files


@pytest.fixture(scope="session")
def make_csv() -> Callable[..., list[Path]]:
    """``make_csv(folder, files, rows_per_file, float_columns=2)``."""
    return write_csv_files


@pytest.fixture(scope="session")
def write_script() -> Callable[..., Path]:
    """``write_script(tmp_path, body, name="score.py") -> source folder``."""
    return write_entry_script


@pytest.fixture(scope="session")
def million_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000,000 rows (``id`` 0..999999, three float columns) in 4 Parquet files whose row
    groups (100,000 rows, ~3 MB) are larger than 1MB, so they are sliced."""
    folder = tmp_path_factory.mktemp("million-parquet")
    write_parquet_files(folder, files=4, rows_per_file=250_000, row_group_size=100_000)
    return folder


@pytest.fixture(scope="session")
def million_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000,000 rows (``id`` 0..999999, two float columns) in 3 CSV files of uneven size."""
    folder = tmp_path_factory.mktemp("million-csv")
    write_csv_files(folder, files=3, rows_per_file=[400_000, 350_000, 250_000])
    return folder


@pytest.fixture(scope="session")
def storage_servers():
    """moto's S3 server and Azurite, on free loopback ports, for the whole session."""
    from tests.storage_servers import session_servers

    yield from session_servers()


@pytest.fixture(params=["local", "s3", "azure"])
def storage(request, tmp_path):
    """A fresh place on local disk, in an S3 bucket and in an Azure container."""
    from tests.storage_servers import Storage, new_bucket

    if request.param == "local":
        return Storage("local", str(tmp_path / "store"))
    servers = request.getfixturevalue("storage_servers")
    return new_bucket(request.param, servers[request.param])
