"""One conversion of a raw log file: two streaming passes, then the outputs published atomically.

1. pass one streams the file (:mod:`.reader`), counts the tokens of every field (:mod:`.vocab`)
   and the malformed lines;
2. vocabularies keep tokens seen at least ``min_count`` times; the periods are planned;
3. pass two streams the file again and writes the encoded periods (:mod:`.writer`), then
   ``vocab.json``, ``meta.json`` and the feature map (last: its presence marks a complete folder),
   in a staging folder renamed onto ``out_root``, so a crash leaves nothing half-written.

Memory is bounded by a few blocks of the file plus the vocabularies (distinct tokens), never by
the number of rows. A long pass says where it is once a minute (pass two with an ETA: pass one
counted its rows), and each pass says when it is done.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

import numpy as np

from crossadapt import atomic
from crossadapt.data.converters.base import Layout, RawConverter
from crossadapt.data.converters.reader import SkipLog, detect, iter_valid
from crossadapt.data.converters.vocab import OOV_INDEX, Encoder, TokenCounter
from crossadapt.data.converters.writer import (
    LABEL_COLUMN,
    TIME_COLUMN,
    PeriodPlan,
    check_out_root,
    period_bounds,
    staged,
    write_periods,
)
from crossadapt.errors import ConfigError, DataError
from crossadapt.featuremap import CATEGORICAL, FeatureMap, FieldSpec
from crossadapt.progress import Heartbeat, duration, progress_line

_log = logging.getLogger(__name__)
B = TypeVar("B")

META_FILE = "meta.json"
VOCAB_FILE = "vocab.json"
DEFAULT_CHUNK_ROWS = 65_536


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


@dataclass
class Scan:
    """Result of pass one."""

    layout: Layout
    header_lineno: int  # 0 when there is no header
    rows_valid: int
    label_sum: int
    counters: list[TokenCounter]
    groups: Counter
    ts_non_decreasing: bool
    skips: SkipLog

    @property
    def rows_read(self) -> int:
        """Every data line read: skips are recorded only up to where reading stopped."""
        return self.rows_valid + sum(self.skips.counts.values())


def _reported(batches: Iterable[B], what: str, total: int | None = None, heartbeat_s: float = 60.0) -> Iterator[B]:
    """``batches`` (of valid rows) passed through, with a progress line once per ``heartbeat_s`` (an ETA
    when ``total`` rows are expected) and one when they end."""
    heartbeat, t0, rows = Heartbeat(heartbeat_s), time.monotonic(), 0
    for batch in batches:
        rows += len(batch)  # type: ignore[arg-type]
        if heartbeat.due():
            elapsed = time.monotonic() - t0
            _log.info(progress_line(what, rows, total, elapsed, unit="row") if total else
                      f"{what}: {rows} valid rows so far, {duration(elapsed)} elapsed")
        yield batch
    _log.info("%s: done, %d valid rows in %s", what, rows, duration(time.monotonic() - t0))


def scan(converter: RawConverter, path: Path, delimiter: str | None, max_rows: int | None) -> Scan:
    """Pass one: layout, valid rows, label sum, token counts, period keys, skipped lines."""
    layout, header_lineno = detect(converter, path, delimiter)
    s = Scan(layout, header_lineno, 0, 0, [TokenCounter() for _ in layout.field_names], Counter(), True, SkipLog())
    last_ts: int | None = None
    batches = iter_valid(converter, path, layout, header_lineno, max_rows, s.skips)
    for batch in _reported(batches, f"{converter.source} {path.name}: pass 1 of 2 (counting tokens)"):
        s.rows_valid += len(batch)
        s.label_sum += int(batch.label.sum())
        for counter, column in zip(s.counters, batch.tokens):
            counter.add(column)
        if batch.group is not None:
            keys, counts = np.unique(batch.group, return_counts=True)
            s.groups.update(dict(zip(keys.tolist(), counts.tolist())))
        if batch.ts is not None and len(batch.ts):
            if (last_ts is not None and batch.ts[0] < last_ts) or bool(np.any(np.diff(batch.ts) < 0)):
                s.ts_non_decreasing = False
            last_ts = int(batch.ts[-1])
    return s


def _check_args(min_count: int, num_periods: int | None, rows_per_period: int | None, max_rows: int | None,
                chunk_rows: int, delimiter: str | None) -> None:
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
    if delimiter is not None and not delimiter:
        raise ConfigError("convert: delimiter must be a non-empty string or None")
    if delimiter is not None and len(delimiter) != 1:
        raise ConfigError(f"convert: delimiter must be one character, got {delimiter!r}")


def _check_scan(s: Scan, path: Path) -> None:
    """Valid rows exist and the field names fit the output columns."""
    if s.rows_valid == 0:
        reasons = ", ".join(f"{r} {c}" for r, c in sorted(s.skips.counts.items())) or "no data lines"
        raise DataError(f"{path}: no valid rows ({reasons})")
    names = s.layout.field_names
    reserved = {LABEL_COLUMN, TIME_COLUMN} & set(names)
    if reserved or len(set(names)) != len(names):
        raise DataError(f"{path}: field names {list(names)} repeat or use reserved {sorted(reserved)}")


def _plan(s: Scan, converter: RawConverter, num_periods: int | None, rows_per_period: int | None,
          path: Path) -> tuple[PeriodPlan, list[str] | None]:
    """Periods by the source's default key (Avazu: day) unless a row split is asked for; and the
    keys' names."""
    if num_periods is None and rows_per_period is None and s.groups:
        keys = sorted(s.groups)
        return PeriodPlan(group_index={g: k for k, g in enumerate(keys)}), [converter.group_label(g) for g in keys]
    if num_periods is not None and num_periods > s.rows_valid:
        raise DataError(f"{path}: num_periods={num_periods} but only {s.rows_valid} valid rows")
    return PeriodPlan(bounds=period_bounds(s.rows_valid, num_periods, rows_per_period)), None


