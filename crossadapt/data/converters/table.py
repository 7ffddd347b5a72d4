"""Any tabular log (``data.source: table``): CSV/TSV/parquet files described by ``data.schema``.

What it does, in two streaming passes like the other converters (memory: a few blocks plus the
vocabularies, never the rows):

1. **Layout.** The files of ``data.raw_path`` (a path or a glob, read in name order) are checked
   against the schema before any row is read: every column the schema names must be in each file's
   header (or ``schema.columns`` for files without one); a missing one is a ``DataError`` naming
   the column and the file. Fields, in feature-map order: the categorical columns (as listed, or
   every column not named elsewhere), then the numeric ones (``numeric_transform: log``: Criteo's
   ``floor(ln(x)^2)`` bucket tokens as categorical fields; ``none``: float32 features, missing
   values as 0).
2. **Time and periods.** The time column (unix seconds, unix milliseconds or ISO 8601, naive ISO
   read as UTC; ``time_format: auto`` decides from the first block's values and records it) becomes
   ``ts`` in unix milliseconds. A duration period cuts UTC-aligned buckets (``1d``: UTC days);
   period 0 is the bucket of the first valid row. A row count cuts the valid rows in file order.
3. **Order.** Logs are roughly ordered: a row goes to the period of its own time, so rows may
   arrive out of order within and across periods, up to ``schema.late_periods`` periods behind
   the latest period seen so far (the default 1: yesterday's stragglers after midnight). Rows
   later than that, and rows before period 0, are skipped and counted (``late_row``,
   ``before_first_period``); only the open periods (at most ``late_periods + 1``) are buffered.
   Within a period rows keep file (arrival) order. With a row-count period rows are taken in
   file order and ``rows_out_of_order`` counts rows older than a row before them.
4. **Vocabularies.** Built from the periods up to the end of ``data.window_periods`` only (what
   exists when the transfer runs), tokens seen ``min_count`` times; ids first seen later are OOV,
   as in a live system. With a deployed teacher its vocabularies are adopted instead (raw value ->
   the row of its table, its OOV rows), so ids line up with its tables.
5. **Malformed rows** are skipped and counted per reason with their first lines (``file:line``):
   ``bad_label``, ``bad_timestamp``, ``bad_number:<column>``, ``wrong_column_count``,
   ``empty_line``, ``late_row``, ``before_first_period``. A schema that does not fit the data is an
   error, not a skip count: when one column makes more than half of the rows of the first block (or
   of the whole log) fail, the ``DataError`` names the column, the file, example values and the fix.

Outputs: the layout of :mod:`crossadapt.data.converters` (``period=<k>/part-00000.parquet`` with
``label``, the id columns, the numeric float32 columns and ``ts``; ``feature_map.json``;
``vocab.json``; ``meta.json`` with the schema, the detected time format, the period start times,
the conversion key and the summary), published atomically.

Example:
    >>> from crossadapt.config import load_config
    >>> cfg = load_config("migrate.yaml")                                          # doctest: +SKIP
    >>> summary = convert_table(table_spec(cfg.data), cfg.data.root)             # doctest: +SKIP
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crossadapt import atomic
from crossadapt.config import DataConfig, TableSchema, to_dict
from crossadapt.data.converters.base import (
    BAD_LABEL,
    BAD_TIMESTAMP,
    BadLine,
    Layout,
    ParsedBatch,
    RawConverter,
    RowFaults,
    detect_delimiter,
    empty_as_missing,
    int_column,
    map_distinct,
    parse_binary_label,
    token_column,
)
from crossadapt.data.converters.conversion import META_FILE, VOCAB_FILE, ConvertSummary
from crossadapt.data.converters.criteo import int_token
from crossadapt.data.converters.reader import MAX_EXAMPLES, SkipLog, ValidBatch, detect, iter_valid
from crossadapt.data.converters.vocab import OOV_INDEX, Encoder, FieldVocab, TokenCounter
from crossadapt.data.converters.writer import (
    LABEL_COLUMN,
    PART_FILE,
    TIME_COLUMN,
    PeriodWriter,
    check_out_root,
    staged,
)
from crossadapt.data.schema_rules import NotALabel, Period, parse_period, parse_rule
from crossadapt.errors import DataError
from crossadapt.featuremap import CATEGORICAL, NUMERIC, FeatureMap, FieldSpec

#: Bumped when the same inputs would convert differently: data converted by another version is redone.
CONVERTER_VERSION = 1
LATE_ROW = "late_row"
BEFORE_FIRST_PERIOD = "before_first_period"
BAD_NUMBER = "bad_number"
PARQUET_SUFFIXES = (".parquet", ".pq")
#: A column that fails on more than this share of the rows is a schema error, not malformed rows.
SCHEMA_FAIL_SHARE = 0.5
#: Rows per parquet record batch.
PARQUET_BATCH_ROWS = 65_536
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class TableSpec:
    """What one conversion of a tabular log needs (built from the config by :func:`table_spec`).

    Attributes:
        schema: the ``data.schema`` section.
        raw_path: a file or a glob.
        min_count: tokens seen fewer times in the vocabulary periods map to OOV.
        vocab_periods: periods ``[0, vocab_periods)`` feed the vocabularies (end of ``window_periods``).
        teacher_vocab: adopted vocabularies (field -> raw value -> row), or ``None`` to build them.
        teacher_rows: with ``teacher_vocab``, the rows of each field's table (the field's vocabulary
            size: rows no value maps to stay in the table, so the student's rows match the teacher's).
        teacher_vocab_sha256: the adopted vocabularies' file hash (in the conversion key).
    """

    schema: TableSchema
    raw_path: str
    min_count: int = 2
    vocab_periods: int = 1
    teacher_vocab: dict[str, FieldVocab] | None = None
    teacher_rows: dict[str, int] | None = None
    teacher_vocab_sha256: str = ""


def table_spec(data: DataConfig, teacher_vocab: dict[str, FieldVocab] | None = None,
               teacher_rows: dict[str, int] | None = None, teacher_vocab_sha256: str = "") -> TableSpec:
    """The spec of ``data`` (``data.source: table``): vocabularies from periods before ``window_periods``' end,
    or the teacher's (see :class:`TableSpec`)."""
    return TableSpec(data.schema, data.raw_path, data.min_count, data.window_periods[1], teacher_vocab,
                     teacher_rows, teacher_vocab_sha256)


