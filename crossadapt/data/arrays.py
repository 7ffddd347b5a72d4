"""Encoded logs as in-memory numpy arrays, read from the parquet layout and validated.

An *arrays dict* is ``{"ids": int64 (N, F_cat), "dense": float32 (N, F_num), "label": float32 (N,)}``
with the columns in feature-map order. Every check names the file (or source), column and row at fault.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crossadapt.errors import DataError
from crossadapt.featuremap import FeatureMap

Arrays = dict[str, np.ndarray]
_PERIOD_RE = re.compile(r"^period=(\d+)$")


def list_periods(root: str | os.PathLike) -> list[int]:
    """Sorted period numbers found under ``root`` (folders ``period=<k>``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    periods = sorted(int(m.group(1)) for p in root.iterdir() if (m := _PERIOD_RE.match(p.name)))
    if not periods:
        raise DataError(f"{root}: no period=<k> folders")
    return periods


def period_files(root: str | os.PathLike, periods: Iterable[int]) -> list[Path]:
    """Parquet files of the given periods, in time order (period, then part name)."""
    root = Path(root)
    files: list[Path] = []
    for k in periods:
        folder = root / f"period={k}"
        parts = sorted(folder.glob("*.parquet"))
        if not parts:
            raise DataError(f"{folder}: period {k} has no parquet files (available: {list_periods(root)})")
        files.extend(parts)
    return files


def period_range(span: tuple[int, int]) -> list[int]:
    """Half-open ``(start, end)`` as a list of period numbers."""
    return list(range(span[0], span[1]))


def check_schema(schema: pa.Schema, fm: FeatureMap, source: str) -> None:
    """Raise DataError if a column of ``fm`` is missing or has a dtype the contract does not allow."""
    names = set(schema.names)
    required = [fm.label, *fm.categorical_names, *fm.numeric_names]
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing} required by feature map {fm.dataset!r}")
    for c in [fm.label, *fm.categorical_names]:
        t = schema.field(c).type
        if not (pa.types.is_integer(t) or pa.types.is_boolean(t)):
            raise DataError(f"{source}: column {c!r} has dtype {t}, expected an integer type")
    for c in fm.numeric_names:
        t = schema.field(c).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
            raise DataError(f"{source}: column {c!r} has dtype {t}, expected float32")


def _check_no_missing(col: np.ndarray, name: str, source: str, row_offset: int) -> None:
    """Raise DataError at the first missing value of an integer column.

    Arrow nulls reach numpy as NaN (the column becomes float64) or None (object dtype); without
    this they would be reported as a wrong dtype or a label ``nan``.
    """
    if col.dtype.kind == "f":
        missing = np.isnan(col)
    elif col.dtype.kind == "O":
        missing = np.equal(col, None)
    else:
        return
    bad = np.flatnonzero(missing)
    if bad.size:
        raise DataError(
            f"{source}: column {name!r} row {row_offset + int(bad[0])}: missing (null) value ({bad.size} such rows)"
        )


def columns_to_arrays(cols: Mapping[str, np.ndarray], fm: FeatureMap, source: str, row_offset: int = 0) -> Arrays:
    """Stack per-field columns into an arrays dict, checking labels, id ranges and finiteness."""
    n = len(cols[fm.label])
    label = np.asarray(cols[fm.label])
    _check_no_missing(label, fm.label, source, row_offset)
    bad = np.flatnonzero((label != 0) & (label != 1))
    if bad.size:
        r = int(bad[0])
        raise DataError(
            f"{source}: column {fm.label!r} row {row_offset + r}: label {label[r].item()!r} not in {{0, 1}} "
            f"({bad.size} such rows)"
        )
    ids = np.empty((n, len(fm.categorical_fields)), dtype=np.int64)
    for j, f in enumerate(fm.categorical_fields):
        col = np.asarray(cols[f.name])
        _check_no_missing(col, f.name, source, row_offset)
        if col.dtype.kind not in "iub":
            raise DataError(f"{source}: column {f.name!r} has dtype {col.dtype}, expected an integer type")
        bad = np.flatnonzero((col < 0) | (col >= f.vocab_size))
        if bad.size:
            r = int(bad[0])
            raise DataError(
                f"{source}: column {f.name!r} row {row_offset + r}: id {int(col[r])} outside the vocabulary "
                f"[0, {f.vocab_size}) ({bad.size} such rows)"
            )
        ids[:, j] = col
    dense = np.empty((n, len(fm.numeric_fields)), dtype=np.float32)
    for j, f in enumerate(fm.numeric_fields):
        # Checked in float64: a float64 value beyond float32's range would otherwise be reported as inf.
        col = np.asarray(cols[f.name], dtype=np.float64)
        bad = np.flatnonzero(~(np.abs(col) <= np.finfo(np.float32).max))
        if bad.size:
            r = int(bad[0])
            raise DataError(
                f"{source}: column {f.name!r} row {row_offset + r}: value {col[r]} is not a finite float32 "
                f"({bad.size} such rows)"
            )
        dense[:, j] = col
    return {"ids": ids, "dense": dense, "label": label.astype(np.float32)}


def read_file(path: str | os.PathLike, fm: FeatureMap) -> Arrays:
    """Read and validate one parquet file."""
    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e})") from e
    check_schema(pf.schema_arrow, fm, str(path))
    cols = [fm.label, *fm.categorical_names, *fm.numeric_names]
    try:
        table = pf.read(columns=cols)
    except (pa.ArrowException, OSError) as e:  # a valid footer over corrupted pages fails only here
        raise DataError(f"{path}: corrupted parquet data ({e})") from e
    if table.num_rows == 0:
        return empty_arrays(fm)
    return columns_to_arrays({c: table.column(c).to_numpy(zero_copy_only=False) for c in cols}, fm, str(path))