def _feature_map(converter: RawConverter, layout: Layout, vocabs: list[list[str]], min_count: int) -> FeatureMap:
    return FeatureMap(
        dataset=converter.source,
        fields=tuple(
            FieldSpec(name, CATEGORICAL, vocab_size=len(toks) + 1, oov_index=OOV_INDEX, encoder=enc)
            for name, enc, toks in zip(layout.field_names, layout.encoders, vocabs)
        ),
        label=LABEL_COLUMN,
        time=TIME_COLUMN,
        meta={"source": converter.source, "min_count": min_count, "converter": "crossadapt.data.converters"},
    )


def _write_outputs(staging: Path, converter: RawConverter, raw_path: Path, s: Scan, summary: ConvertSummary,
                   vocabs: list[list[str]], fmap: FeatureMap, plan: PeriodPlan, period_keys: list[str] | None,
                   options: dict[str, Any]) -> None:
    """``vocab.json``, ``meta.json`` and, last, the feature map, into ``staging``."""
    # vocab.json lets later raw logs be encoded with the same ids (token at position i has id i+1).
    atomic.write_json(staging / VOCAB_FILE, {"oov_index": OOV_INDEX, "min_count": options["min_count"],
                                             "fields": dict(zip(s.layout.field_names, vocabs))})
    meta = {
        "source": converter.source,
        "raw_path": str(raw_path.resolve()),
        **options,
        "delimiter": s.layout.delimiter,
        "header": s.layout.has_header,
        "label_definition": converter.label_definition,
        "time_definition": converter.time_definition,
        "period_definition": (
            "one period per default key (see period_keys)" if plan.group_index is not None
            else "contiguous row ranges in time order (see period_bounds)"
        ),
        "period_keys": period_keys,
        "period_bounds": plan.bounds,
        "ts_non_decreasing": s.ts_non_decreasing,
        "feature_map_fingerprint": fmap.fingerprint(),
        "convert_summary": summary.to_dict(),
    }
    atomic.write_json(staging / META_FILE, meta)
    fmap.save(staging)  # last: its presence marks a complete folder


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
    _check_args(min_count, num_periods, rows_per_period, max_rows, chunk_rows, delimiter)
    raw_path, out_root = Path(raw_path), Path(out_root)
    if not raw_path.exists():
        raise DataError(f"{raw_path}: raw file not found")
    if not raw_path.is_file():
        raise DataError(f"{raw_path}: not a file")
    check_out_root(out_root, overwrite)

    s = scan(converter, raw_path, delimiter, max_rows)
    _check_scan(s, raw_path)
    plan, period_keys = _plan(s, converter, num_periods, rows_per_period, raw_path)
    vocabs = [c.vocab(min_count) for c in s.counters]
    s.counters = []  # the counts of every token seen: no longer needed, possibly large
    fmap = _feature_map(converter, s.layout, vocabs, min_count)

    with staged(out_root, overwrite) as staging:
        batches = _reported(iter_valid(converter, raw_path, s.layout, s.header_lineno, max_rows),
                            f"{converter.source} {raw_path.name}: pass 2 of 2 (writing periods)", s.rows_valid)
        period_rows = write_periods(batches, s.layout.field_names, [Encoder(v) for v in vocabs], plan, staging,
                                    chunk_rows)
        if sum(period_rows) != s.rows_valid:  # the file changed between the passes
            raise DataError(f"{raw_path}: second pass saw {sum(period_rows)} valid rows, first pass "
                            f"{s.rows_valid}; file changed?")
        summary = ConvertSummary(
            rows_read=s.rows_read, rows_written=sum(period_rows), skipped=dict(sorted(s.skips.counts.items())),
            periods=len(period_rows), fields=len(s.layout.field_names), out_root=out_root, source=converter.source,
            raw_path=raw_path.resolve(), skipped_examples={r: s.skips.examples[r] for r in sorted(s.skips.examples)},
            period_rows=period_rows, label_rate=s.label_sum / s.rows_valid,
        )
        options = {"min_count": min_count, "num_periods": num_periods, "rows_per_period": rows_per_period,
                   "max_rows": max_rows}
        _write_outputs(staging, converter, raw_path, s, summary, vocabs, fmap, plan, period_keys, options)
    if verbose:
        print(summary.format(), flush=True)
    return summary
