"""Writing the encoded periods of a conversion, and publishing its folder atomically.

Rows go to ``period=<k>/part-00000.parquet`` (``label`` int8, one int64 id column per field, ``ts``
int64) in row groups of ``chunk_rows``; each file appears under its name only when complete. The
whole output is built in a staging folder beside ``out_root`` and renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crossadapt import atomic
from crossadapt.data.converters.reader import ValidBatch
from crossadapt.data.converters.vocab import Encoder
from crossadapt.errors import DataError

LABEL_COLUMN = "label"
TIME_COLUMN = "ts"
PART_FILE = "part-00000.parquet"


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


@dataclass
class PeriodPlan:
    """Which period each valid row goes to: by row ranges (``bounds``) or by the source's default
    key (``group_index``: key -> period, e.g. Avazu's day)."""

    bounds: list[int] | None = None
    group_index: dict[int, int] | None = None

    @property
    def num_periods(self) -> int:
        return len(self.group_index) if self.group_index is not None else len(self.bounds) - 1  # type: ignore[arg-type]

    def periods(self, batch: ValidBatch, first_row: int) -> np.ndarray:
        """Period of each row of ``batch``, whose first row is valid row ``first_row``."""
        if self.group_index is not None:
            keys = np.unique(batch.group)
            table = np.array([self.group_index[int(g)] for g in keys], np.int64)
            return table[np.searchsorted(keys, batch.group)]
        index = np.arange(first_row, first_row + len(batch))
        return np.searchsorted(np.asarray(self.bounds), index, side="right") - 1


class PeriodWriter:
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

    def write(self, label: np.ndarray, ids: list[np.ndarray], ts: np.ndarray,
              dense: list[np.ndarray] | tuple = ()) -> None:
        """Append rows: ``label``, one id column per field, ``dense`` float32 columns (the schema's
        numeric fields, after the ids), ``ts``."""
        arrays = [pa.array(label), *(pa.array(c) for c in ids), *(pa.array(c) for c in dense), pa.array(ts)]
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

    def close(self, empty_file: bool = False) -> None:
        """Write what is buffered, close the file and rename it into place (``empty_file``: a file
        with the schema and no rows even when nothing was written, e.g. a period without traffic)."""
        if empty_file and self._writer is None and not self.pending:
            with atomic.atomic_path(self.path) as tmp:
                pq.write_table(self.schema.empty_table(), tmp)
            return
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


def write_periods(batches: Iterator[ValidBatch], field_names: tuple[str, ...], encoders: list[Encoder],
                  plan: PeriodPlan, staging: Path, chunk_rows: int) -> list[int]:
    """Encode every valid row and write it to its period under ``staging``; rows written per period."""
    schema = pa.schema([(LABEL_COLUMN, pa.int8())] + [(n, pa.int64()) for n in field_names]
                       + [(TIME_COLUMN, pa.int64())])
    writers = [PeriodWriter(staging / f"period={k}" / PART_FILE, schema, chunk_rows) for k in range(plan.num_periods)]
    index = 0
    try:
        for batch in batches:
            ids = [enc.encode(col) for enc, col in zip(encoders, batch.tokens)]
            ts = np.arange(index, index + len(batch), dtype=np.int64) if batch.ts is None else batch.ts
            period = plan.periods(batch, index)
            if plan.group_index is None:
                for k in range(int(period[0])):  # rows come in period order: earlier periods are complete
                    writers[k].close()
            for k in np.unique(period):
                sel = period == k
                writers[k].write(batch.label[sel], [c[sel] for c in ids], ts[sel])
            index += len(batch)
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return [w.rows for w in writers]


def check_out_root(out_root: Path, overwrite: bool) -> None:
    """``out_root`` must be a folder that is absent or empty, unless ``overwrite``."""
    if out_root.exists() and not out_root.is_dir():
        raise DataError(f"{out_root}: output path exists and is not a folder")
    if out_root.is_dir() and any(out_root.iterdir()) and not overwrite:
        raise DataError(f"{out_root}: output folder is not empty; pass overwrite=True to replace it")


def make_staging(out_root: Path) -> Path:
    """An empty hidden folder beside ``out_root`` to build the output in."""
    out_root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.", suffix=".tmp", dir=out_root.parent))
    staging.chmod(0o755)  # mkdtemp makes it owner-only; the published folder should read like any other
    return staging


@contextlib.contextmanager
def staged(out_root: Path, overwrite: bool) -> Iterator[Path]:
    """A staging folder to build the output in (:func:`make_staging`), published onto ``out_root`` when
    the block ends, removed when it raises: ``out_root`` never holds a partial conversion."""
    staging = make_staging(out_root)
    try:
        yield staging
        publish(staging, out_root, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(staging: Path, out_root: Path, overwrite: bool) -> None:
    """Move the finished staging folder onto ``out_root`` (replacing it only if ``overwrite``)."""
    check_out_root(out_root, overwrite)
    if not out_root.exists():
        os.rename(staging, out_root)
        return
    # Swap: old folder aside, new one in, then drop the old one; a crash in between leaves
    # either the old or the new folder at out_root plus a hidden leftover, never a mix.
    trash = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.old-", dir=out_root.parent))
    os.rename(out_root, trash / "old")
    os.rename(staging, out_root)
    shutil.rmtree(trash, ignore_errors=True)
