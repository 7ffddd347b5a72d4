"""Stream a raw log file as batches of valid rows: ``pyarrow.csv`` on blocks, parsed in parallel.

The file (or ``.gz``) is read in blocks of about ``BLOCK_BYTES`` cut at line ends; each block is
parsed by ``pyarrow.csv`` into string columns on a pool of threads (pyarrow releases the GIL), a
few blocks ahead of the one being consumed, so memory is bounded by a few blocks whatever the
file's size. Each block is parsed single-threaded so that pyarrow reports the physical row number
of every row it rejects; with the block's first line number that gives exact line numbers.

Skipped lines are counted per reason with the first few line numbers (1-based, header included):
``wrong_column_count`` (pyarrow's rejected rows), ``empty_line`` (blank or whitespace-only lines),
and whatever the converter's ``parse`` rejects. Line breaks are ``\\n``, ``\\r\\n`` or a lone
``\\r``, as in both pyarrow and Python's universal newlines.
"""

from __future__ import annotations

import gzip
import io
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from crossadapt.data.converters.base import EMPTY_LINE, WRONG_COLUMN_COUNT, Layout, RawConverter
from crossadapt.errors import DataError

#: Bytes read and parsed at a time (about 17 k Criteo lines). On a 1 M-line Criteo TSV, 8 MiB blocks
#: peaked at 470 MB RSS, 4 MiB at 375 MB and 2 MiB at 306 MB, for about the same CPU time.
BLOCK_BYTES = 4 << 20
#: Line numbers kept per skip reason.
MAX_EXAMPLES = 5


class SkipLog:
    """Counts skipped lines per reason and keeps the first few line numbers of each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[int]] = {}

    def add(self, reason: str, lines: np.ndarray) -> None:
        """Lines (ascending, 1-based) skipped for ``reason``."""
        if not len(lines):
            return
        self.counts[reason] = self.counts.get(reason, 0) + len(lines)
        ex = self.examples.setdefault(reason, [])
        ex.extend(int(x) for x in lines[: MAX_EXAMPLES - len(ex)])


@dataclass
class ValidBatch:
    """Valid rows of one block, in file order (see :class:`~.base.ParsedBatch`)."""

    label: np.ndarray
    tokens: list[pa.Array]
    ts: np.ndarray | None = None
    group: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.label)


def open_binary(path: Path) -> BinaryIO:
    """The raw bytes of ``path``; ``.gz`` is decompressed (raw logs are often shipped gzipped)."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def detect(converter: RawConverter, path: Path, delimiter: str | None) -> tuple[Layout, int]:
    """Layout from the first non-blank line, and that line's number if it is a header (else 0)."""
    try:
        # newline="": lines end at \n, \r\n or a lone \r, as for pyarrow; odd bytes become U+FFFD.
        with io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="replace", newline="") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    layout = converter.detect_layout(line, delimiter, path)
                    return layout, (lineno if layout.has_header else 0)
    except (OSError, EOFError) as e:  # unreadable or corrupt gzip
        raise DataError(f"{path}: cannot read ({e})") from e
    raise DataError(f"{path}: file is empty (no non-blank line)")


def _line_end(buf: bytes) -> int:
    """Length of the longest prefix of ``buf`` that ends with a complete line break (0 if none)."""
    n = buf.rfind(b"\n") + 1
    r = buf.rfind(b"\r")
    if r >= n and r + 1 < len(buf):  # a lone \r (the byte after it is known and not \n)
        n = r + 1
    return n


def count_lines(block: bytes) -> int:
    """Lines in ``block`` (an unterminated last line counts)."""
    n = block.count(b"\n")
    if b"\r" in block:  # rare: one more pass for lone \r breaks (a \r\n is one break)
        n += block.count(b"\r") - block.count(b"\r\n")
    return n + (1 if block and block[-1:] not in (b"\n", b"\r") else 0)