def table_files(raw_path: str) -> list[Path]:
    """The files of ``raw_path`` (a file or a glob), in name order; ``DataError`` when there are none."""
    if not raw_path:
        raise DataError("data.raw_path: data.source table needs the log file(s) (a path or a glob)")
    if glob.has_magic(raw_path):
        files = sorted(Path(p) for p in glob.glob(raw_path) if Path(p).is_file())
        if not files:
            raise DataError(f"data.raw_path: no file matches {raw_path}")
        return files
    p = Path(raw_path)
    if not p.is_file():
        raise DataError(f"{p}: raw file not found (data.raw_path)")
    return [p]


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


# ---------------------------------------------------------------- value parsers


def _unix(scale: int):
    def parse(raw: str) -> int:
        try:
            x = float(raw)
        except ValueError:
            raise BadLine(BAD_TIMESTAMP) from None
        if not math.isfinite(x) or abs(x) > 1e17:
            raise BadLine(BAD_TIMESTAMP)
        return int(math.floor(x * scale))

    return parse


def _iso(raw: str) -> int:
    try:
        t = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise BadLine(BAD_TIMESTAMP) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)  # naive times are read as UTC
    delta = t - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


#: time_format -> raw text -> unix milliseconds.
TIME_PARSERS = {"unix_s": _unix(1000), "unix_ms": _unix(1), "iso8601": _iso}


def detect_time_format(values: Sequence[str]) -> str:
    """``unix_ms``/``unix_s`` when most values are numbers (milliseconds when their median magnitude is
    at least 1e11, i.e. after 1973 in ms or after year 5138 in s), else ``iso8601``."""
    numbers = []
    for v in values:
        try:
            x = float(v)
        except ValueError:
            continue
        if math.isfinite(x):
            numbers.append(abs(x))
    if values and len(numbers) * 2 >= len(values):
        return "unix_ms" if float(np.median(numbers)) >= 1e11 else "unix_s"
    return "iso8601"


