"""File inputs: ``mini_batch_size`` files per mini-batch, in sorted path order.

The plan of a file input is its :class:`~daskprs.inputs.listing.FileList` and the batch
size: mini-batch descriptors are made when a task is built (:class:`FileBatches`), so a
million files are planned in arrays, not a hundred thousand objects.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import overload

from daskprs.datasets import FileDataset
from daskprs.errors import InputError
from daskprs.inputs.listing import FileList, list_files
from daskprs.inputs.partitions import PartitionKeys, plan_keyed_files
from daskprs.inputs.plan import FileSource, MiniBatch, Plan
from daskprs.sizes import MiniBatchSize


class FileBatches(Sequence[MiniBatch]):
    """The mini-batches of file inputs, built on demand from their listings.

    Parameters
    ----------
    inputs
        ``(input name, source, files)`` in input order.
    count
        Files per mini-batch.
    """

    def __init__(self, inputs: list[tuple[str, FileSource, FileList]], count: int) -> None:
        self.inputs = inputs
        self.count = count
        self.starts: list[int] = []  # global index of each input's first mini-batch
        total = 0
        for _, _, files in inputs:
            self.starts.append(total)
            total += -(-len(files) // count)
        self.total = total

    def __len__(self) -> int:
        return self.total

    @overload
    def __getitem__(self, index: int) -> MiniBatch: ...

    @overload
    def __getitem__(self, index: slice) -> list[MiniBatch]: ...

    def __getitem__(self, index: int | slice) -> MiniBatch | list[MiniBatch]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.total))]
        if index < 0:
            index += self.total
        if not 0 <= index < self.total:
            raise IndexError(index)
        position = bisect.bisect_right(self.starts, index) - 1
        name, source, files = self.inputs[position]
        ordinal = index - self.starts[position]
        first = ordinal * self.count
        stop = min(first + self.count, len(files))
        return MiniBatch(index=index, id=f"{name}-{ordinal}", input_name=name, source=source,
                         paths=tuple(files.urls(first, stop)),
                         relatives=tuple(files.relatives(first, stop)),
                         items=stop - first, first_row=first)

    def __iter__(self) -> Iterator[MiniBatch]:
        for index in range(self.total):
            yield self[index]

    @property
    def files(self) -> int:
        """Files over all inputs."""
        return sum(len(files) for _, _, files in self.inputs)


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
    inputs: list[tuple[str, FileSource, FileList]] = []
    for dataset in datasets:
        files = list_files(dataset.paths, dataset.storage_options, None,
                           f"input {dataset.name!r}")
        if not len(files):
            raise InputError(f"input {dataset.name!r} ({dataset.describe()}) has no files.")
        inputs.append((str(dataset.name), FileSource(dataset.storage_options, dataset.mode),
                       files))
    batches = FileBatches(inputs, size.count)
    return Plan(kind="file", mini_batches=batches,
                digest="".join(files.digest for _, _, files in inputs),
                files=batches.files)
