"""Cost per mini-batch on object storage: the commit protocol's requests, counted.

A fault-free job of 2,000 file mini-batches writes its output to a moto S3 server whose
every request is counted (a WSGI wrapper around moto's own app, served on 127.0.0.1 port
0 exactly as ``ThreadedMotoServer`` serves it). The input files are local, so every
request counted is daskprs' own: probes, lock, state, commits, logs, assembly, clean-up.
"""

from __future__ import annotations

import collections
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from daskprs import Dataset, ParallelRunConfig, ParallelRunStep

NOOP = "def run(mini_batch):\n    return mini_batch\n"


class CountingApp:
    """A WSGI app that counts the requests it passes to moto, by method."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self.lock:
            self.counts[environ["REQUEST_METHOD"]] += 1
        return self.app(environ, start_response)

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


@pytest.fixture
def counted_s3() -> Iterator[tuple[CountingApp, dict[str, Any]]]:
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    options = {"key": "testing", "secret": "testing",
               "endpoint_url": f"http://127.0.0.1:{server.server_port}"}
    try:
        yield app, options
    finally:
        server.shutdown()
        thread.join()


def test_a_fault_free_job_of_2000_file_mini_batches_makes_at_most_1_5_s3_requests_each(
        counted_s3, client, tmp_path: Path, write_script: Any) -> None:
    app, options = counted_s3
    bucket = f"t{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3", skip_instance_cache=True, **options).mkdir(bucket)
    folder = tmp_path / "files"
    folder.mkdir()
    names = [str(folder / f"f{number:05d}.txt") for number in range(2_000)]
    for name in names:
        Path(name).touch()
    source = write_script(tmp_path, NOOP)
    config = ParallelRunConfig(source_directory=str(source), entry_script="score.py",
                               mini_batch_size=1)
    step = ParallelRunStep(name="counted", parallel_run_config=config,
                           inputs=[Dataset.File.from_files(str(folder))],
                           output=f"s3://{bucket}/out", output_storage_options=options,
                           allow_reuse=False)
    before = app.total()

    result = step.run(client=client, progress=False)

    requests = app.total() - before
    assert result.status == "Completed", result.summary()
    assert result.mini_batches["total"] == 2_000
    assert result.read_output(storage_options=options)[0].tolist() == names
    per_mini_batch = requests / 2_000
    print(f"{requests} S3 requests for 2,000 mini-batches: {dict(app.counts)}")
    assert per_mini_batch <= 1.5, (f"{requests} S3 requests for 2,000 mini-batches "
                                   f"({per_mini_batch:.2f} each): {dict(app.counts)}")
