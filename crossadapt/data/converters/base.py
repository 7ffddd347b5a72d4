"""Shared machinery of the raw converters: two streaming passes, vocabularies, periods, writing.

A converter (one subclass of :class:`RawConverter` per source) only knows its line format: how
to detect the delimiter and header, and how to turn one split line into a label, one raw token
per field, and optionally a timestamp and a period key. Everything else lives here:

1. pass one streams the file, counts the tokens of every field and the malformed lines;
2. vocabularies keep tokens seen at least ``min_count`` times, ids ``1..n`` by descending
   count then token (deterministic); rare, unseen and missing tokens map to 0 (OOV);
3. pass two streams the file again and writes ``period=<k>/part-00000.parquet`` in chunks.

The output is built in a temp folder beside ``out_root`` (each file itself written atomically,
the feature map last) and renamed into place at the end, so a crash leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from itertools import repeat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, NamedTuple, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crossadapt import atomic
from crossadapt.errors import ConfigError, DataError
from crossadapt.featuremap import CATEGORICAL, FieldSpec, FeatureMap

OOV_INDEX = 0
LABEL_COLUMN = "label"
TIME_COLUMN = "ts"
PART_FILE = "part-00000.parquet"
META_FILE = "meta.json"
VOCAB_FILE = "vocab.json"
DEFAULT_CHUNK_ROWS = 65_536
# Rows parsed before counting/encoding them column-wise: small enough that the raw token strings
# of one batch stay a few tens of MB, large enough that per-batch overhead vanishes.
BATCH_ROWS = 8_192
MAX_EXAMPLES = 5

# Reasons a line is skipped (keys of ``ConvertSummary.skipped``).
EMPTY_LINE = "empty_line"
WRONG_COLUMN_COUNT = "wrong_column_count"
BAD_LABEL = "bad_label"
BAD_INTEGER = "bad_integer"
BAD_TIMESTAMP = "bad_timestamp"
BAD_COUNT = "bad_count"


class BadLine(Exception):
    """Raised by a parser for a malformed line; ``reason`` becomes a key of the skip summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Row(NamedTuple):
    """One parsed line.

    Attributes:
        label: 0 or 1.
        tokens: one raw token per field (``None`` = missing, encoded as OOV).
        ts: timestamp, or ``None`` when row order is time (the valid-row index is used).
        group: default period key (e.g. the day), or ``None`` when the source has none.
    """

    label: int
    tokens: list[str | None]
    ts: int | None = None
    group: int | None = None


@dataclass(frozen=True)
class Layout:
    """What a converter detected from the first line of a file.

    Attributes:
        delimiter: column separator.
        has_header: whether the first non-empty line is a header (skipped as data).
        num_columns: columns every data line must have.
        field_names: output field (parquet column) names, in feature-map order.
        encoders: the ``FieldSpec.encoder`` of each field.
        columns: raw column name -> index, for parsers that look columns up by name.
        field_columns: raw column index of each field, for parsers that pick columns by index.
    """

    delimiter: str
    has_header: bool
    num_columns: int
    field_names: tuple[str, ...]
    encoders: tuple[str, ...]
    columns: dict[str, int] = field(default_factory=dict)
    field_columns: tuple[int, ...] = ()


class RawConverter(ABC):
    """One raw log format. Subclasses set ``source`` and implement ``detect_layout`` and ``parse``.

    ``parse`` must be deterministic: both passes parse every line and must agree on which lines
    are valid.
    """

    source: ClassVar[str] = ""
    #: How the 0/1 label is derived from the raw columns (written to meta.json).
    label_definition: ClassVar[str] = ""
    #: How ``ts`` is derived (written to meta.json).
    time_definition: ClassVar[str] = "row order is time: ts = index of the valid row (0-based)"

    @abstractmethod
    def detect_layout(self, first_line: str, delimiter: str | None, path: Path) -> Layout:
        """Detect delimiter and header from the first non-empty line; raise ``DataError`` if unusable."""

    @abstractmethod
    def parse(self, parts: list[str], layout: Layout) -> Row:
        """Turn one split line (already of ``layout.num_columns`` parts) into a :class:`Row`.

        Raises:
            BadLine: with the reason the line is skipped.
        """

    def group_label(self, group: int) -> str:
        """Human-readable name of a default period key (written to meta.json)."""
        return str(group)


