"""Held or streamed: whether a training job's shard fits a worker's memory budget (no Ray here).

A Ray Train worker keeps its shard resident (today's path: one read, a seeded permutation per
epoch, exact resume) when its estimated size fits ``resources.cache_bytes``, and streams it from
the files every epoch otherwise. The choice is made here, on the driver, from the parquet footers
(no data read), before the job's fingerprint is taken: a streamed epoch visits the rows in another
order than a resident one, so the path is part of what produced a result
(``TrainJob.stream_buffer_rows``, 0 for a resident shard).

The estimate is the arrays a worker would hold: int64 ids, float32 numerics, float32 label, and
the teacher's float32 logit per row when distilling; rows are the training pool (the window minus
its validation tail) times the sample ratio ``r``, split evenly across the workers.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

from crossadapt.data import arrays as A
from crossadapt.data import file_checks
from crossadapt.featuremap import FeatureMap


def row_bytes(fm: FeatureMap, distill: bool = False) -> int:
    """Bytes of one row held by a worker: int64 ids, float32 numerics and label (+ a teacher logit)."""
    return 8 * len(fm.categorical_fields) + 4 * len(fm.numeric_fields) + 4 + (4 if distill else 0)


def pool_rows(root: str | os.PathLike, periods: Iterable[int], valid_fraction: float) -> int:
    """Rows of the periods before their validation tail, from the parquet footers."""
    return A.tail_start(sum(file_checks.period_row_counts(root, periods)), valid_fraction)


def shard_bytes(rows: int, r: float, num_workers: int, per_row: int) -> int:
    """Estimated bytes of one worker's shard of a sample of ratio ``r`` of ``rows``."""
    return math.ceil(rows * r / max(num_workers, 1)) * per_row


def stream_buffer_rows(shard: int, cache_bytes: int, buffer_rows: int) -> int:
    """0 (keep the shard resident) when ``shard`` bytes fit ``cache_bytes``, else ``buffer_rows``
    (stream it through a local shuffle buffer of that many rows)."""
    return 0 if shard <= cache_bytes else int(buffer_rows)