def _blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """``(first line number, bytes)`` of consecutive blocks, each cut after a line break."""
    line, carry = 1, b""
    try:
        with open_binary(path) as f:
            while True:
                data = f.read(block_bytes)
                buf = carry + data
                if not data:
                    if buf:
                        yield line, buf
                    return
                cut = _line_end(buf)
                if cut == 0:  # one line longer than a block: read on
                    carry = buf
                    continue
                block, carry = buf[:cut], buf[cut:]
                yield line, block
                line += count_lines(block)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from e


@dataclass
class _Parsed:
    """A block as pyarrow parsed it: string columns of the rows it kept, and the rows it rejected."""

    first_line: int
    block: bytes
    table: pa.Table
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (1-based row in block, text)


def _parse_block(path: Path, first_line: int, block: bytes, layout: Layout) -> _Parsed:
    names = [f"c{i}" for i in range(layout.num_columns)]
    rejected: list[tuple[int, str]] = []

    def on_invalid(row: csv.InvalidRow) -> str:
        rejected.append((row.number, row.text))
        return "skip"

    def read(data: bytes) -> pa.Table:
        return csv.read_csv(
            pa.py_buffer(data),
            # One thread per block: then pyarrow reports each rejected row's physical number.
            read_options=csv.ReadOptions(use_threads=False, column_names=names, block_size=max(len(data), 1 << 16) + 1),
            # Columns split on the delimiter alone (unless the layout quotes), as str.split would;
            # blank lines kept so that row numbers are physical line numbers.
            parse_options=csv.ParseOptions(delimiter=layout.delimiter, quote_char=layout.quote_char,
                                           double_quote=bool(layout.quote_char),
                                           escape_char=False, ignore_empty_lines=False, invalid_row_handler=on_invalid),
            convert_options=csv.ConvertOptions(column_types={n: pa.string() for n in names},
                                               strings_can_be_null=False, quoted_strings_can_be_null=False),
        )

    try:
        try:
            table = read(block)
        except pa.ArrowInvalid as e:
            if "utf8" not in str(e).lower():
                raise
            # Odd bytes are at worst one malformed token, not a crash: decode them as U+FFFD.
            rejected.clear()
            table = read(block.decode("utf-8", errors="replace").encode("utf-8"))
    except pa.ArrowException as e:
        raise DataError(f"{path}: cannot parse the lines from line {first_line} on ({e})") from e
    return _Parsed(first_line, block, table, rejected)


