"""Ray Data access to the encoded logs: read periods, seeded sampling at ratio ``r``, time splits.

Every file is checked against the data contract on the driver before a dataset is built
(``crossadapt.data.file_checks``: footer, schema and every value, once per file and process), so a
bad file is a ``DataError`` naming its file, column and row before any worker starts, never an
error inside a Ray Train worker that its failure handling would retry. Rows reach Ray Train
workers as column batches that ``crossadapt.data.arrays.columns_to_arrays`` turns into the arrays
dict.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from crossadapt.data import arrays as A
from crossadapt.data import file_checks
from crossadapt.data.sampling import PositiveRatePlan
from crossadapt.errors import DataError
from crossadapt.featuremap import FeatureMap


def _columns(fm: FeatureMap) -> list[str]:
    return [fm.label, *fm.categorical_names, *fm.numeric_names]


def read_logs(root: str | os.PathLike, periods: Iterable[int], fm: FeatureMap) -> ray.data.Dataset:
    """A dataset of the given periods (rows in time order), only the columns the model needs."""
    # Time splits and tail validation rely on row order, which Ray Data does not keep by default.
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    files = A.period_files(root, periods)
    file_checks.check_files(files, fm)
    return ray.data.read_parquet([str(f) for f in files], file_extensions=None).select_columns(_columns(fm))


def sample(
    root: str | os.PathLike,
    periods: Iterable[int],
    fm: FeatureMap,
    r: float,
    seed: int,
    mode: str = "uniform",
) -> ray.data.Dataset:
    """Seeded sample of ratio ``r`` of the periods.

    ``uniform``: each row kept independently with probability ``r`` (Bernoulli, seeded).
    ``stratified``: exactly ``round(r * n_k)`` rows from each period ``k``, so every period keeps its share.
    """
    periods = list(periods)
    A.check_sample_ratio(r)
    if r == 1:
        return read_logs(root, periods, fm)
    if mode == "uniform":
        return read_logs(root, periods, fm).random_sample(r, seed=seed)
    if mode == "stratified":
        logs = [read_logs(root, [k], fm) for k in periods]  # checks the files first: a broken footer is named
        counts = file_checks.period_row_counts(root, periods)
        parts = [ds.random_shuffle(seed=seed + k).limit(max(1, int(round(r * n))))
                 for k, ds, n in zip(periods, logs, counts)]
        return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    raise DataError(f"unknown sample mode {mode!r}; use 'uniform' or 'stratified'")


def time_split(ds: ray.data.Dataset, valid_fraction: float) -> tuple[ray.data.Dataset, ray.data.Dataset | None]:
    """Split off the last ``valid_fraction`` of rows (time order, no shuffle) for validation."""
    if valid_fraction <= 0:
        return ds, None
    train, valid = ds.train_test_split(test_size=valid_fraction, shuffle=False)
    return train, valid


def iter_arrays(it, fm: FeatureMap, batch_size: int = 65536, source: str = "dataset") -> Iterator[A.Arrays]:
    """Arrays dicts from a Ray ``DataIterator`` (a worker's shard) or a Dataset."""
    offset = 0
    for cols in it.iter_batches(batch_size=batch_size, batch_format="numpy"):
        a = A.columns_to_arrays(cols, fm, source, row_offset=offset)
        offset += A.num_rows(a)
        yield a


def materialize_arrays(it, fm: FeatureMap, source: str = "dataset") -> A.Arrays:
    """All rows of a shard or dataset as one arrays dict (for sets that fit in memory)."""
    parts = list(iter_arrays(it, fm, source=source))
    return A.concat(parts) if parts else A.empty_arrays(fm)


def dataset_from_arrays(a: A.Arrays, fm: FeatureMap) -> ray.data.Dataset:
    """An in-memory dataset with the parquet column layout (tests and benchmarks)."""
    cols = {fm.label: a["label"].astype(np.int8)}
    for j, name in enumerate(fm.categorical_names):
        cols[name] = a["ids"][:, j]
    for j, name in enumerate(fm.numeric_names):
        cols[name] = a["dense"][:, j]
    return ray.data.from_arrow(pa.table(cols))


def window_split(
    root: str | os.PathLike,
    periods: Iterable[int],
    fm: FeatureMap,
    valid_fraction: float,
    r: float = 1.0,
    seed: int = 0,
    mode: str = "uniform",
    positive: PositiveRatePlan | None = None,
) -> tuple[ray.data.Dataset, ray.data.Dataset | None]:
    """Training pool and validation split of a window, then a seeded sample of ratio ``r`` of the pool
    (``window_pieces`` then ``sample_pool``: one call of each)."""
    A.check_sample_ratio(r)
    pool, valid = window_pieces(root, periods, fm, valid_fraction)
    return sample_pool(pool, fm, r, seed, mode, positive), valid


def window_pieces(
    root: str | os.PathLike, periods: Iterable[int], fm: FeatureMap, valid_fraction: float,
) -> tuple[list[ray.data.Dataset], ray.data.Dataset | None]:
    """The window's training pool, one materialized piece per period, and its validation split: the
    last ``valid_fraction`` of rows in time order (never trained on). Reading and cutting the window
    is the expensive part (one Ray Data execution): draw every sample of a stage from one call."""
    periods = list(periods)
    logs = read_logs(root, periods, fm)  # checks the files first: a broken footer is named, not counted
    counts = file_checks.period_row_counts(root, periods)
    total = sum(counts)
    cut = A.tail_start(total, valid_fraction)
    if cut <= 0:
        raise DataError(f"{root}: periods {periods} hold {total} rows, too few for a validation split")
    bounds = sorted({b for b in np.cumsum(counts)[:-1].tolist() if b < cut} | {cut})
    pieces = logs.split_at_indices(bounds)
    pool, valid = pieces[:-1], pieces[-1] if cut < total else None
    if cut == total:
        pool = pieces[:-1] if pieces[-1].count() == 0 else pieces
    return pool, valid


def sample_pool(
    pool: list[ray.data.Dataset],
    fm: FeatureMap,
    r: float = 1.0,
    seed: int = 0,
    mode: str = "uniform",
    positive: PositiveRatePlan | None = None,
) -> ray.data.Dataset:
    """A seeded sample of ratio ``r`` of a pool (``window_pieces``): ``uniform`` (Bernoulli per row,
    seeded), ``stratified`` (exactly ``round(r * n_k)`` rows of each period ``k``'s share of the
    pool) or ``positive_rate`` (each click kept with ``positive.keep_pos``, each other row with
    ``positive.keep_neg``: the plan of this pool, ``crossadapt.data.sampling.positive_rate_plan``;
    positives come first in the sample). ``r >= 1``: the whole pool."""
    A.check_sample_ratio(r)
    whole = pool[0].union(*pool[1:]) if len(pool) > 1 else pool[0]
    if r >= 1:
        return whole
    if mode == "uniform":
        return whole.random_sample(r, seed=seed)
    if mode == "stratified":
        parts = [p.random_shuffle(seed=seed + i).limit(max(1, int(round(r * p.count())))) for i, p in enumerate(pool)]
        return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    if mode == "positive_rate":
        if positive is None or positive.r != r:
            raise DataError(f"positive_rate sample of ratio {r}: needs the pool's PositiveRatePlan of that ratio")
        pos = whole.map_batches(_label_rows(fm.label, 1), batch_format="pyarrow", batch_size=None)
        neg = whole.map_batches(_label_rows(fm.label, 0), batch_format="pyarrow", batch_size=None)
        return pos.random_sample(positive.keep_pos, seed=seed).union(
            neg.random_sample(positive.keep_neg, seed=seed + 1))  # Bernoulli per row, as label_mask
    raise DataError(f"unknown sample mode {mode!r}; use 'uniform', 'stratified' or 'positive_rate'")


def _label_rows(label: str, value: int):
    """A batch function keeping the rows whose ``label`` equals ``value``."""

    def keep(batch: pa.Table) -> pa.Table:
        return batch.filter(pc.equal(batch[label], value))

    return keep