@dataclass
class ConvertSummary:
    """What a conversion read, wrote and skipped.

    Attributes:
        rows_read: data lines read (header excluded, malformed and empty lines included).
        rows_written: valid rows written.
        skipped: malformed-line count per reason.
        periods: number of periods written.
        fields: number of (categorical) fields.
        out_root: the output folder.
        source: converter name.
        raw_path: the raw input file.
        skipped_examples: per reason, the first few 1-based line numbers at fault.
        period_rows: rows written to each period, in period order.
        label_rate: mean label of the written rows.
    """

    rows_read: int
    rows_written: int
    skipped: dict[str, int]
    periods: int
    fields: int
    out_root: Path
    source: str = ""
    raw_path: Path | None = None
    skipped_examples: dict[str, list[int]] = field(default_factory=dict)
    period_rows: list[int] = field(default_factory=list)
    label_rate: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        d = asdict(self)
        d["out_root"] = str(self.out_root)
        d["raw_path"] = None if self.raw_path is None else str(self.raw_path)
        return d

    def format(self) -> str:
        """One compact block for the console."""
        n_skip = sum(self.skipped.values())
        reasons = ", ".join(
            f"{r} {c} (lines {', '.join(map(str, self.skipped_examples.get(r, [])))}"
            f"{', ...' if c > len(self.skipped_examples.get(r, [])) else ''})"
            for r, c in sorted(self.skipped.items())
        )
        shown = self.period_rows if len(self.period_rows) <= 12 else [*self.period_rows[:12], "..."]
        return "\n".join(
            [
                f"convert {self.source}: {self.raw_path} -> {self.out_root}",
                f"  rows read {self.rows_read}, written {self.rows_written}, skipped {n_skip}"
                + (f": {reasons}" if reasons else ""),
                f"  {self.fields} fields, {self.periods} period(s) {shown}, label rate {self.label_rate:.4f}",
            ]
        )


# ---------------------------------------------------------------- small shared helpers


def detect_delimiter(first_line: str, delimiter: str | None, candidates: tuple[str, ...], path: Path) -> str:
    """The given delimiter, else the first candidate occurring in ``first_line``."""
    if delimiter is not None:
        return delimiter
    for cand in candidates:
        if cand in first_line:
            return cand
    names = " or ".join(repr(c) for c in candidates)
    raise DataError(f"{path}: cannot detect the delimiter (no {names} in line 1); pass delimiter=")


def check_header(header: list[str], expected: tuple[str, ...], path: Path) -> None:
    """Raise ``DataError`` unless ``header`` names ``expected`` (case-insensitive, in order)."""
    got = [h.strip() for h in header]
    if [g.lower() for g in got] == [e.lower() for e in expected]:
        return
    # Name the first column that differs: a listing of the first few columns hides a typo at column 13.
    diff = next((i for i, (g, e) in enumerate(zip(got, expected)) if g.lower() != e.lower()), None)
    if diff is None:
        detail = f"{len(got)} columns, expected {len(expected)}"
    else:
        detail = f"column {diff + 1} is {got[diff]!r}, expected {expected[diff]!r}"
    raise DataError(f"{path}: header line does not match: {detail} (expected {', '.join(expected)})")


def fixed_layout(
    first_line: str,
    delimiter: str | None,
    path: Path,
    columns: tuple[str, ...],
    field_names: tuple[str, ...],
    encoders: tuple[str, ...],
    field_columns: tuple[int, ...] = (),
) -> Layout:
    """Layout of a format with fixed columns: tab (or comma) separated, with an optional header
    line, recognised by its first column naming ``columns[0]`` and then checked whole."""
    delim = detect_delimiter(first_line, delimiter, ("\t", ","), path)
    parts = first_line.split(delim)
    has_header = parts[0].strip().lower() == columns[0].lower()
    if has_header:
        check_header(parts, columns, path)
    return Layout(delimiter=delim, has_header=has_header, num_columns=len(columns), field_names=field_names,
                  encoders=encoders, columns={c: i for i, c in enumerate(columns)}, field_columns=field_columns)


