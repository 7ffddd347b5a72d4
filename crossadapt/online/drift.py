"""Feature drift detection: per-field id histograms compared by Jensen-Shannon divergence.

For each categorical field the reference window fixes its ``top_k`` most frequent ids; a window is
then summarised as counts of those ids plus one "other" bucket (every id outside the top-k,
including ids never seen in the reference). New ids becoming popular therefore show up as mass
moving into "other", and a changed mix of known ids as mass moving between buckets.

The score of a window is the Jensen-Shannon **divergence** (natural log, so in ``[0, ln 2]``), not
scipy's ``jensenshannon`` which returns the *distance*, its square root. The aggregate over fields
is the mean of the top half of the per-field scores (see :class:`DriftDetector` for why).

The score drives the historical enhancement ratio ``r_enh`` (:func:`r_enh_from_score`): a stable
stream mixes more history into each batch, a shifting one less.

Example:
    >>> import numpy as np
    >>> det = DriftDetector(top_k=3, num_fields=1)
    >>> det.set_reference(np.array([[1], [1], [2], [3]]))
    >>> round(det.score(np.array([[1], [1], [2], [3]])).aggregate, 6)
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import rel_entr

Aggregate = Literal["top_half_mean", "mean", "max"]
_AGGREGATES = ("top_half_mean", "mean", "max")


def id_histogram(ids: np.ndarray, top_ids: np.ndarray) -> np.ndarray:
    """Counts of each id of ``top_ids`` in ``ids``, plus a last "other" bucket for every other id.

    Args:
        ids: int array ``(N,)`` of ids of one field.
        top_ids: distinct ids ``(k,)``; bucket ``i`` counts ``top_ids[i]``.

    Returns:
        int64 counts ``(k + 1,)`` summing to ``N``.
    """
    ids = np.asarray(ids).ravel()
    top = np.asarray(top_ids).ravel()
    k = top.size
    counts = np.zeros(k + 1, dtype=np.int64)
    if k == 0:
        counts[0] = ids.size
        return counts
    order = np.argsort(top, kind="stable")
    sorted_top = top[order]
    if np.any(sorted_top[1:] == sorted_top[:-1]):
        raise ValueError("id_histogram: top_ids must be distinct")
    # Sorted lookup: O(N log k), no dict and no vocabulary-sized array (ids may be huge hashes).
    pos = np.minimum(np.searchsorted(sorted_top, ids), k - 1)
    hit = sorted_top[pos] == ids
    counts[:k] = np.bincount(order[pos[hit]], minlength=k)
    counts[k] = ids.size - int(hit.sum())
    return counts


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence ``0.5 KL(P||M) + 0.5 KL(Q||M)``, ``M = (P+Q)/2``, in nats.

    ``p`` and ``q`` are non-negative counts or weights of the same shape; each is normalised to sum
    to one first. Empty buckets are fine (``0 log 0 = 0``). Identical inputs give 0, disjoint
    supports give ``ln 2``.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"js_divergence: shapes differ, {p.shape} vs {q.shape}")
    for name, x in (("p", p), ("q", q)):
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise ValueError(f"js_divergence: {name} must be finite and non-negative")
        if x.sum() <= 0:
            raise ValueError(f"js_divergence: {name} sums to zero (empty histogram)")
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)
    # rel_entr(x, y) = x log(x/y) with rel_entr(0, y) = 0; m > 0 wherever p or q is.
    js = 0.5 * rel_entr(p, m).sum() + 0.5 * rel_entr(q, m).sum()
    return float(min(max(js, 0.0), np.log(2.0)))  # clip float round-off to the exact range


@dataclass(frozen=True)
class DriftScore:
    """JS divergence of each field (``per_field``, shape ``(F,)``) and their ``aggregate``."""

    per_field: np.ndarray
    aggregate: float


class DriftDetector:
    """Compares recent id distributions against a reference window, field by field.

    Args:
        top_k: ids per field kept as their own bucket (the reference's most frequent ones).
        num_fields: categorical fields (columns of the ids arrays).
        aggregate: how per-field scores become one number.
            ``"top_half_mean"`` (default): mean of the largest ``ceil(F/2)`` scores. Drift usually
            hits a subset of fields (a new campaign, a new app version); a plain mean dilutes it by
            the number of unaffected fields (with 39 Criteo fields, a one-field shift would be
            39 times smaller), while ``max`` fires on sampling noise of one small field. The top
            half keeps a partial shift visible and still averages over several fields.
            ``"mean"`` and ``"max"`` are available for comparison.

    Example:
        >>> det = DriftDetector(top_k=100, num_fields=ids.shape[1])   # doctest: +SKIP
        >>> det.set_reference(previous_window_ids)                     # doctest: +SKIP
        >>> s = det.score(recent_ids).aggregate                        # doctest: +SKIP
    """

    def __init__(self, top_k: int, num_fields: int, aggregate: Aggregate = "top_half_mean") -> None:
        if top_k < 1:
            raise ValueError(f"DriftDetector: top_k must be >= 1, got {top_k}")
        if num_fields < 1:
            raise ValueError(f"DriftDetector: num_fields must be >= 1, got {num_fields}")
        if aggregate not in _AGGREGATES:
            raise ValueError(f"DriftDetector: aggregate must be one of {list(_AGGREGATES)}, got {aggregate!r}")
        self.top_k = int(top_k)
        self.num_fields = int(num_fields)
        self.aggregate = aggregate
        self.top_ids: list[np.ndarray] | None = None
        self.ref_counts: list[np.ndarray] | None = None

    @property
    def has_reference(self) -> bool:
        return self.top_ids is not None

    def _check_ids(self, ids: np.ndarray, what: str) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.num_fields:
            raise ValueError(f"DriftDetector.{what}: ids must have shape (N, {self.num_fields}), got {ids.shape}")
        if ids.shape[0] == 0:
            raise ValueError(f"DriftDetector.{what}: empty window (0 rows)")
        return ids

    def set_reference(self, ids: np.ndarray) -> None:
        """Fix the top-k ids of each field and their histogram from a reference window ``(N, F)``."""
        ids = self._check_ids(ids, "set_reference")
        tops, counts = [], []
        for f in range(self.num_fields):
            uniq, cnt = np.unique(ids[:, f], return_counts=True)
            # Most frequent first; ties broken by the smaller id so the choice is deterministic.
            order = np.lexsort((uniq, -cnt))[: self.top_k]
            top = uniq[order].astype(np.int64)
            tops.append(top)
            counts.append(id_histogram(ids[:, f], top))
        self.top_ids, self.ref_counts = tops, counts

    def score(self, recent_ids: np.ndarray) -> DriftScore:
        """JS divergence of each field of ``recent_ids`` ``(N, F)`` against the reference."""
        if self.top_ids is None or self.ref_counts is None:
            raise RuntimeError("DriftDetector.score: call set_reference first")
        ids = self._check_ids(recent_ids, "score")
        per_field = np.array(
            [js_divergence(self.ref_counts[f], id_histogram(ids[:, f], self.top_ids[f])) for f in range(self.num_fields)]
        )
        return DriftScore(per_field, aggregate_scores(per_field, self.aggregate))

    def state_dict(self) -> dict[str, Any]:
        """Plain-python state (lists of ints) for checkpoints; JSON-serialisable."""
        return {
            "top_k": self.top_k,
            "num_fields": self.num_fields,
            "aggregate": self.aggregate,
            "top_ids": None if self.top_ids is None else [t.tolist() for t in self.top_ids],
            "ref_counts": None if self.ref_counts is None else [c.tolist() for c in self.ref_counts],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the field count must match this detector."""
        if int(state["num_fields"]) != self.num_fields:
            raise ValueError(f"DriftDetector.load_state_dict: state has {state['num_fields']} fields, expected {self.num_fields}")
        self.top_k = int(state["top_k"])
        self.aggregate = state.get("aggregate", "top_half_mean")
        if state["top_ids"] is None:
            self.top_ids, self.ref_counts = None, None
        else:
            self.top_ids = [np.asarray(t, dtype=np.int64) for t in state["top_ids"]]
            self.ref_counts = [np.asarray(c, dtype=np.int64) for c in state["ref_counts"]]


def aggregate_scores(per_field: np.ndarray, how: Aggregate = "top_half_mean") -> float:
    """One number from per-field scores (see :class:`DriftDetector` for the choices)."""
    s = np.asarray(per_field, dtype=np.float64)
    if how == "mean":
        return float(s.mean())
    if how == "max":
        return float(s.max())
    if how == "top_half_mean":
        h = (s.size + 1) // 2
        return float(np.sort(s)[-h:].mean())
    raise ValueError(f"aggregate must be one of {list(_AGGREGATES)}, got {how!r}")


def r_enh_from_score(s: float, theta_low: float, theta_high: float, r_min: float, r_max: float) -> float:
    """Historical enhancement ratio from a drift score.

    ``s <= theta_low`` (stable): ``r_max`` (history is still representative, mix more of it);
    ``s >= theta_high`` (shift): ``r_min`` (history is stale, mix less); linear in between.
    """
    if not theta_low < theta_high:
        raise ValueError(f"r_enh_from_score: need theta_low < theta_high, got {theta_low}, {theta_high}")
    if not np.isfinite(s):
        raise ValueError(f"r_enh_from_score: drift score must be finite, got {s}")
    if s <= theta_low:
        return float(r_max)
    if s >= theta_high:
        return float(r_min)
    t = (s - theta_low) / (theta_high - theta_low)
    return float(r_max + t * (r_min - r_max))
