"""The planner's output: mini-batch descriptors, small and picklable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FileSource:
    """How a worker gets the files of one file input.

    Parameters
    ----------
    storage_options
        fsspec options of the input.
    mode
        ``download`` (remote files copied to a local folder before ``run()``) or ``uri``.
    """

    storage_options: dict[str, Any] = field(default_factory=dict)
    mode: str = "download"


@dataclass(frozen=True)
class MiniBatch:
    """One planned mini-batch; what a worker needs to read it and what records name it.

    Parameters
    ----------
    index
        Global position in the job (inputs in order, then ordinals).
    id
        ``<input name>-<ordinal>``, stable across runs of the same inputs.
    input_name
        The input it belongs to.
    source
        How to read it (a :class:`TabularSource`, a :class:`KeyedSource` for a tabular
        mini-batch of one partition key value, or None for file inputs).
    path
        The file it reads (tabular files), else None.
    start, stop
        Row range (Parquet, pandas) or byte range (delimited) within ``path``.
    first_row
        Row number (from 0 within the file) of the first item, when known.
    items
        Planned item count, when known before reading.
    paths
        File inputs: the files of the mini-batch.
    relatives
        File inputs: each file's path below its input root (downloads keep it).
    partition_key_value
        The partition key values this mini-batch holds, when partitioned by key.
    payload
        An in-memory piece of a pandas input.
    labels
        ``(first_item, last_item)`` when they cannot be derived from the fields above
        (a mini-batch of one partition key value that spans files).
    """

    index: int
    id: str
    input_name: str
    source: Any = None
    path: str | None = None
    start: int = 0
    stop: int = 0
    first_row: int | None = None
    items: int | None = None
    paths: tuple[str, ...] = ()
    relatives: tuple[str, ...] = ()
    partition_key_value: dict[str, Any] | None = None
    payload: Any = field(default=None, repr=False, compare=False)
    labels: tuple[str, str] | None = None

    def item_labels(self, items: int | None = None) -> tuple[str, str]:
        """``(first_item, last_item)`` as ``mini_batches.csv`` writes them."""
        if self.labels is not None:
            return self.labels
        if self.paths:
            return self.paths[0], self.paths[-1]
        where = self.path or self.input_name
        count = self.items if self.items is not None else items
        if self.first_row is None:
            return f"{where}@{self.start}", f"{where}@{self.stop}"
        last = self.first_row + max((count or 0) - 1, 0)
        return f"{where}#{self.first_row}", f"{where}#{last}"


@dataclass(frozen=True)
class TabularSource:
    """How a worker reads the mini-batches of one tabular input.

    Parameters
    ----------
    format
        ``"parquet"``, ``"delimited"``, ``"pandas"`` or ``"dask"``.
    storage_options
        fsspec options of the input's files.
    separator, header, columns, dtypes
        Delimited files: how to parse them; ``dtypes`` were inferred once at planning.
    """

    format: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    separator: str = ","
    header: bool = True
    columns: tuple[Any, ...] = ()
    dtypes: dict[Any, Any] | None = None


@dataclass(frozen=True)
class KeyedSource:
    """How a worker reads the rows of one partition key value (``partition_keys``).

    Parameters
    ----------
    base
        How the input's files are read.
    pieces
        ``(file, start, stop)``: row ranges (from 0 within each file) that hold every row
        of the key value, in file order; rows of other values inside a range are dropped.
    columns
        The key columns, as the input names them.
    values
        One value per key column; None stands for a missing value (NaN, None, NaT).
    """

    base: TabularSource
    pieces: tuple[tuple[str, int, int], ...]
    columns: tuple[Any, ...]
    values: tuple[Any, ...]

    format = "keyed"

    @property
    def storage_options(self) -> dict[str, Any]:
        """The input's fsspec options."""
        return self.base.storage_options


@dataclass
class Plan:
    """Every mini-batch of a job, with what the job needs to know about its inputs.

    Parameters
    ----------
    kind
        ``"tabular"`` or ``"file"``.
    mini_batches
        In job order: a list, or a sequence that builds descriptors on demand (file
        inputs).
    meta
        Tabular: an empty DataFrame with the columns and dtypes every mini-batch has.
    listing
        ``(url, size, version)`` of every input file, for the fingerprint (tabular inputs).
    digest
        A digest of the listing, when the planner computed it while listing (file inputs).
    files
        Input files, when the listing itself is not kept.
    """

    kind: str
    mini_batches: Sequence[MiniBatch]
    meta: Any = None
    listing: list[tuple[str, int, str]] = field(default_factory=list)
    digest: str | None = None
    files: int | None = None

    @property
    def total_items(self) -> int | None:
        """Items over all mini-batches, when every count is known before reading."""
        if self.kind == "file" and self.files is not None:
            return self.files
        counts = [mb.items for mb in self.mini_batches]
        return None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]

    @property
    def file_count(self) -> int:
        """How many input files the plan covers."""
        return self.files if self.files is not None else len(self.listing)

    def listing_digest(self) -> str:
        """sha256 of the input listing (for the job fingerprint)."""
        if self.digest is not None:
            return self.digest
        from daskprs.inputs.listing import listing_digest

        return listing_digest(self.listing)


def add_pieces(batches: list[MiniBatch], dataset: Any, pieces: list[dict[str, Any]]) -> None:
    """Append an input's planned pieces as mini-batches ``<input name>-<ordinal>``; a piece
    known to hold no items is dropped (a mini-batch is never planned empty).

    Raises
    ------
    InputError
        When the input has no rows.
    """
    from daskprs.errors import InputError

    pieces = [piece for piece in pieces if piece.get("items") != 0]  # never an empty one
    if not pieces:
        raise InputError(f"input {dataset.name!r} ({dataset.describe()}) has no rows. "
                         f"Point it at data that has rows.")
    for ordinal, piece in enumerate(pieces):
        batches.append(MiniBatch(index=len(batches), id=f"{dataset.name}-{ordinal}",
                                 input_name=str(dataset.name), **piece))