def _line_spans(block: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, line break excluded) byte offsets of every line of ``block``."""
    b = np.frombuffer(block, np.uint8)
    nl, cr = b == 10, b == 13
    lone_cr = cr.copy()
    lone_cr[:-1] &= ~nl[1:]
    breaks = np.flatnonzero(nl | lone_cr)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(block)]])
    # a \r\n break: the \r is not part of the line
    ends[:-1] -= (nl[breaks] & (breaks > 0) & cr[np.maximum(breaks - 1, 0)]).astype(np.int64)
    return starts, ends


def _blank_rows(parsed: _Parsed, rows: np.ndarray) -> np.ndarray:
    """Which kept rows are blank lines: pyarrow keeps an empty line (and a whitespace-only line with
    the right number of delimiters) as a row of empty values; a line-by-line reader skips them."""
    first = parsed.table.column(0)
    maybe = np.flatnonzero(np.asarray(pc.or_(pc.equal(pc.utf8_length(first), 0), pc.utf8_is_space(first))))
    blank = np.zeros(len(rows), bool)
    if maybe.size:
        starts, ends = _line_spans(parsed.block)
        for i in maybe:
            k = int(rows[i] - parsed.first_line)  # 0-based line of the block
            blank[i] = not parsed.block[starts[k] : ends[k]].decode("utf-8", errors="replace").strip()
    return blank


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array (a block is parsed as one chunk: no copy then)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


class _Budget:
    """Stops reading after ``max_rows`` valid rows (``None``: the whole file)."""

    def __init__(self, max_rows: int | None) -> None:
        self.left = max_rows

    def cut(self, ok: np.ndarray, lines: np.ndarray) -> tuple[np.ndarray, int | None]:
        """``ok`` limited to the budget, and the last line read (None: the whole block)."""
        if self.left is None:
            return ok, None
        valid = np.flatnonzero(ok)
        if valid.size < self.left:
            self.left -= valid.size
            return ok, None
        last = valid[self.left - 1]
        ok = ok.copy()
        ok[last + 1 :] = False
        self.left = 0
        return ok, int(lines[last])

    @property
    def done(self) -> bool:
        return self.left == 0


def _consume(path: Path, parsed: _Parsed, converter: RawConverter, layout: Layout, header_lineno: int,
             budget: _Budget, skips: SkipLog | None) -> ValidBatch:
    """Valid rows of one parsed block; skipped lines go to ``skips``."""
    n_lines = count_lines(parsed.block)
    rel_rejected = np.array([r for r, _ in parsed.rejected], np.int64)
    lines = np.delete(np.arange(1, n_lines + 1), rel_rejected - 1) + parsed.first_line - 1
    if lines.size != parsed.table.num_rows:
        raise DataError(f"{path}: line accounting failed from line {parsed.first_line}: {parsed.table.num_rows} rows "
                        f"+ {rel_rejected.size} rejected for {n_lines} lines")
    batch = converter.parse([_one_array(parsed.table.column(i)) for i in range(layout.num_columns)], layout)
    header = lines == header_lineno
    blank = _blank_rows(parsed, lines)
    ok, last = budget.cut(batch.faults.ok & ~blank & ~header, lines)
    if skips is not None:
        reasons: dict[str, list[np.ndarray]] = {EMPTY_LINE: [lines[blank & ~header]]}
        for code, reason in enumerate(batch.faults.reasons, start=1):
            reasons.setdefault(reason, []).append(lines[(batch.faults.code == code) & ~blank & ~header])
        for r, text in parsed.rejected:
            line = r + parsed.first_line - 1
            if line != header_lineno:
                reason = EMPTY_LINE if not text.strip() else WRONG_COLUMN_COUNT
                reasons.setdefault(reason, []).append(np.array([line]))
        for reason, parts in reasons.items():
            found = np.sort(np.concatenate(parts))
            skips.add(reason, found if last is None else found[found < last])
    keep = pa.array(ok)
    return ValidBatch(
        label=batch.label[ok],
        tokens=[t.filter(keep) for t in batch.tokens],
        ts=None if batch.ts is None else batch.ts[ok],
        group=None if batch.group is None else batch.group[ok],
    )


def iter_valid(
    converter: RawConverter,
    path: Path,
    layout: Layout,
    header_lineno: int,
    max_rows: int | None = None,
    skips: SkipLog | None = None,
    block_bytes: int | None = None,
    threads: int | None = None,
) -> Iterator[ValidBatch]:
    """Valid rows of ``path`` in file order, one batch per block; skipped lines go to ``skips``.

    Stops after ``max_rows`` valid rows, so that every pass ends on the same line. Blocks are parsed
    ``threads`` at a time (default: the CPUs, at most 4) ahead of the one being consumed.
    """
    workers = threads or min(4, os.cpu_count() or 1)
    budget = _Budget(max_rows)
    block_bytes = block_bytes or BLOCK_BYTES
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csv-block") as pool:
        ahead: deque[Future[_Parsed]] = deque()
        blocks = _blocks(path, block_bytes)
        try:
            while True:
                while len(ahead) <= workers:
                    nxt = next(blocks, None)
                    if nxt is None:
                        break
                    ahead.append(pool.submit(_parse_block, path, nxt[0], nxt[1], layout))
                if not ahead:
                    return
                batch = _consume(path, ahead.popleft().result(), converter, layout, header_lineno, budget, skips)
                if len(batch):
                    yield batch
                if budget.done:
                    return
        finally:
            for fut in ahead:
                fut.cancel()
