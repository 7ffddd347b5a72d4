"""Checks of encoded parquet files against the data contract, on the driver, before training; no Ray.

A run reads its files through Ray Data inside Ray Train workers, where an error reaches the user
late (after workers start, after a teacher trains), is retried by Ray Train's failure handling as
if a process had died, and names only a row of a worker's shard. So every file a run reads is
checked here first, and a bad file is a ``DataError`` naming the file, the column and the row (the
row's index within its file):

- the bytes: a parquet file (``PAR1`` at both ends: not truncated, not another format);
- the footer: readable, every column of the feature map present with an allowed dtype;
- every row: labels in {0, 1}, ids in ``[0, vocab_size)``, numerics finite in float32, no nulls.

Rows are checked in record batches of at most ``batch_rows`` rows (bounded memory) with pyarrow
compute; every page is decoded, so a page that is corrupt under a valid footer is caught here too.
A file that passed is remembered for the rest of the process by the sha256 of its bytes (the digest
its data fingerprint uses, ``crossadapt.fingerprint.parquet_sha256``, computed once per process) and
the feature map's fingerprint: the teacher, the students and the test read share one check, and an
edited file has another digest and is checked again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crossadapt.data.arrays import check_schema, period_files
from crossadapt.errors import DataError
from crossadapt.featuremap import FeatureMap

F32_MAX = float(np.finfo(np.float32).max)
#: (sha256 of the file's bytes, feature map fingerprint) of the files that passed in this process.
_PASSED: set[tuple[str, str]] = set()


def _first(mask: pa.Array | pa.ChunkedArray) -> tuple[int, int]:
    """Index of the first true value of ``mask`` and how many are true (nulls count as false)."""
    bad = np.flatnonzero(np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool))
    return int(bad[0]), int(bad.size)


def _value(col: pa.Array | pa.ChunkedArray, i: int):
    v = col[i].as_py()
    return int(v) if isinstance(v, bool) else v


def check_column(col: pa.Array | pa.ChunkedArray, name: str, kind: str, vocab: int, source: str,
                 row_offset: int) -> None:
    """DataError at the first value of one column outside the contract.

    ``kind``: ``"label"`` (0 or 1), ``"id"`` (``[0, vocab)``) or ``"numeric"`` (finite in float32).
    Rows are named ``row_offset + i``; the message says how many rows of ``col`` fail the same way.
    """
    if col.null_count:
        r, n = _first(pc.is_null(col))
        raise DataError(f"{source}: column {name!r} row {row_offset + r}: missing (null) value ({n} such rows)")
    if len(col) == 0:
        return
    if kind == "numeric":
        if pa.types.is_floating(col.type):  # integers are finite (and check_schema bounds their type)
            ok = pc.less_equal(pc.abs(col), F32_MAX)  # NaN compares false: not ok
            if not pc.all(ok).as_py():
                r, n = _first(pc.invert(ok))
                raise DataError(f"{source}: column {name!r} row {row_offset + r}: value {_value(col, r)} is not a "
                                f"finite float32 ({n} such rows)")
        return
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())  # the contract allows boolean labels and ids: 0 or 1
    lo, hi = (0, 1) if kind == "label" else (0, vocab - 1)
    mm = pc.min_max(col)
    if mm["min"].as_py() >= lo and mm["max"].as_py() <= hi:
        return
    r, n = _first(pc.or_(pc.less(col, lo), pc.greater(col, hi)))
    v = _value(col, r)
    if kind == "label":
        raise DataError(f"{source}: column {name!r} row {row_offset + r}: label {v!r} not in {{0, 1}} ({n} such rows)")
    raise DataError(f"{source}: column {name!r} row {row_offset + r}: id {v} outside the vocabulary [0, {vocab}) "
                    f"({n} such rows)")


def _columns(fm: FeatureMap) -> list[tuple[str, str, int]]:
    """``(column, kind, vocab)`` of every column the contract checks, in feature-map order."""
    return ([(fm.label, "label", 2)] + [(f.name, "id", f.vocab_size) for f in fm.categorical_fields]
            + [(f.name, "numeric", 0) for f in fm.numeric_fields])


def check_table(table: pa.Table | pa.RecordBatch, fm: FeatureMap, source: str, row_offset: int = 0) -> None:
    """DataError at the first row of ``table`` (rows ``row_offset``...) breaking the contract."""
    for name, kind, vocab in _columns(fm):
        check_column(table.column(name), name, kind, vocab, source, row_offset)


def _one_line(e: BaseException) -> str:
    """pyarrow's message on one line (some span several): the CLI prints an error as one line."""
    return " ".join(str(e).split())


def open_parquet(path: str | os.PathLike) -> pq.ParquetFile:
    """The file's reader; DataError naming a file that is not readable parquet (garbage, truncated, empty)."""
    try:
        return pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for broken footers
        raise DataError(f"{path}: not a readable parquet file ({_one_line(e)})") from e


def period_row_counts(root: str | os.PathLike, periods: Iterable[int]) -> list[int]:
    """Row count of each period, from parquet footers (no data read)."""
    return [sum(open_parquet(f).metadata.num_rows for f in period_files(root, [k])) for k in periods]


def check_file(path: str | os.PathLike, fm: FeatureMap, batch_rows: int = 1 << 16) -> int:
    """Check one file (footer, then every row); DataError naming file, column and row. Returns its rows."""
    pf = open_parquet(path)
    check_schema(pf.schema_arrow, fm, str(path))
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[c for c, _, _ in _columns(fm)],
                                     use_threads=False):
            check_table(batch, fm, str(path), row)
            row += batch.num_rows
    except (pa.ArrowException, OSError) as e:  # a valid footer over corrupted pages fails only here
        raise DataError(f"{path}: corrupted parquet data after row {row} ({_one_line(e)})") from e
    return row


def check_files(files: Iterable[str | os.PathLike], fm: FeatureMap) -> int:
    """:func:`check_file` on each file not passed before in this process (same bytes, same feature map);
    returns how many were checked now."""
    from crossadapt.fingerprint import parquet_sha256  # memoised; DataError for non-parquet or truncated bytes

    checked = 0
    fm_key = fm.fingerprint()
    for f in files:
        key = (parquet_sha256(f), fm_key)
        if key in _PASSED:
            continue
        check_file(f, fm)
        checked += 1
        _PASSED.add(key)
    return checked


def check_periods(root: str | os.PathLike, periods: Iterable[int], fm: FeatureMap) -> int:
    """:func:`check_files` over the parquet files of ``periods`` under ``root``."""
    return check_files(period_files(root, periods), fm)
