"""The historical buffer: a bounded uniform reservoir of past samples (Algorithm R, per batch).

After ``seen`` rows have streamed through, every one of them is held with the same probability
``min(1, capacity / seen)``, whatever the batch sizes were. Rows are arrays dicts of the data
contract (``{"ids": (N, F_cat) int64, "dense": (N, F_num) float32, "label": (N,) float32}``); any
other keys with a leading row axis are carried along too (e.g. soft labels).

Vectorised Algorithm R: row number ``i`` (0-based over the whole stream) past the fill phase draws
``j ~ U{0..i}`` and replaces slot ``j`` if ``j < capacity``. The draws of one batch do not depend
on the buffer, so they are made at once; when several rows of a batch pick the same slot the last
one wins, exactly as the row-by-row loop would do.

Example:
    >>> import numpy as np
    >>> res = Reservoir(capacity=3, seed=0)
    >>> res.add({"ids": np.arange(10).reshape(10, 1), "dense": np.zeros((10, 0), np.float32),
    ...          "label": np.zeros(10, np.float32)})
    >>> len(res), res.seen
    (3, 10)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

Batch = dict[str, np.ndarray]


class Reservoir:
    """Uniform sample of at most ``capacity`` rows of everything added so far.

    Args:
        capacity: rows held at most (``>= 0``; 0 holds nothing).
        seed: seed of the replacement draws (and of :meth:`sample` when no ``rng`` is given).
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 0:
            raise ValueError(f"Reservoir: capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)
        self._data: Batch | None = None  # preallocated (capacity, ...) arrays, first _size rows valid
        self._size = 0
        self._seen = 0

    def __len__(self) -> int:
        return self._size

    @property
    def seen(self) -> int:
        """Rows offered to :meth:`add` so far."""
        return self._seen

    def _check_batch(self, batch: Mapping[str, np.ndarray]) -> int:
        if not batch:
            raise ValueError("Reservoir.add: empty batch dict")
        sizes = {k: np.asarray(v).shape[0] if np.ndim(v) else -1 for k, v in batch.items()}
        if len(set(sizes.values())) != 1 or -1 in sizes.values():
            raise ValueError(f"Reservoir.add: arrays need the same leading length, got {sizes}")
        if self._data is not None:
            if set(batch) != set(self._data):
                raise ValueError(f"Reservoir.add: keys {sorted(batch)} differ from earlier batches {sorted(self._data)}")
            for k, v in batch.items():
                if np.asarray(v).shape[1:] != self._data[k].shape[1:]:
                    raise ValueError(
                        f"Reservoir.add: {k!r} rows have shape {np.asarray(v).shape[1:]}, "
                        f"earlier batches {self._data[k].shape[1:]}"
                    )
        return next(iter(sizes.values()))

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        """Offer every row of ``batch`` (arrays with a common leading length) to the reservoir."""
        n = self._check_batch(batch)
        arrays = {k: np.asarray(v) for k, v in batch.items()}
        if self._data is None:  # the first batch fixes keys, row shapes and dtypes
            self._data = {k: np.empty((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in arrays.items()}
        if n == 0 or self.capacity == 0:
            self._seen += n
            return
        # Fill phase: the first ``capacity`` rows of the stream are all kept.
        fill = min(n, self.capacity - self._size)
        if fill > 0:
            for k, v in arrays.items():
                self._data[k][self._size : self._size + fill] = v[:fill]
            self._size += fill
        rest = n - fill
        if rest > 0:
            # Row with stream index i keeps slot j ~ U{0..i} if j < capacity.
            idx = self._seen + fill + np.arange(rest, dtype=np.int64)
            j = self._rng.integers(0, idx + 1)
            keep = np.flatnonzero(j < self.capacity)
            if keep.size:
                slots = j[keep]
                # Last writer wins per slot (row-by-row semantics), without relying on numpy's
                # unspecified order for repeated fancy-index assignment.
                rev_slots = slots[::-1]
                uniq, first_in_rev = np.unique(rev_slots, return_index=True)
                rows = keep[::-1][first_in_rev] + fill
                for k, v in arrays.items():
                    self._data[k][uniq] = v[rows]
        self._seen += n

    def clear(self) -> None:
        """Forget every held row and restart the count (the row layout is kept)."""
        self._size = 0
        self._seen = 0

    def sample(self, n: int, rng: np.random.Generator | None = None) -> Batch:
        """``min(n, len(self))`` distinct held rows, uniformly at random (``n`` may be 0).

        Raises ``RuntimeError`` if nothing was ever added (the row layout is unknown).
        """
        if n < 0:
            raise ValueError(f"Reservoir.sample: n must be >= 0, got {n}")
        if self._data is None:
            raise RuntimeError("Reservoir.sample: the reservoir has never received a batch")
        rng = self._rng if rng is None else rng
        m = min(int(n), self._size)
        idx = rng.choice(self._size, size=m, replace=False) if m else np.zeros(0, np.int64)
        return {k: v[idx].copy() for k, v in self._data.items()}

    def contents(self) -> Batch:
        """Copies of all held rows (slot order)."""
        if self._data is None:
            return {}
        return {k: v[: self._size].copy() for k, v in self._data.items()}

    def state_dict(self) -> dict[str, Any]:
        """Capacity, counters, held rows (numpy arrays) and the generator state (plain dict)."""
        return {
            "capacity": self.capacity,
            "seed": self.seed,
            "seen": self._seen,
            "size": self._size,
            "data": self.contents() if self._data is not None else None,
            "rng_state": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; later adds and samples continue exactly as the original would."""
        self.capacity = int(state["capacity"])
        self.seed = int(state.get("seed", self.seed))
        self._seen = int(state["seen"])
        self._size = int(state["size"])
        if self._size > self.capacity or self._size > self._seen:
            raise ValueError(f"Reservoir.load_state_dict: size {self._size} exceeds capacity or seen")
        data = state["data"]
        if data is None:
            self._data = None
        else:
            self._data = {}
            for k, v in data.items():
                v = np.asarray(v)
                if v.shape[0] != self._size:
                    raise ValueError(f"Reservoir.load_state_dict: {k!r} has {v.shape[0]} rows, size is {self._size}")
                buf = np.empty((self.capacity, *v.shape[1:]), dtype=v.dtype)
                buf[: self._size] = v
                self._data[k] = buf
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng_state"]
