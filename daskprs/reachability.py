"""Check, before work starts, that every worker can reach the output and the inputs.

Reachability is tested, not inferred from addresses: the client writes a probe under
``_daskprs/`` that each worker must read, and each worker lists every input root.
"""

from __future__ import annotations

import uuid
from typing import Any

from daskprs.commit import StateStore
from daskprs.errors import ClusterError
from daskprs.storage import Location, write_atomic
from daskprs.storage.location import url_to_fs

_FIX = ("Use object storage (s3://..., az://...) or a filesystem every worker mounts at the "
        "same path")


def check_reachable(client: Any, output: Location, roots: list[tuple[str, dict[str, Any]]]
                    ) -> None:
    """Raise :class:`ClusterError` naming the worker, the location and the fix when some
    worker cannot read the output or list an input."""
    state = StateStore(output)
    probe = state.path(f"probe-{uuid.uuid4().hex[:8]}.txt")
    token = uuid.uuid4().hex
    write_atomic(state.fs, probe, token.encode())
    try:
        answers = client.run(_probe_worker, output.url, output.storage_options, probe, token,
                             roots)
    finally:
        state.fs.rm_file(probe)
    for worker, problem in sorted(answers.items()):
        if problem:
            raise ClusterError(f"worker {worker} cannot reach {problem}. {_FIX}.")


def _probe_worker(output_url: str, output_options: dict[str, Any], probe: str, token: str,
                  roots: list[tuple[str, dict[str, Any]]]) -> str | None:
    """On a worker: read the probe and list each input root; describe the first failure."""
    try:
        data = Location(output_url, output_options).fs.cat_file(probe)
    except Exception as exc:
        return f"the output {output_url} ({type(exc).__name__}: {exc})"
    if data.decode() != token:
        return f"the output {output_url} (it sees another folder at that path)"
    for url, options in roots:
        try:
            fs, path = url_to_fs(url, **options)
            if not fs.exists(path):
                return f"the input {url} (it does not exist there)"
        except Exception as exc:
            return f"the input {url} ({type(exc).__name__}: {exc})"
    return None
