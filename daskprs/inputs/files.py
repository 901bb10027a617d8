"""File inputs: ``mini_batch_size`` files per mini-batch, in sorted path order."""

from __future__ import annotations

from daskprs.datasets import FileDataset
from daskprs.errors import InputError
from daskprs.inputs.listing import list_input
from daskprs.inputs.partitions import PartitionKeys, plan_keyed_files
from daskprs.inputs.plan import FileSource, MiniBatch, Plan
from daskprs.sizes import MiniBatchSize


def plan_files(datasets: list[FileDataset], size: MiniBatchSize) -> Plan:
    """Plan the mini-batches of file inputs (in input order, ordinals from 0).

    With ``partition_keys`` (``size`` a :class:`PartitionKeys`), one mini-batch per
    distinct combination of the key fields instead.

    Raises
    ------
    InputError
        When an input matches no files, or a file does not match its ``partition_format``.
    """
    if isinstance(size, PartitionKeys):
        return plan_keyed_files(datasets, size)
    batches: list[MiniBatch] = []
    listing: list[tuple[str, int, str]] = []
    for dataset in datasets:
        files = list_input(dataset.paths, dataset.storage_options, None,
                           f"input {dataset.name!r}")
        if not files:
            raise InputError(f"input {dataset.name!r} ({dataset.describe()}) has no files.")
        source = FileSource(dataset.storage_options, dataset.mode)
        for ordinal, start in enumerate(range(0, len(files), size.count)):
            chunk = files[start:start + size.count]
            batches.append(MiniBatch(index=len(batches), id=f"{dataset.name}-{ordinal}",
                                     input_name=str(dataset.name), source=source,
                                     paths=tuple(f.url for f in chunk),
                                     relatives=tuple(f.relative for f in chunk),
                                     items=len(chunk), first_row=start))
        listing.extend((f.url, f.size, f.version) for f in files)
    return Plan(kind="file", mini_batches=batches, listing=listing)