def parse_binary_label(token: str) -> int:
    """``"0"``/``"1"`` (or ``"0.0"``/``"1.0"``) -> 0/1, else ``BadLine(bad_label)``."""
    if token == "0":
        return 0
    if token == "1":
        return 1
    try:
        value = float(token)
    except ValueError:
        raise BadLine(BAD_LABEL) from None
    if value == 0.0 or value == 1.0:
        return int(value)
    raise BadLine(BAD_LABEL)


def build_vocab(counts: Counter, min_count: int) -> list[str]:
    """Tokens kept, in id order (id = position + 1): count >= min_count, by descending count then token."""
    kept = [(tok, c) for tok, c in counts.items() if c >= min_count]
    kept.sort(key=lambda tc: (-tc[1], tc[0]))
    return [tok for tok, _ in kept]


def period_bounds(n: int, num_periods: int | None, rows_per_period: int | None) -> list[int]:
    """Row boundaries ``b`` so that period k holds valid rows ``[b[k], b[k+1])``.

    ``num_periods=P`` gives P contiguous nearly equal parts (``b[k] = k*n//P``);
    ``rows_per_period=R`` gives parts of R rows, the last one possibly shorter; neither gives one period.
    """
    if num_periods is not None:
        return [k * n // num_periods for k in range(num_periods + 1)]
    if rows_per_period is not None:
        count = max(1, -(-n // rows_per_period))
        return [min(k * rows_per_period, n) for k in range(count + 1)]
    return [0, n]


def _open_text(path: Path) -> TextIO:
    # Raw logs are often shipped gzipped (Avazu's train.gz); decode bytes leniently so that one
    # odd byte is at worst one malformed token, not a crash.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")  # type: ignore[return-value]
    return open(path, encoding="utf-8", errors="replace", newline="")


class _SkipLog:
    """Counts skipped lines per reason and keeps the first few line numbers of each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[int]] = {}

    def add(self, reason: str, lineno: int) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(lineno)


@dataclass
class _Scan:
    """Result of pass one."""

    layout: Layout
    header_lineno: int  # 0 when there is no header
    rows_read: int
    rows_valid: int
    label_sum: int
    counters: list[Counter]
    groups: Counter
    ts_non_decreasing: bool
    skips: _SkipLog


def _detect(converter: RawConverter, path: Path, delimiter: str | None) -> tuple[Layout, int]:
    """Layout from the first non-empty line, and that line's number if it is a header."""
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    layout = converter.detect_layout(line, delimiter, path)
                    return layout, (lineno if layout.has_header else 0)
    except (OSError, EOFError) as e:  # unreadable or corrupt gzip
        raise DataError(f"{path}: cannot read ({e})") from e
    raise DataError(f"{path}: file is empty (no non-blank line)")


def _iter_rows(
    converter: RawConverter,
    path: Path,
    layout: Layout,
    header_lineno: int,
    max_rows: int | None,
    skips: _SkipLog | None,
) -> Iterator[tuple[int, Row]]:
    """Yield ``(lineno, row)`` of valid rows, recording skipped lines in ``skips``.

    Stops after ``max_rows`` valid rows, so both passes end on the same line.
    """
    delim, ncols = layout.delimiter, layout.num_columns
    valid = 0
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if lineno == header_lineno:
                    continue
                line = line.rstrip("\r\n")
                if not line.strip():
                    reason = EMPTY_LINE
                else:
                    parts = line.split(delim)
                    if len(parts) != ncols:
                        reason = WRONG_COLUMN_COUNT
                    else:
                        try:
                            row = converter.parse(parts, layout)
                        except BadLine as e:
                            reason = e.reason
                        else:
                            yield lineno, row
                            valid += 1
                            if max_rows is not None and valid >= max_rows:
                                return
                            continue
                if skips is not None:
                    skips.add(reason, lineno)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from e


def _iter_batches(
    converter: RawConverter,
    path: Path,
    layout: Layout,
    header_lineno: int,
    max_rows: int | None,
    skips: _SkipLog | None,
) -> Iterator[list[Row]]:
    """Valid rows in lists of up to ``BATCH_ROWS``, so that counting and encoding run column-wise."""
    batch: list[Row] = []
    for _, row in _iter_rows(converter, path, layout, header_lineno, max_rows, skips):
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _first_pass(converter: RawConverter, path: Path, delimiter: str | None, max_rows: int | None) -> _Scan:
    layout, header_lineno = _detect(converter, path, delimiter)
    counters = [Counter() for _ in layout.field_names]
    groups: Counter = Counter()
    skips = _SkipLog()
    valid = label_sum = 0
    last_ts: int | None = None
    monotone = True
    for batch in _iter_batches(converter, path, layout, header_lineno, max_rows, skips):
        valid += len(batch)
        label_sum += sum(r.label for r in batch)
        # Counter.update over a whole column runs in C; None (missing) is dropped afterwards.
        for counter, column in zip(counters, zip(*(r.tokens for r in batch))):
            counter.update(column)
        groups.update(r.group for r in batch if r.group is not None)
        ts = [r.ts for r in batch if r.ts is not None]
        if ts:
            if last_ts is not None and ts[0] < last_ts or any(b < a for a, b in zip(ts, ts[1:])):
                monotone = False
            last_ts = ts[-1]
    for counter in counters:
        counter.pop(None, None)
    # Skips are recorded only up to where reading stopped, so this counts every data line read.
    rows_read = valid + sum(skips.counts.values())
    return _Scan(layout, header_lineno, rows_read, valid, label_sum, counters, groups, monotone, skips)


class _PeriodWriter:
    """Appends encoded rows of one period to its parquet file, in row groups of ``chunk_rows``.

    The file is written through ``atomic_path``: it appears under its name only on ``close``.
    """

    def __init__(self, path: Path, schema: pa.Schema, chunk_rows: int) -> None:
        self.path, self.schema, self.chunk_rows = path, schema, chunk_rows
        self.pieces: list[pa.Table] = []
        self.pending = 0
        self.rows = 0
        self._stack = contextlib.ExitStack()
        self._writer: pq.ParquetWriter | None = None

    def write(self, label: np.ndarray, ids: list[np.ndarray], ts: np.ndarray) -> None:
        arrays = [pa.array(label), *(pa.array(c) for c in ids), pa.array(ts)]
        self.pieces.append(pa.Table.from_arrays(arrays, schema=self.schema))
        self.pending += len(label)
        if self.pending >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        if self._writer is None:
            tmp = self._stack.enter_context(atomic.atomic_path(self.path))
            self._writer = pq.ParquetWriter(tmp, self.schema)
        self._writer.write_table(pa.concat_tables(self.pieces), row_group_size=self.chunk_rows)
        self.rows += self.pending
        self.pieces, self.pending = [], 0

    def close(self) -> None:
        """Write what is buffered, close the file and rename it into place."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._stack.close()

    def abort(self) -> None:
        """Close the file without publishing it (its temp file goes with the staging folder)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _second_pass(
    converter: RawConverter,
    path: Path,
    scan: _Scan,
    vocabs: list[dict[str, int]],
    staging: Path,
    bounds: list[int] | None,
    group_index: dict[int, int] | None,
    max_rows: int | None,
    chunk_rows: int,
) -> list[int]:
    """Encode and write every valid row; return rows written per period."""
    layout = scan.layout
    schema = pa.schema(
        [(LABEL_COLUMN, pa.int8())] + [(n, pa.int64()) for n in layout.field_names] + [(TIME_COLUMN, pa.int64())]
    )
    num_periods = len(group_index) if group_index is not None else len(bounds) - 1  # type: ignore[arg-type]
    writers = [_PeriodWriter(staging / f"period={k}" / PART_FILE, schema, chunk_rows) for k in range(num_periods)]
    index = 0
    try:
        for batch in _iter_batches(converter, path, layout, scan.header_lineno, max_rows, None):
            n = len(batch)
            ids = [
                np.fromiter(map(vocab.get, column, repeat(OOV_INDEX, n)), dtype=np.int64, count=n)
                for vocab, column in zip(vocabs, zip(*(r.tokens for r in batch)))
            ]
            label = np.fromiter((r.label for r in batch), dtype=np.int8, count=n)
            ts = np.fromiter((index + i if r.ts is None else r.ts for i, r in enumerate(batch)), np.int64, count=n)
            if group_index is not None:
                keys = (group_index[r.group] for r in batch)  # type: ignore[index]
                period = np.fromiter(keys, dtype=np.int64, count=n)
            else:
                period = np.searchsorted(np.asarray(bounds), np.arange(index, index + n), side="right") - 1
                for k in range(int(period[0])):  # rows come in period order: earlier periods are complete
                    writers[k].close()
            for k in np.unique(period):
                sel = period == k
                writers[k].write(label[sel], [c[sel] for c in ids], ts[sel])
            index += n
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    if index != scan.rows_valid:  # the file changed between the passes
        raise DataError(f"{path}: second pass saw {index} valid rows, first pass {scan.rows_valid}; file changed?")
    return [w.rows for w in writers]


def _check_args(
    min_count: int, num_periods: int | None, rows_per_period: int | None, max_rows: int | None, chunk_rows: int
) -> None:
    def positive(name: str, value: Any, optional: bool = True) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"convert: {name} must be a positive integer, got {value!r}")

    positive("min_count", min_count, optional=False)
    positive("num_periods", num_periods)
    positive("rows_per_period", rows_per_period)
    positive("max_rows", max_rows)
    positive("chunk_rows", chunk_rows, optional=False)
    if num_periods is not None and rows_per_period is not None:
        raise ConfigError("convert: give num_periods or rows_per_period, not both")


def _check_out_root(out_root: Path, overwrite: bool) -> None:
    if out_root.exists() and not out_root.is_dir():
        raise DataError(f"{out_root}: output path exists and is not a folder")
    if out_root.is_dir() and any(out_root.iterdir()) and not overwrite:
        raise DataError(f"{out_root}: output folder is not empty; pass overwrite=True to replace it")


def _publish(staging: Path, out_root: Path, overwrite: bool) -> None:
    """Move the finished staging folder onto ``out_root`` (replacing it only if ``overwrite``)."""
    _check_out_root(out_root, overwrite)
    if not out_root.exists():
        os.rename(staging, out_root)
        return
    # Swap: old folder aside, new one in, then drop the old one; a crash in between leaves
    # either the old or the new folder at out_root plus a hidden leftover, never a mix.
    trash = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.old-", dir=out_root.parent))
    os.rename(out_root, trash / "old")
    os.rename(staging, out_root)
    shutil.rmtree(trash, ignore_errors=True)


def run_conversion(
    converter: RawConverter,
    raw_path: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    min_count: int = 2,
    num_periods: int | None = None,
    rows_per_period: int | None = None,
    max_rows: int | None = None,
    delimiter: str | None = None,
    overwrite: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    verbose: bool = True,
) -> ConvertSummary:
    """Convert one raw log file with ``converter``; see :func:`crossadapt.data.converters.convert`."""
    _check_args(min_count, num_periods, rows_per_period, max_rows, chunk_rows)
    if delimiter is not None and not delimiter:
        raise ConfigError("convert: delimiter must be a non-empty string or None")
    raw_path = Path(raw_path)
    out_root = Path(out_root)
    if not raw_path.exists():
        raise DataError(f"{raw_path}: raw file not found")
    if not raw_path.is_file():
        raise DataError(f"{raw_path}: not a file")
    _check_out_root(out_root, overwrite)

    scan = _first_pass(converter, raw_path, delimiter, max_rows)
    n = scan.rows_valid
    if n == 0:
        reasons = ", ".join(f"{r} {c}" for r, c in sorted(scan.skips.counts.items())) or "no data lines"
        raise DataError(f"{raw_path}: no valid rows ({reasons})")

    layout = scan.layout
    reserved = {LABEL_COLUMN, TIME_COLUMN} & set(layout.field_names)
    if reserved or len(set(layout.field_names)) != len(layout.field_names):
        raise DataError(f"{raw_path}: field names {list(layout.field_names)} repeat or use reserved {sorted(reserved)}")

    # Periods: by the source's default key (Avazu: day) unless a row split is asked for.
    group_index: dict[int, int] | None = None
    bounds: list[int] | None = None
    if num_periods is None and rows_per_period is None and scan.groups:
        keys = sorted(scan.groups)
        group_index = {g: k for k, g in enumerate(keys)}
        period_keys = [converter.group_label(g) for g in keys]
    else:
        if num_periods is not None and num_periods > n:
            raise DataError(f"{raw_path}: num_periods={num_periods} but only {n} valid rows")
        bounds = period_bounds(n, num_periods, rows_per_period)
        period_keys = None

    token_lists = [build_vocab(c, min_count) for c in scan.counters]
    vocabs = [{tok: i + 1 for i, tok in enumerate(toks)} for toks in token_lists]
    fmap = FeatureMap(
        dataset=converter.source,
        fields=tuple(
            FieldSpec(name, CATEGORICAL, vocab_size=len(toks) + 1, oov_index=OOV_INDEX, encoder=enc)
            for name, enc, toks in zip(layout.field_names, layout.encoders, token_lists)
        ),
        label=LABEL_COLUMN,
        time=TIME_COLUMN,
        meta={"source": converter.source, "min_count": min_count, "converter": "crossadapt.data.converters"},
    )

    out_root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.", suffix=".tmp", dir=out_root.parent))
    staging.chmod(0o755)  # mkdtemp makes it owner-only; the published folder should read like any other
    try:
        period_rows = _second_pass(
            converter, raw_path, scan, vocabs, staging, bounds, group_index, max_rows, chunk_rows
        )
        summary = ConvertSummary(
            rows_read=scan.rows_read,
            rows_written=sum(period_rows),
            skipped=dict(sorted(scan.skips.counts.items())),
            periods=len(period_rows),
            fields=len(layout.field_names),
            out_root=out_root,
            source=converter.source,
            raw_path=raw_path.resolve(),
            skipped_examples={r: scan.skips.examples[r] for r in sorted(scan.skips.examples)},
            period_rows=period_rows,
            label_rate=scan.label_sum / n,
        )
        # vocab.json lets later raw logs be encoded with the same ids (token at position i has id i+1).
        atomic.write_json(
            staging / VOCAB_FILE,
            {"oov_index": OOV_INDEX, "min_count": min_count, "fields": dict(zip(layout.field_names, token_lists))},
        )
        meta = {
            "source": converter.source,
            "raw_path": str(raw_path.resolve()),
            "min_count": min_count,
            "num_periods": num_periods,
            "rows_per_period": rows_per_period,
            "max_rows": max_rows,
            "delimiter": layout.delimiter,
            "header": layout.has_header,
            "label_definition": converter.label_definition,
            "time_definition": converter.time_definition,
            "period_definition": (
                "one period per default key (see period_keys)"
                if group_index is not None
                else "contiguous row ranges in time order (see period_bounds)"
            ),
            "period_keys": period_keys,
            "period_bounds": bounds,
            "ts_non_decreasing": scan.ts_non_decreasing,
            "feature_map_fingerprint": fmap.fingerprint(),
            "convert_summary": summary.to_dict(),
        }
        atomic.write_json(staging / META_FILE, meta)
        fmap.save(staging)  # last: its presence marks a complete folder
        _publish(staging, out_root, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if verbose:
        print(summary.format(), flush=True)
    return summary


__all__ = [
    "BAD_COUNT",
    "BAD_INTEGER",
    "BAD_LABEL",
    "BAD_TIMESTAMP",
    "EMPTY_LINE",
    "WRONG_COLUMN_COUNT",
    "BadLine",
    "ConvertSummary",
    "Layout",
    "RawConverter",
    "Row",
    "build_vocab",
    "check_header",
    "detect_delimiter",
    "parse_binary_label",
    "period_bounds",
    "run_conversion",
]
