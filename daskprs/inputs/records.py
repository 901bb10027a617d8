"""Where the rows of a delimited file start: one quote-aware pass over its bytes.

Planning cuts delimited files only where a row starts, so a quoted field that holds a line
end stays in one mini-batch. The rules are those of pandas' C parser, which reads every
mini-batch:

- ``\\n``, ``\\r\\n`` and a lone ``\\r`` end a row, except inside quotes;
- ``"`` opens a quoted field only at the start of a field (after the separator, a line end,
  or at the start of the file, past a UTF-8 byte-order mark); elsewhere it is data;
- inside quotes, ``""`` is one quote and the next single ``"`` closes the field;
- a line of nothing but spaces and tabs (other than the separator) is no row.

Cost: numpy over chunks of 16 MiB (about 1 s per GB on local disk). When every quote that
opens a field sits at a field start (any file a CSV writer wrote), the quote state is the
parity of the quote count, computed vectorized; a chunk with a quote inside an unquoted
field is walked quote by quote instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

CHUNK_BYTES = 16 * 1024 * 1024
_QUOTE, _LF, _CR, _SPACE, _TAB = 0x22, 0x0A, 0x0D, 0x20, 0x09
_BOM = b"\xef\xbb\xbf"


def row_starts(handle: BinaryIO, separator: str, chunk_bytes: int = CHUNK_BYTES
               ) -> Iterator[np.ndarray]:
    """Yield the byte offsets at which rows start, in order, one array per chunk read.

    A header is a row like any other (the first). Blank lines are no rows.

    Parameters
    ----------
    handle
        The file, open for binary reading at its start (not decompressing: offsets are
        those of the bytes read).
    separator
        The field separator the file is parsed with.
    chunk_bytes
        How much is read at a time.
    """
    scan = _Scan(separator)
    position = 0
    while chunk := handle.read(max(chunk_bytes, len(_BOM))):
        starts = scan.feed(chunk, position)
        position += len(chunk)
        if len(starts):
            yield starts
    last = scan.finish()
    if last is not None:
        yield np.array([last], dtype=np.int64)


class _Scan:
    """The state carried from one chunk to the next."""

    def __init__(self, separator: str) -> None:
        sep = separator.encode("utf-8")[-1] if separator else _LF
        self.field_start = np.array(sorted({_LF, _CR, sep}), dtype=np.uint8)
        self.blanks = np.array(sorted({_SPACE, _TAB} - {sep}), dtype=np.uint8)
        self.data = re.compile(b"[^" + b"".join(re.escape(bytes([b])) for b in self.blanks)
                               + b"]")
        self.inside = False     # within a quoted field at the end of the last chunk
        self.last_close = -2    # file offset of the last quote that closed a field
        self.prev = _LF         # the byte before the chunk (a line end at the file's start)
        self.origin = 0         # where the first field starts (3 after a byte-order mark)
        self.row_start = 0      # file offset where the row being read started
        self.row_blank = True   # that row holds only blanks so far

    def feed(self, chunk: bytes, base: int) -> np.ndarray:
        """The offsets of the rows that start in ``chunk`` (at file offset ``base``) or
        before it and end in it."""
        data = np.frombuffer(chunk, dtype=np.uint8)
        if base == 0 and chunk.startswith(_BOM):
            self.origin = len(_BOM)  # pandas drops it: blank, and a field starts after it
        skip = max(self.origin - base, 0)
        inside = self.inside
        toggles = self._toggles(data, chunk, base)
        line_end = data == _LF
        if b"\r" in chunk:
            line_end |= data == _CR
        ends = np.flatnonzero(line_end)
        if len(toggles) or inside:
            flips = np.searchsorted(toggles, ends)  # quotes before each line end
            ends = ends[(flips + inside) % 2 == 0]
        self.prev = int(data[-1])
        if not len(ends):
            self.row_blank = self.row_blank and self._blank(chunk, skip, len(chunk))
            return ends.astype(np.int64)
        firsts = ends[:-1] + 1  # local starts of the rows after the first
        blank = np.empty(len(ends), dtype=bool)
        blank[0] = self.row_blank and self._blank(chunk, min(skip, int(ends[0])),
                                                  int(ends[0]))
        lengths = ends[1:] - firsts
        blank[1:] = lengths == 0
        leading = np.zeros(len(firsts), dtype=bool)
        nonempty = lengths > 0
        leading[nonempty] = np.isin(data[firsts[nonempty]], self.blanks)
        for index in np.flatnonzero(leading).tolist():  # rows starting with a blank: rare
            blank[index + 1] = self._blank(chunk, int(firsts[index]), int(ends[index + 1]))
        starts = np.concatenate([[self.row_start], firsts.astype(np.int64) + base])
        self.row_start = base + int(ends[-1]) + 1
        self.row_blank = self._blank(chunk, int(ends[-1]) + 1, len(chunk))
        return starts[~blank]

    def finish(self) -> int | None:
        """The start of the last row, if the file does not end with a line end."""
        return None if self.row_blank else self.row_start

    def _blank(self, chunk: bytes, start: int, stop: int) -> bool:
        return self.data.search(chunk, start, stop) is None

    def _toggles(self, data: np.ndarray, chunk: bytes, base: int) -> np.ndarray:
        """Local offsets of the quotes that open or close a quoted field; updates the
        state to the chunk's end."""
        if b'"' not in chunk:
            return np.zeros(0, dtype=np.int64)
        quotes = np.flatnonzero(data == _QUOTE)
        opening = (np.arange(len(quotes)) & 1) == int(self.inside)
        openers = quotes[opening]
        before = np.where(openers > 0, data[openers - 1], self.prev)
        after_close = (before == _QUOTE) & ((openers > 0) | (base - 1 == self.last_close))
        valid = (np.isin(before, self.field_start) | after_close
                 | (openers + base == self.origin))
        if not valid.all():
            return self._walk(quotes, chunk, base)
        closers = quotes[~opening]
        if len(closers):
            self.last_close = base + int(closers[-1])
        self.inside = bool((len(quotes) + self.inside) % 2)
        return quotes

    def _walk(self, quotes: np.ndarray, chunk: bytes, base: int) -> np.ndarray:
        """Quote by quote, for a chunk with a quote inside an unquoted field (data)."""
        toggles = []
        field_start = set(self.field_start.tolist())
        for local in quotes.tolist():
            offset = base + local
            if self.inside:
                self.inside, self.last_close = False, offset
                toggles.append(local)
                continue
            before = chunk[local - 1] if local else self.prev
            if (before in field_start or offset == self.origin
                    or (before == _QUOTE and offset - 1 == self.last_close)):
                self.inside = True
                toggles.append(local)
        return np.array(toggles, dtype=np.int64)
