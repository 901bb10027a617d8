"""Real storage servers on 127.0.0.1 for the tests: moto's S3 server and Azurite.

Both listen on a free port chosen by the server (port 0) and are stopped at the end of
the session. Azurite comes from npm (``npm install`` in the repository, done by
``scripts/test.sh``); without it the Azure tests fail with the install command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

REPO = Path(__file__).resolve().parent.parent
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


@dataclass
class Storage:
    """A place to put test inputs and outputs: a base URL and fsspec options."""

    name: str
    base: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """A fresh (uncached listing) filesystem for assertions."""
        fs = fsspec.core.url_to_fs(self.base, **self.storage_options)[0]
        fs.invalidate_cache()
        return fs

    def url(self, *parts: str) -> str:
        """A URL below the base."""
        return "/".join([self.base.rstrip("/"), *parts])

    def path(self, *parts: str) -> str:
        """The filesystem path (no protocol) of a URL below the base."""
        return fsspec.core.url_to_fs(self.url(*parts), **self.storage_options)[1]


def start_moto() -> tuple[Any, str]:
    """Start moto's S3 server on a free port; return it and its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def azurite_command() -> str:
    """The azurite-blob executable, or an explanation of how to install it."""
    found = os.environ.get("AZURITE_BLOB") or shutil.which("azurite-blob")
    local = REPO / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    if found:
        return found
    raise RuntimeError("azurite is not installed: run 'npm install' in the repository "
                       "(scripts/test.sh does) or set AZURITE_BLOB to azurite-blob's path")


@dataclass
class Azurite:
    """A running Azurite blob service."""

    process: subprocess.Popen[str]
    port: int

    @property
    def connection_string(self) -> str:
        """The well-known development account, at this server's port."""
        return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                f"AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;")

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_azurite() -> Azurite:
    """Start Azurite's blob service on a free loopback port, in memory."""
    process = subprocess.Popen(
        [azurite_command(), "--blobHost", "127.0.0.1", "--blobPort", "0",
         "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry", "--loose"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        match = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
        if match:
            # keep reading its output, so that a full pipe never blocks the server
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return Azurite(process, int(match.group(1)))
    raise RuntimeError(f"azurite did not start: {''.join(seen)}")


def new_bucket(kind: str, endpoint: str | Azurite) -> Storage:
    """A fresh, empty bucket (S3) or container (Azure)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    if kind == "s3":
        options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
        fsspec.filesystem("s3", **options).mkdir(name)
        return Storage("s3", f"s3://{name}", options)
    assert isinstance(endpoint, Azurite)
    options = {"connection_string": endpoint.connection_string}
    fsspec.filesystem("az", **options).mkdir(name)
    return Storage("azure", f"az://{name}", options)


def session_servers() -> Iterator[dict[str, Any]]:
    """Start both servers for a session (a generator for a pytest fixture)."""
    moto_server, endpoint = start_moto()
    azurite = start_azurite()
    try:
        yield {"s3": endpoint, "azure": azurite}
    finally:
        azurite.stop()
        moto_server.stop()