def iter_period_batches(root: str | os.PathLike, periods: Iterable[int], fm: FeatureMap,
                        batch_rows: int = 1 << 18) -> Iterator[tuple[int, Arrays]]:
    """The periods' rows in time order as validated arrays dicts of at most ``batch_rows`` rows,
    each with the index of its first row among all of them: memory is one batch, however long the
    periods (pyarrow record batches, never a whole file)."""
    cols = [fm.label, *fm.categorical_names, *fm.numeric_names]
    start = 0
    for path in period_files(root, periods):
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{path}: not a readable parquet file ({e})") from e
        check_schema(pf.schema_arrow, fm, str(path))
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
                a = columns_to_arrays({c: batch.column(c).to_numpy(zero_copy_only=False) for c in cols}, fm,
                                      str(path), row_offset=row)
                yield start, a
                row += batch.num_rows
                start += batch.num_rows
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: corrupted parquet data ({e})") from e


class PeriodChunks:
    """The periods' rows as validated arrays dicts of exactly ``chunk_rows`` rows (the last one may be
    shorter), read from the files on each pass: a split evaluated without being held. Chunks run
    across file boundaries, so with ``chunk_rows`` equal to the scoring batch a model sees the very
    batches of the resident path. ``rows`` comes from the footers (no data read)."""

    def __init__(self, root: str | os.PathLike, periods: Iterable[int], fm: FeatureMap,
                 chunk_rows: int = 1 << 16) -> None:
        self.root, self.periods, self.fm, self.chunk_rows = root, list(periods), fm, chunk_rows
        self.rows = sum(pq.ParquetFile(p).metadata.num_rows for p in period_files(root, self.periods))

    def __iter__(self) -> Iterator[Arrays]:
        pending: list[Arrays] = []
        held = 0
        for _, a in iter_period_batches(self.root, self.periods, self.fm, self.chunk_rows):
            pending.append(a)
            held += num_rows(a)
            while held >= self.chunk_rows:
                whole = concat(pending)
                yield take(whole, slice(0, self.chunk_rows))
                rest = take(whole, slice(self.chunk_rows, held))
                held -= self.chunk_rows
                pending = [rest] if held else []
        if held:
            yield concat(pending)

    def labels(self) -> np.ndarray:
        """The label of every row (float32), reading the label column only."""
        parts = [b.column(0).to_numpy(zero_copy_only=False).astype(np.float32)
                 for p in period_files(self.root, self.periods)
                 for b in pq.ParquetFile(p).iter_batches(batch_size=self.chunk_rows, columns=[self.fm.label])]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def labels_of(data: "Arrays | PeriodChunks") -> np.ndarray:
    """The labels of a resident arrays dict or of ``PeriodChunks``."""
    return data["label"] if isinstance(data, dict) else data.labels()


def label_counts(root: str | os.PathLike, periods: Iterable[int], label: str) -> tuple[int, int]:
    """``(rows, clicks)`` of the periods, reading the label column only (in record batches)."""
    rows = clicks = 0
    for path in period_files(root, periods):
        for batch in pq.ParquetFile(path).iter_batches(columns=[label]):
            y = batch.column(0).to_numpy(zero_copy_only=False)
            rows += len(y)
            clicks += int(np.count_nonzero(y == 1))
    return rows, clicks


def read_periods(root: str | os.PathLike, periods: Iterable[int], fm: FeatureMap | None = None) -> Arrays:
    """Read the given periods (time order kept) into one arrays dict; ``fm`` defaults to the root's map."""
    fm = fm or FeatureMap.load(root)
    parts = [read_file(p, fm) for p in period_files(root, periods)]
    return concat(parts) if parts else empty_arrays(fm)


def empty_arrays(fm: FeatureMap) -> Arrays:
    return {
        "ids": np.zeros((0, len(fm.categorical_fields)), np.int64),
        "dense": np.zeros((0, len(fm.numeric_fields)), np.float32),
        "label": np.zeros((0,), np.float32),
    }


def num_rows(a: Arrays) -> int:
    return int(a["label"].shape[0])


def concat(parts: list[Arrays]) -> Arrays:
    """Concatenate arrays dicts row-wise."""
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in ("ids", "dense", "label")}


def take(a: Arrays, index: np.ndarray | slice) -> Arrays:
    """Rows ``index`` of every array."""
    return {k: a[k][index] for k in ("ids", "dense", "label")}


def check_sample_ratio(r: float) -> None:
    """DataError unless ``0 < r <= 1`` (0 would train on nothing, more than 1 would silently mean all)."""
    if not 0 < r <= 1:
        raise DataError(f"sample ratio r must be in (0, 1], got {r}")


def sample_index(n: int, r: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded uniform sample of ``round(r * n)`` rows (at least one)."""
    check_sample_ratio(r)
    if r == 1:
        return np.arange(n)
    k = max(1, int(round(r * n)))
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def tail_start(n: int, fraction: float) -> int:
    """First row of the validation tail: the last ``fraction`` of ``n`` rows in time order."""
    return n - int(round(fraction * n))


def split_tail(a: Arrays, fraction: float) -> tuple[Arrays, Arrays]:
    """Split off the last ``fraction`` of rows (time order) as a validation set."""
    n = num_rows(a)
    cut = tail_start(n, fraction)
    return take(a, slice(0, cut)), take(a, slice(cut, n))
