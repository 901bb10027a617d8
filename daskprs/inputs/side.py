"""Side inputs: reference data that is not split; it must exist before any cluster starts."""

from __future__ import annotations

from typing import Any

from daskprs.inputs.listing import list_input


def list_side_inputs(datasets: list[Any]) -> list[tuple[str, int, str]]:
    """List every side input; return ``(url, size, version)`` of its files (for the
    job fingerprint).

    Raises
    ------
    InputError
        When a side input's path matches nothing, or names files that cannot be read.
    """
    listing: list[tuple[str, int, str]] = []
    for dataset in datasets:
        files = list_input(dataset.paths, dataset.storage_options, None,
                           f"side input {dataset.name!r}")
        listing.extend((f.url, f.size, f.version) for f in files)
    return listing
