"""How a Ray Train worker holds its datasets: resident when they fit, streamed when they do not.

A training shard is streamed when its job says so (``TrainJob.stream_buffer_rows > 0``, decided on
the driver by ``crossadapt.data.shard_budget``): every epoch reads it anew through Ray Data's
``iter_batches`` with a local shuffle buffer of that many rows, seeded per (seed, rank, phase,
epoch), two batches prefetched; the teacher's logits are computed per batch. Ranks agree every
``ROUND_BATCHES`` batches (one all-reduce) on how many batches all of them have, so DDP never
waits for a rank whose shard ran out, and on whether one met a data error, which then stops every
rank at the same point (``SharedDataError``). Ray Train splits with ``equal=True``, so the
counts agree and nothing is dropped in practice.

A validation split (rank 0) is read into memory while it fits ``resources.cache_bytes`` and is
otherwise evaluated from Ray Data in chunks of 65,536 rows, the batches the resident path uses:
the same probabilities either way, and only scores and labels are held.
"""

from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa
import ray
import ray.data
import torch

from crossadapt.data import arrays as A
from crossadapt.errors import DataError
from crossadapt.featuremap import FeatureMap
from crossadapt.train import engine
from crossadapt.train.engine import TrainJob

#: Batches every rank fetches between two agreements.
ROUND_BATCHES = 4
#: Rows per chunk when a split is read into memory or evaluated (``engine.predict_logits``' batch).
CHUNK_ROWS = 65536


class SharedDataError(DataError):
    """A data error some rank met, raised on every rank after the same agreement; ``local`` is the
    one this rank met (None when another rank met it)."""

    def __init__(self, local: DataError | None) -> None:
        super().__init__(str(local) if local is not None else "a data error on another rank")
        self.local = local


def as_data_error(e: BaseException, source: str) -> DataError:
    """The data error behind ``e``: a ``DataError`` raised here or in a Ray Data read task (which Ray
    wraps), or pyarrow failing to decode a page; any other error is raised again as it is."""
    c: BaseException | None = e
    seen: set[int] = set()
    while c is not None and id(c) not in seen:
        seen.add(id(c))
        cause = getattr(c, "cause", None)  # a RayTaskError's original exception
        if isinstance(cause, DataError):
            return DataError(str(cause))
        if isinstance(c, DataError) and not isinstance(c, ray.exceptions.RayError):
            return c
        if isinstance(c, pa.ArrowException):
            return DataError(f"{source}: reading the data failed: {' '.join(str(c).split())}")
        c = cause if isinstance(cause, BaseException) else (c.__cause__ or c.__context__)
    raise e


class StreamedShard:
    """A training shard read through Ray Data every epoch (``engine.StreamedTrain``).

    ``rows`` counts the rows of the last epoch on this rank, ``held_rows`` the most rows this object
    held at once (one round of batches; Ray Data's shuffle buffer holds ``buffer_rows`` more).
    """

    def __init__(self, it: "ray.data.DataIterator", fm: FeatureMap, key: str, coll: engine.Collective,
                 job: TrainJob, device: torch.device) -> None:
        self.it, self.fm, self.key, self.coll, self.job, self.device = it, fm, key, coll, job, device
        self.buffer_rows = job.stream_buffer_rows
        self.teacher = engine.job_teacher(job, fm, device)
        self.rows = self.held_rows = 0

    def epoch(self, seed: int) -> Iterator[engine.Tensors]:
        source = f"dataset {self.key!r} (streamed shard of rank {self.coll.rank})"
        batches = iter(self.it.iter_batches(batch_size=self.job.batch_size, batch_format="numpy", drop_last=False,
                                            local_shuffle_buffer_size=self.buffer_rows,
                                            local_shuffle_seed=seed % 2**32, prefetch_batches=2))
        self.rows = 0
        done = False
        while True:
            got: list[A.Arrays] = []
            error = None
            try:
                while not done and len(got) < ROUND_BATCHES:
                    cols = next(batches, None)
                    if cols is None:
                        done = True
                    else:
                        got.append(A.columns_to_arrays(cols, self.fm, source, row_offset=self.rows))
                        self.rows += A.num_rows(got[-1])
            except Exception as e:  # a data error is agreed on below; any other error propagates
                error = as_data_error(e, source)
            # one all-reduce: -1 when some rank met a data error, else the fewest batches any rank has
            agreed = int(self.coll.min(-1 if error is not None else len(got)))
            if agreed < 0:
                raise SharedDataError(error)
            if agreed == 0:
                return
            self.held_rows = max(self.held_rows, sum(A.num_rows(a) for a in got))
            for a in got[:agreed]:
                t = engine.to_tensors(a, self.device)
                b = {"ids": t["ids"], "dense": engine.dense_or_none(t), "label": t["label"]}
                if self.teacher is not None:
                    b["teacher"] = engine.shifted_teacher_logits(self.teacher, t, self.job)
                yield b

    def report(self) -> dict[str, Any]:
        return {"mode": "streamed", "rows": self.rows, "held_rows": self.held_rows, "buffer_rows": self.buffer_rows}


class StreamedEval:
    """A split evaluated from Ray Data at each pass, in chunks of ``CHUNK_ROWS`` rows (rank 0 alone)."""

    def __init__(self, it: "ray.data.DataIterator", fm: FeatureMap, key: str) -> None:
        self.it, self.fm, self.key = it, fm, key

    def __iter__(self) -> Iterator[A.Arrays]:
        source = f"dataset {self.key!r}"
        rows = 0
        try:
            for cols in self.it.iter_batches(batch_size=CHUNK_ROWS, batch_format="numpy", prefetch_batches=1):
                a = A.columns_to_arrays(cols, self.fm, source, row_offset=rows)
                rows += A.num_rows(a)
                yield a
        except Exception as e:
            raise as_data_error(e, source) from None


def hold_or_stream(it: "ray.data.DataIterator", fm: FeatureMap, key: str, budget: int,
                   device: torch.device) -> tuple[engine.Tensors | StreamedEval, dict[str, Any]]:
    """A split read into memory (on ``device``) when its arrays fit ``budget`` bytes, else a
    ``StreamedEval`` over it (what was read to find out is dropped); with a report of which."""
    parts: list[A.Arrays] = []
    held = rows = 0
    for cols in it.iter_batches(batch_size=CHUNK_ROWS, batch_format="numpy", prefetch_batches=1):
        a = A.columns_to_arrays(cols, fm, key, row_offset=rows)
        rows += A.num_rows(a)
        held += sum(v.nbytes for v in a.values())
        if held > budget:
            return StreamedEval(it, fm, key), {"mode": "streamed", "budget_bytes": budget}
        parts.append(a)
    a = A.concat(parts) if parts else A.empty_arrays(fm)
    return engine.to_tensors(a, device), {"mode": "resident", "rows": rows, "bytes": held}