def _number(column: str):
    reason = f"{BAD_NUMBER}:{column}"

    def parse(raw: str) -> float:
        if not raw.strip():
            return 0.0  # missing: 0, as Criteo's released pipelines do
        try:
            x = float(raw)
        except ValueError:
            raise BadLine(reason) from None
        if not abs(x) <= np.finfo(np.float32).max:
            raise BadLine(reason)
        return x

    return parse


def _bucket(column: str):
    reason = f"{BAD_NUMBER}:{column}"

    def parse(raw: str) -> str | None:
        try:
            return int_token(raw)
        except BadLine:
            raise BadLine(reason) from None

    return parse


def _label(positive: str):
    if not positive:
        return parse_binary_label
    rule = parse_rule(positive)

    def parse(raw: str) -> int:
        try:
            return rule(raw)
        except NotALabel:
            raise BadLine(BAD_LABEL) from None

    return parse


# ---------------------------------------------------------------- the converter


@dataclass
class _Roles:
    """Columns by role, resolved against the first file's columns."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]

    def fields(self, schema: TableSchema) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """``(token fields, their encoders, float fields)`` in feature-map order."""
        if schema.numeric_transform == "log":
            tokens = self.categorical + self.numeric
            return tokens, ("vocab",) * len(self.categorical) + ("log_square_bucket",) * len(self.numeric), ()
        return self.categorical, ("vocab",) * len(self.categorical), self.numeric


class TableConverter(RawConverter):
    """Rows of one schema: label (or rule), categorical and numeric columns, time and periods.

    Stateful across the blocks of one pass (period 0's bucket, the latest period seen, the time
    format): :meth:`start_pass` resets it, and both passes see the same blocks in the same order,
    so they agree on every row.
    """

    source = "table"
    time_definition = "schema time column as unix milliseconds (UTC)"

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.schema = spec.schema
        self.period: Period = parse_period(self.schema.period)
        self.roles: _Roles | None = None
        self.time_format = "" if self.schema.time_format == "auto" else self.schema.time_format
        self.path = Path()
        self._label = _label(self.schema.positive)
        self.label_definition = (f"{self.schema.label} {self.schema.positive}" if self.schema.positive
                                 else f"{self.schema.label} (0/1) as given")
        self.start_pass()

    def start_pass(self) -> None:
        """Forget the state of an earlier pass."""
        self.origin: int | None = None  # bucket of period 0
        self.watermark = -1  # the latest period seen
        self.first_block = True

    # ------------------------------------------------------------ layout

    def _resolve_roles(self, names: list[str]) -> _Roles:
        s = self.schema
        if s.categorical:
            return _Roles(tuple(s.categorical), tuple(s.numeric))
        taken = {s.label, s.time, *s.numeric, *s.drop} - {""}
        return _Roles(tuple(n for n in names if n not in taken), tuple(s.numeric))

    def layout_for(self, names: list[str], path: Path, delimiter: str = ",", has_header: bool = True) -> Layout:
        """The layout of a file with columns ``names``; ``DataError`` naming a missing column and the file."""
        s = self.schema
        if self.roles is None:
            self.roles = self._resolve_roles(names)
            if not self.roles.categorical and not (s.numeric and s.numeric_transform == "log"):
                raise DataError(f"data.schema.categorical: {path} leaves no categorical column (columns {names})")
        named = {"label": [s.label], "time": [s.time] if s.time else [], "categorical": list(self.roles.categorical),
                 "numeric": list(s.numeric), "drop": list(s.drop)}
        for role, cols in named.items():
            for c in cols:
                if c not in names:
                    raise DataError(f"data.schema.{role}: column {c!r} is not in {path} (its columns: {names})")
        index = {n: i for i, n in enumerate(names)}
        tokens, encoders, floats = self.roles.fields(s)
        return Layout(delimiter=delimiter, has_header=has_header, num_columns=len(names),
                      field_names=tokens + floats, encoders=encoders + ("none",) * len(floats), columns=index,
                      field_columns=tuple(index[c] for c in tokens + floats), quote_char='"')

    def detect_layout(self, first_line: str, delimiter: str | None, path: Path) -> Layout:
        """Header (or ``schema.columns``) of a CSV/TSV file, checked against the schema."""
        if delimiter is None:
            tab = path.name.lower().removesuffix(".gz").endswith((".tsv", ".tab"))
            delimiter = "\t" if tab else detect_delimiter(first_line, None, (",", "\t"), path)
        parts = [p.strip().strip('"') for p in first_line.split(delimiter)]
        if self.schema.columns:
            if len(parts) != len(self.schema.columns):
                raise DataError(f"{path}: line 1 has {len(parts)} columns, data.schema.columns names "
                                f"{len(self.schema.columns)}")
            return self.layout_for(list(self.schema.columns), path, delimiter, has_header=False)
        return self.layout_for(parts, path, delimiter, has_header=True)

    # ------------------------------------------------------------ rows

    def _check_first_block(self, faults: RowFaults, columns: Sequence[pa.Array], layout: Layout) -> None:
        """A column that fails on most rows of the first block is a schema error (see the module doc)."""
        n = len(faults.code)
        for code, reason in enumerate(faults.reasons, start=1):
            bad = faults.code == code
            column = self.reason_column(reason)
            if column and n and bad.sum() > SCHEMA_FAIL_SHARE * n:
                values = columns[layout.columns[column]].filter(pa.array(bad)).to_pylist()
                raise schema_error(reason, column, self, str(self.path), _examples(values, column))

    def reason_column(self, reason: str) -> str:
        """The column a skip reason is about (``""``: none)."""
        if reason == BAD_LABEL:
            return self.schema.label
        if reason == BAD_TIMESTAMP:
            return self.schema.time
        if reason.startswith(f"{BAD_NUMBER}:"):
            return reason.split(":", 1)[1]
        return ""

    def _times(self, column: pa.Array, faults: RowFaults) -> np.ndarray:
        if not self.time_format:
            distinct = [v for v in pc.unique(column.slice(0, 4096)).to_pylist()
                        if v and v.strip() and v.strip() != self.schema.time]
            self.time_format = detect_time_format(distinct[:1000])
        return int_column(column, TIME_PARSERS[self.time_format], faults)

    def _periods(self, ts: np.ndarray, faults: RowFaults) -> np.ndarray:
        """Period of every row by its time bucket; rows before period 0 or too late are faults."""
        ok = faults.ok
        bucket = ts // (self.period.size * 1000)
        if self.origin is None and ok.any():
            self.origin = int(bucket[np.argmax(ok)])
        period = bucket - (self.origin if self.origin is not None else 0)
        before = ok & (period < 0)
        faults.add(BEFORE_FIRST_PERIOD, before)
        ok = ok & ~before
        seen = np.maximum.accumulate(np.concatenate([[self.watermark], np.where(ok, period, -1)]))[1:]
        faults.add(LATE_ROW, ok & (period < seen - self.schema.late_periods))
        if seen.size:
            self.watermark = int(seen[-1])
        return period

    def parse(self, columns: Sequence[pa.Array], layout: Layout) -> ParsedBatch:
        """Label, tokens (categorical, log-bucketed numeric), float columns, ts and duration periods."""
        s, cols = self.schema, layout.columns
        faults = RowFaults(len(columns[cols[s.label]]))
        label = int_column(columns[cols[s.label]], self._label, faults, np.int8)
        ts = self._times(columns[cols[s.time]], faults) if s.time else None
        tokens, _, floats = self.roles.fields(s)  # type: ignore[union-attr]
        out: list[pa.Array] = []
        for name in tokens:
            col = columns[cols[name]]
            out.append(token_column(col, _bucket(name), faults) if name in s.numeric else empty_as_missing(col))
        for name in floats:
            values, index = map_distinct(columns[cols[name]], _number(name), faults)
            table = np.array([0.0 if v is None else v for v in values], np.float32)
            out.append(pa.array(table[index] if table.size else np.zeros(len(index), np.float32)))
        if self.first_block:
            self._check_first_block(faults, columns, layout)
            self.first_block = False
        group = self._periods(ts, faults) if (ts is not None and self.period.kind == "seconds") else None
        return ParsedBatch(label, out, faults, ts=ts, group=group)


def _examples(values: list, column: str, k: int = 5) -> list[str]:
    seen: list[str] = []
    for v in values:
        if v not in seen and v != column:
            seen.append(v)
        if len(seen) == k:
            break
    return seen


def schema_error(reason: str, column: str, conv: TableConverter, where: str, examples: list) -> DataError:
    """The error of a column that does not fit the schema, naming the key, column, file and fix."""
    shown = ", ".join(repr(v) for v in examples) or "empty values"
    if reason == BAD_LABEL:
        if conv.schema.positive:
            return DataError(f"data.schema.positive: the rule {conv.schema.positive!r} cannot read label column "
                             f"{column!r} of {where} (values {shown})")
        return DataError(f"data.schema.label: column {column!r} of {where} is not 0/1 (values {shown}); give a "
                         "rule in data.schema.positive, e.g. '>= 4' or 'in [click, purchase]'")
    if reason == BAD_TIMESTAMP:
        return DataError(f"data.schema.time: cannot read column {column!r} of {where} as {conv.time_format} "
                         f"time (values {shown}); set data.schema.time_format (unix_s, unix_ms, iso8601)")
    return DataError(f"data.schema.numeric: column {column!r} of {where} is not numeric (values {shown}); "
                     "list it under data.schema.categorical instead")


# ---------------------------------------------------------------- reading files


def _parquet_layout(conv: TableConverter, path: Path) -> Layout:
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e})") from e
    return conv.layout_for(list(names), path)


def _iter_parquet(conv: TableConverter, path: Path, layout: Layout, skips: SkipLog | None) -> Iterator[ValidBatch]:
    """Valid rows of a parquet file in record batches (values as text, as from a CSV; row numbers
    count from 1)."""
    names = sorted(layout.columns, key=layout.columns.get)
    needed = {conv.schema.label, conv.schema.time, *(names[i] for i in layout.field_columns)} - {""}
    row = 1
    try:
        for rb in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=sorted(needed)):
            cols: list[pa.Array | None] = [None] * layout.num_columns
            for name in needed:
                col = rb.column(name)
                cols[layout.columns[name]] = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
            batch = conv.parse(cols, layout)  # type: ignore[arg-type]
            ok = batch.faults.ok
            if skips is not None:
                lines = np.arange(row, row + rb.num_rows)
                for code, reason in enumerate(batch.faults.reasons, start=1):
                    skips.add(reason, lines[batch.faults.code == code])
            row += rb.num_rows
            keep = pa.array(ok)
            if ok.any():
                yield ValidBatch(batch.label[ok], [t.filter(keep) for t in batch.tokens],
                                 None if batch.ts is None else batch.ts[ok],
                                 None if batch.group is None else batch.group[ok])
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read parquet rows from row {row} on ({e})") from e


class FileSkips:
    """Skipped rows of every file: counts per reason, the first few as ``file:line``."""

    def __init__(self, files: list[Path]) -> None:
        self.counts: Counter = Counter()
        self.examples: dict[str, list[int | str]] = {}
        self.several = len(files) > 1

    def merge(self, path: Path, log: SkipLog) -> None:
        for reason, count in log.counts.items():
            self.counts[reason] += count
            ex = self.examples.setdefault(reason, [])
            lines = log.examples.get(reason, [])[: MAX_EXAMPLES - len(ex)]
            ex.extend(f"{path.name}:{line}" for line in lines) if self.several else ex.extend(lines)


def iter_rows(conv: TableConverter, files: list[Path], skips: FileSkips | None = None) -> Iterator[ValidBatch]:
    """Valid rows of every file in order (one pass; the converter's state restarts with it)."""
    conv.start_pass()
    delimiter = conv.schema.delimiter or None
    for path in files:
        conv.path = path
        log = SkipLog() if skips is not None else None
        if is_parquet(path):
            yield from _iter_parquet(conv, path, _parquet_layout(conv, path), log)
        else:
            layout, header_lineno = detect(conv, path, delimiter)
            yield from iter_valid(conv, path, layout, header_lineno, skips=log)
        if skips is not None and log is not None:
            skips.merge(path, log)


def layouts(conv: TableConverter, files: list[Path]) -> Layout:
    """Every file's layout, checked before any row is read; the fields must agree across files."""
    delimiter = conv.schema.delimiter or None
    first = None
    for path in files:
        layout = _parquet_layout(conv, path) if is_parquet(path) else detect(conv, path, delimiter)[0]
        first = first or layout
    return first  # type: ignore[return-value]


# ---------------------------------------------------------------- the two passes


@dataclass
class TableScan:
    """Pass one: rows, labels, periods, token counts (vocabulary periods only), skipped rows."""

    rows_valid: int = 0
    label_sum: int = 0
    periods: int = 0
    counters: list[TokenCounter] = field(default_factory=list)
    out_of_order: int = 0
    last_ts: int | None = None


def _row_periods(conv: TableConverter, batch: ValidBatch, first_row: int) -> np.ndarray:
    if batch.group is not None:
        return batch.group
    return np.arange(first_row, first_row + len(batch)) // conv.period.size


def _out_of_order(ts: np.ndarray | None, last: int | None) -> tuple[int, int | None]:
    """Rows older than some row before them, and the running maximum."""
    if ts is None or not len(ts):
        return 0, last
    run = np.maximum.accumulate(np.concatenate([[ts[0] if last is None else last], ts]))
    return int(np.count_nonzero(ts < run[:-1])), int(run[-1])


def scan_table(conv: TableConverter, files: list[Path], n_tokens: int, skips: FileSkips) -> TableScan:
    s = TableScan(counters=[TokenCounter() for _ in range(n_tokens)])
    count = conv.spec.teacher_vocab is None
    for batch in iter_rows(conv, files, skips):
        period = _row_periods(conv, batch, s.rows_valid)
        s.rows_valid += len(batch)
        s.label_sum += int(batch.label.sum())
        s.periods = max(s.periods, int(period.max()) + 1)
        k, s.last_ts = _out_of_order(batch.ts, s.last_ts)
        s.out_of_order += k
        if count:
            keep = pa.array(period < conv.spec.vocab_periods)
            for counter, column in zip(s.counters, batch.tokens[:n_tokens]):
                counter.add(column.filter(keep))
    return s


def _check_totals(conv: TableConverter, skips: FileSkips, rows_read: int, files: list[Path]) -> None:
    """No valid row, or a column failing on most rows of the whole log: a schema error."""
    for reason, count in skips.counts.items():
        column = conv.reason_column(reason)
        if column and count > SCHEMA_FAIL_SHARE * rows_read:
            where = f"{len(files)} files ({files[0]}, ...)" if len(files) > 1 else str(files[0])
            raise schema_error(reason, column, conv, where, [f"{count} of {rows_read} rows"]) from None
    if rows_read - sum(skips.counts.values()) <= 0:
        reasons = ", ".join(f"{r} {c}" for r, c in sorted(skips.counts.items())) or "no data rows"
        raise DataError(f"{files[0]}: no valid rows ({reasons})")


def _encoders(conv: TableConverter, layout: Layout, scan: TableScan, n_tokens: int,
              ) -> tuple[list[Encoder], list[FieldSpec], dict[str, Any]]:
    """Encoders, categorical field specs and the vocab.json document (own or adopted vocabularies)."""
    names, encs = layout.field_names[:n_tokens], layout.encoders[:n_tokens]
    teacher = conv.spec.teacher_vocab
    if teacher is not None:
        if list(teacher) != list(names):
            raise DataError(f"teacher_import.vocabularies: fields {list(teacher)} differ from the schema's categorical "
                            f"fields {list(names)} (feature-map order: the teacher's ids come in this order)")
        rows = conv.spec.teacher_rows or {}
        specs = [FieldSpec(n, CATEGORICAL, vocab_size=rows.get(n, teacher[n].max_row + 1),
                           oov_index=teacher[n].oov_index, encoder=f"{e}+teacher") for n, e in zip(names, encs)]
        doc = {"oov_index": {n: teacher[n].oov_index for n in names}, "fields": {n: teacher[n].ids for n in names}}
        return [Encoder(teacher[n].ids, teacher[n].oov_index) for n in names], specs, doc
    vocabs = [c.vocab(conv.spec.min_count) for c in scan.counters]
    specs = [FieldSpec(n, CATEGORICAL, vocab_size=len(v) + 1, oov_index=OOV_INDEX, encoder=e)
             for n, e, v in zip(names, encs, vocabs)]
    doc = {"oov_index": OOV_INDEX, "min_count": conv.spec.min_count, "vocab_periods": [0, conv.spec.vocab_periods],
           "fields": dict(zip(names, vocabs))}
    return [Encoder(v) for v in vocabs], specs, doc


def _write(conv: TableConverter, files: list[Path], layout: Layout, encoders: list[Encoder], n_tokens: int,
           num_periods: int, staging: Path, chunk_rows: int) -> tuple[list[int], list[int]]:
    """Pass two: encode and write every valid row to its period; rows and OOV ids per period/field."""
    floats = layout.field_names[n_tokens:]
    schema = pa.schema([(LABEL_COLUMN, pa.int8())] + [(n, pa.int64()) for n in layout.field_names[:n_tokens]]
                       + [(n, pa.float32()) for n in floats] + [(TIME_COLUMN, pa.int64())])
    writers: dict[int, PeriodWriter] = {}
    rows, oov = [0] * num_periods, [0] * n_tokens
    closed = newest = -1  # periods <= closed are complete; newest: the latest period seen
    index = 0
    try:
        for batch in iter_rows(conv, files):
            period = _row_periods(conv, batch, index)
            ids = [enc.encode(col) for enc, col in zip(encoders, batch.tokens[:n_tokens])]
            for j, (enc, col) in enumerate(zip(ids, batch.tokens[:n_tokens])):
                oov[j] += int(np.count_nonzero(enc == encoders[j].oov_index))
            dense = [np.asarray(c.to_numpy(zero_copy_only=False), np.float32) for c in batch.tokens[n_tokens:]]
            ts = batch.ts if batch.ts is not None else np.arange(index, index + len(batch), dtype=np.int64)
            for k in np.unique(period).tolist():
                if k <= closed:  # pass one would have skipped it: the files changed between the passes
                    raise DataError(f"{files[0]}: period {k} got rows after it was complete; files changed?")
                sel = period == k
                w = writers.get(k) or writers.setdefault(k, PeriodWriter(staging / f"period={k}" / PART_FILE,
                                                                          schema, chunk_rows))
                w.write(batch.label[sel], [c[sel] for c in ids], ts[sel], [c[sel] for c in dense])
                rows[k] += int(sel.sum())
            index += len(batch)
            # open periods: the late window behind the latest period (duration), or the current one (rows)
            lag = conv.schema.late_periods if conv.period.kind == "seconds" else 0
            newest = max(newest, int(period.max()))
            for k in range(closed + 1, newest - lag):  # complete: written, or an empty file for a gap
                (writers.pop(k, None) or PeriodWriter(staging / f"period={k}" / PART_FILE, schema, chunk_rows)
                 ).close(empty_file=True)
                closed = k
        for k in range(closed + 1, num_periods):
            (writers.pop(k, None) or PeriodWriter(staging / f"period={k}" / PART_FILE, schema, chunk_rows)
             ).close(empty_file=True)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return rows, oov


def conversion_key(spec: TableSpec, files: list[Path]) -> str:
    """What the conversion depends on: converter version, schema, options, vocabularies and the files
    (path, size, modification time; hashing every byte of a big log at each ``prepare`` would cost a
    read of the log)."""
    stats = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    doc = {"version": CONVERTER_VERSION, "schema": to_dict(spec.schema), "min_count": spec.min_count,
           "vocab_periods": spec.vocab_periods, "teacher_vocab": spec.teacher_vocab_sha256,
           "teacher_rows": spec.teacher_rows, "files": stats}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def is_current(root: str | os.PathLike, spec: TableSpec) -> bool:
    """Whether ``root`` holds this exact conversion (same key in its ``meta.json``)."""
    try:
        meta = json.loads((Path(root) / META_FILE).read_text())
        return meta.get("conversion_key") == conversion_key(spec, table_files(spec.raw_path))
    except (OSError, ValueError, DataError):
        return False


def _period_starts(conv: TableConverter, n: int) -> list[str] | None:
    if conv.period.kind != "seconds" or conv.origin is None:
        return None
    size = conv.period.size
    return [datetime.fromtimestamp((conv.origin + k) * size, timezone.utc).isoformat() for k in range(n)]


def convert_table(spec: TableSpec, out_root: str | os.PathLike, *, overwrite: bool = False,
                  chunk_rows: int = 65_536, verbose: bool = True) -> ConvertSummary:
    """Convert the tabular log of ``spec`` into the encoded parquet layout under ``out_root``.

    Raises:
        DataError: no file, a column the schema names is missing (the message names the column and
            the file), a column failing on most rows (label not 0/1 without a rule, unreadable time,
            non-numeric numeric column), adopted vocabularies that do not fit the fields, no valid rows.
    """
    out_root = Path(out_root)
    files = table_files(spec.raw_path)
    check_out_root(out_root, overwrite)
    conv = TableConverter(spec)
    layout = layouts(conv, files)  # every file's columns, before any row is read
    n_tokens = len(layout.field_names) - len(conv.roles.fields(spec.schema)[2])  # type: ignore[union-attr]
    skips = FileSkips(files)
    s = scan_table(conv, files, n_tokens, skips)
    rows_read = s.rows_valid + sum(skips.counts.values())
    _check_totals(conv, skips, rows_read, files)
    encoders, specs, vocab_doc = _encoders(conv, layout, s, n_tokens)
    s.counters = []
    fmap = FeatureMap(
        dataset="table",
        fields=tuple(specs) + tuple(FieldSpec(n, NUMERIC, encoder="none") for n in layout.field_names[n_tokens:]),
        label=LABEL_COLUMN, time=TIME_COLUMN,
        meta={"source": "table", "min_count": spec.min_count, "converter": "crossadapt.data.converters.table",
              "vocabulary": "teacher" if spec.teacher_vocab is not None else f"periods [0, {spec.vocab_periods})"},
    )
    with staged(out_root, overwrite) as staging:
        period_rows, oov = _write(conv, files, layout, encoders, n_tokens, s.periods, staging, chunk_rows)
        if sum(period_rows) != s.rows_valid:
            raise DataError(f"{files[0]}: second pass saw {sum(period_rows)} valid rows, first pass {s.rows_valid}; "
                            "files changed?")
        summary = ConvertSummary(
            rows_read=rows_read, rows_written=s.rows_valid, skipped=dict(sorted(skips.counts.items())),
            periods=s.periods, fields=len(fmap.fields), out_root=out_root, source="table",
            raw_path=Path(spec.raw_path), skipped_examples={r: skips.examples[r] for r in sorted(skips.examples)},
            period_rows=period_rows, label_rate=s.label_sum / s.rows_valid,
        )
        atomic.write_json(staging / VOCAB_FILE, vocab_doc)
        atomic.write_json(staging / META_FILE, {
            "source": "table",
            "raw_files": [str(p.resolve()) for p in files],
            "schema": to_dict(spec.schema),
            "label_definition": conv.label_definition,
            "time_format": conv.time_format or None,
            "time_definition": conv.time_definition if spec.schema.time else "row order: ts = index of the valid row",
            "period_definition": (f"UTC buckets of {conv.period.size} s from the first valid row's bucket; rows up to "
                                  f"{spec.schema.late_periods} period(s) late go to their own period"
                                  if conv.period.kind == "seconds" else f"{conv.period.size} valid rows each, file order"),
            "period_starts": _period_starts(conv, s.periods),
            "rows_out_of_order": s.out_of_order,
            "vocabulary": fmap.meta["vocabulary"],
            "oov_rate": {n: c / max(s.rows_valid, 1) for n, c in zip(layout.field_names, oov)},
            "conversion_key": conversion_key(spec, files),
            "feature_map_fingerprint": fmap.fingerprint(),
            "convert_summary": summary.to_dict(),
        })
        fmap.save(staging)  # last: its presence marks a complete folder
    if verbose:
        print(summary.format(), flush=True)
        if s.out_of_order:
            kept = ("each in the period of its own time, in arrival order" if conv.period.kind == "seconds"
                    else "in file order: the periods count rows")
            print(f"  {s.out_of_order} row(s) older than a row before them (kept: {kept})", flush=True)
    return summary
