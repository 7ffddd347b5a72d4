"""Feature drift detection, causal and size-free: per-field id histograms compared by Jensen-Shannon divergence.

**Histograms.** For each categorical field a set of top ids (the ``top_k`` most frequent of a
selection window) defines ``k + 1`` buckets: one per top id, plus one "other" bucket for every
other id (ids never seen included). New ids becoming popular show up as mass moving into "other",
a changed mix of known ids as mass moving between buckets.

**Divergence.** The Jensen-Shannon *divergence* in nats (in ``[0, ln 2]``), not scipy's
``jensenshannon``, which returns the *distance* (its square root).

**Why raw JS is not size-free.** Let ``P`` and ``Q`` be the histograms of two independent samples
of sizes ``n`` and ``m`` from one distribution ``p`` over ``K`` buckets, ``M = (P + Q) / 2`` and
``d = P - Q``. Then ``P = M + d/2``, ``Q = M - d/2`` and ``KL(P||M) = sum (M + d/2) ln(1 + d/(2M))
= sum d**2 / (8 M) + O(d**3)``, the same for ``Q``, so ``JS = sum_i d_i**2 / (8 M_i) + O(d**3)``.
With ``E[d_i**2] = p_i (1 - p_i) (1/n + 1/m)`` and ``M_i ~ p_i``::

    E[JS] ~ (1/n + 1/m) / 8 * sum_i (1 - p_i) = (K - 1) / 8 * (1/n + 1/m)      (K buckets with p_i > 0)

(:func:`first_order_null`): 0.05 at ``n = m = 500`` with 101 buckets, more than twice
``theta_low``, for traffic that did not change at all. The expansion needs ``n p_i >> 1`` in every
bucket. On a Zipf(1.1) field with top ids picked from a separate sample it happens to stay within
10 % from W = 500 to 20,000 (errors of rare and common buckets partly cancel), but a bucket that
expects less than one row contributes about ``p_i ln 2``, not ``(1 - p_i) / (4 n)``, so on a flat
field (hashed ids, every bucket rare) it is off by +290 % at W = 500 over 5,000 ids (the corrected
score would hide a drift of 0.037) and by -17 % over 300 ids (measured, 60 draws each). The
correction used here is exact for any field instead:

**Permutation null** (:func:`permutation_null`). Given the pooled counts ``c = r + q`` of the
reference and recent windows, if the traffic did not change the ``n + m`` rows are exchangeable,
so the reference's counts are a random split (multivariate hypergeometric) of ``n`` rows from
``c``. The mean JS of such random splits is ``E[JS | c]`` under no drift, so ``JS - E_perm[JS]``
has mean 0 without drift (tower rule), at any window size and bucket probabilities, up to the Monte
Carlo error of ``null_draws`` splits and a relative ``O(1/W)`` from how the splits are drawn
(measured within 2 % of the true no-drift JS on the Zipf and flat fields above). Splitting the
reference window in halves instead would give the no-drift JS of ``W/2`` against ``W/2`` rows, and
scaling it to ``W`` against ``W`` is the first-order relation again. Either way the buckets must be
fixed without looking at either window: choosing the top ids on the reference window itself
inflates its counts of the ids picked (+0.006 to +0.008 at W = 500-1000, which no symmetric
correction removes). Hence three windows.

**Windows** (:class:`WindowDriftDetector`). Rows are observed in time order, after they were
trained on. Three disjoint consecutive windows of ``W`` rows each: a *selection* window fixes the
top ids, the next one is the *reference* (its histogram), and *recent* is the last ``W`` rows seen
after the reference (sliding, refreshed at every :meth:`WindowDriftDetector.observe`). The score is
``JS(reference, recent) - permutation null`` per field, aggregated over fields. A score at or above
``theta_high`` declares a shift; the detector then selects and fixes a new reference from the next
``2 W`` rows (so the reference describes the regime after the shift, and a gradual drift that
accumulates against a fixed reference is caught too, which comparing adjacent windows would miss)
and holds the shift's score until a recent window after the new reference is full (``3 W`` rows).
Before the first full set of windows the score is 0 (no evidence of drift). Memory: a ring of the
last ``W`` rows' ids and ``F x (k + 1)`` counts.

The score drives the historical enhancement ratio ``r_enh`` (:func:`r_enh_from_score`): a stable
stream mixes more history into each batch, a shifting one less.

Example:
    >>> import numpy as np
    >>> det = WindowDriftDetector(num_fields=1, window=4, top_k=3, theta_high=0.1)
    >>> det.observe(np.array([[1], [1], [2], [3]] * 3))  # selection, reference, recent
    False
    >>> det.fresh, round(det.score, 6) <= 0.0
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal

import numpy as np
from scipy.special import rel_entr

Aggregate = Literal["top_half_mean", "mean", "max"]
_AGGREGATES = ("top_half_mean", "mean", "max")
Phase = Literal["select", "reference", "score"]
_PHASES = ("select", "reference", "score")

#: Random splits per refresh for the permutation null: its Monte Carlo error is the null's
#: per-field spread / sqrt(32), below 1.5e-3 at W = 500 with 101 buckets and smaller above.
NULL_DRAWS = 32


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


def top_ids(ids: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most frequent ids of ``ids`` ``(N,)``, most frequent first, ties to the smaller id."""
    uniq, cnt = np.unique(np.asarray(ids).ravel(), return_counts=True)
    return uniq[np.lexsort((uniq, -cnt))[:k]].astype(np.int64)


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
    return float(js_divergence_rows(p, q))


def js_divergence_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """:func:`js_divergence` along the last axis of count arrays of one shape (no input checks)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    # An empty row (possible only in a random split of a tiny window) reads as all zeros.
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(axis=-1, keepdims=True), 1e-300)
    m = 0.5 * (p + q)
    # rel_entr(x, y) = x log(x/y) with rel_entr(0, y) = 0; m > 0 wherever p or q is.
    js = 0.5 * rel_entr(p, m).sum(axis=-1) + 0.5 * rel_entr(q, m).sum(axis=-1)
    return np.clip(js, 0.0, np.log(2.0))  # float round-off outside the exact range


def first_order_null(num_buckets: int, n: int, m: int) -> float:
    """``(K - 1) / 8 * (1/n + 1/m)``: the mean JS of two samples of sizes ``n`` and ``m`` of one
    distribution over ``K`` buckets, to first order (see the module docstring; exact only when
    every bucket expects many rows in both samples)."""
    return (num_buckets - 1) / 8.0 * (1.0 / n + 1.0 / m)


def permutation_null(ref_counts: np.ndarray, recent_counts: np.ndarray, draws: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Mean JS of ``draws`` random splits of the pooled rows of two windows, per field.

    Args:
        ref_counts, recent_counts: counts ``(F, K)`` of the two windows (one row per field).
        draws: random splits per field.
        rng: the splits' generator.

    Returns:
        ``(F,)``: per field, the JS that two windows of these sizes show on average when the pooled
        rows are split at random, i.e. when nothing changed between them.

    Each pooled row goes to the first window with probability ``n / (n + m)`` (binomial thinning,
    one vectorised draw): given the first window's size this is exactly the multivariate
    hypergeometric split, and the spread of that size (about ``sqrt(n)``) moves the mean by a
    relative ``O(1/n)``. (Exact hypergeometric draws, bucket by bucket, cost 10-50 times more.)
    """
    r = np.asarray(ref_counts, dtype=np.int64)
    c = r + np.asarray(recent_counts, dtype=np.int64)
    n, total = r.sum(axis=1, keepdims=True), c.sum(axis=1, keepdims=True)
    side = rng.binomial(c[None], (n / np.maximum(total, 1))[None], size=(draws, *c.shape))
    return js_divergence_rows(side, c[None] - side).mean(axis=0)


def aggregate_scores(per_field: np.ndarray, how: Aggregate = "top_half_mean") -> float:
    """One number from per-field scores.

    ``top_half_mean`` (default): mean of the largest ``ceil(F/2)`` scores. Drift usually hits a
    subset of fields (a new campaign, a new app version); a plain mean dilutes it by the number of
    unaffected fields (with 39 Criteo fields, a one-field shift would be 39 times smaller), while
    ``max`` fires on sampling noise of one small field. ``mean`` and ``max`` are there to compare.
    """
    s = np.asarray(per_field, dtype=np.float64)
    if how == "mean":
        return float(s.mean())
    if how == "max":
        return float(s.max())
    if how == "top_half_mean":
        h = (s.size + 1) // 2
        return float(np.sort(s)[-h:].mean())
    raise ValueError(f"aggregate must be one of {list(_AGGREGATES)}, got {how!r}")


class WindowDriftDetector:
    """Causal, size-free drift score on fixed windows of ``window`` rows (see the module docstring).

    Args:
        num_fields: categorical fields (columns of the ids arrays).
        window: rows ``W`` of each of the selection, reference and recent windows.
        top_k: ids per field kept as their own bucket.
        theta_high: a score at or above it declares a shift (and starts a new reference).
        aggregate: how per-field scores become one number (:func:`aggregate_scores`).
        null_draws: random splits per refresh for the permutation null.
        seed: seed of the splits (each refresh draws from ``(seed, rows seen)``, so a replay from a
            saved state gives the same scores).

    Attributes:
        score: the current score: the last one measured, or held (see :attr:`fresh`).
        per_field: the per-field scores behind the last measured ``score`` (``None`` before one).
        raw_per_field: the same before the no-drift level is subtracted (diagnostics).
        fresh: whether ``score`` was measured at the last :meth:`observe` (``False`` while the
            windows refill after a shift, or before the first full set: the score is then held).
        shifts: shifts declared so far.

    Example:
        >>> det = WindowDriftDetector(ids.shape[1], window=2000, top_k=100, theta_high=0.1)  # doctest: +SKIP
        >>> for batch in stream:                                                             # doctest: +SKIP
        ...     r = r_enh_from_score(det.score, ...)   # decided on rows already seen
        ...     train(batch, r); shifted = det.observe(batch["ids"])
    """

    def __init__(self, num_fields: int, window: int, top_k: int, theta_high: float,
                 aggregate: Aggregate = "top_half_mean", null_draws: int = NULL_DRAWS, seed: int = 0) -> None:
        for name, v in (("num_fields", num_fields), ("window", window), ("top_k", top_k), ("null_draws", null_draws)):
            if v < 1:
                raise ValueError(f"WindowDriftDetector: {name} must be >= 1, got {v}")
        if aggregate not in _AGGREGATES:
            raise ValueError(f"WindowDriftDetector: aggregate must be one of {list(_AGGREGATES)}, got {aggregate!r}")
        self.num_fields, self.window, self.top_k = int(num_fields), int(window), int(top_k)
        self.theta_high, self.aggregate = float(theta_high), aggregate
        self.null_draws, self.seed = int(null_draws), int(seed)
        self._ring = np.zeros((self.window, self.num_fields), dtype=np.int64)  # slot = row index % W
        self.rows_seen = 0
        self.phase: Phase = "select"
        self.phase_start = 0  # row index where the current phase began
        self._top: list[np.ndarray] | None = None
        self._ref = np.zeros((self.num_fields, self.top_k + 1), dtype=np.int64)
        self._recent = np.zeros_like(self._ref)
        self.score = 0.0
        self.per_field: np.ndarray | None = None
        self.raw_per_field: np.ndarray | None = None
        self.fresh = False
        self.shifts = 0

    # ------------------------------------------------------------ counting

    def _buckets(self, ids: np.ndarray) -> np.ndarray:
        """Counts ``(F, top_k + 1)`` of ``ids`` ``(N, F)``: top ids first (zero padded), "other" last."""
        out = np.zeros((self.num_fields, self.top_k + 1), dtype=np.int64)
        assert self._top is not None
        for f, top in enumerate(self._top):
            h = id_histogram(ids[:, f], top)
            out[f, : top.size] = h[:-1]
            out[f, -1] = h[-1]
        return out

    def _push(self, rows: np.ndarray) -> None:
        """Append ``rows`` (at most ``W``) to the ring, keeping the window counts of the phase."""
        m = rows.shape[0]
        idx = self.rows_seen + np.arange(m)
        slots = idx % self.window
        if self.phase == "score":
            # Rows leaving the ring leave the recent window if they were in it (after the reference).
            gone = idx - self.window
            counted = gone >= self.phase_start
            if counted.any():
                self._recent -= self._buckets(self._ring[slots[counted]])
            self._recent += self._buckets(rows)
        elif self.phase == "reference":
            self._ref += self._buckets(rows)
        self._ring[slots] = rows
        self.rows_seen += m

    def _phase_rows(self) -> int:
        return self.rows_seen - self.phase_start

    def _next_phase(self) -> None:
        if self.phase == "select" and self._phase_rows() == self.window:
            # The ring holds exactly the selection window's rows.
            self._top = [top_ids(self._ring[:, f], self.top_k) for f in range(self.num_fields)]
            self.phase, self.phase_start = "reference", self.rows_seen
            self._ref[:] = 0
        elif self.phase == "reference" and self._phase_rows() == self.window:
            self.phase, self.phase_start = "score", self.rows_seen
            self._recent[:] = 0

    # ------------------------------------------------------------ public

    def observe(self, ids: np.ndarray) -> bool:
        """Take rows ``(N, F)`` seen since the last call (in time order); refresh the score.

        Returns whether a shift was declared (the score reached ``theta_high``).
        """
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.num_fields:
            raise ValueError(f"WindowDriftDetector.observe: ids must have shape (N, {self.num_fields}), got {ids.shape}")
        i = 0
        while i < ids.shape[0]:  # pieces that end exactly at phase boundaries
            room = self.window - self._phase_rows() if self.phase != "score" else self.window
            piece = ids[i : i + room]
            self._push(piece)
            i += piece.shape[0]
            self._next_phase()
        self.fresh = self.phase == "score" and self._phase_rows() >= self.window
        if not self.fresh:
            return False
        rng = np.random.default_rng([self.seed, self.rows_seen])
        self.raw_per_field = js_divergence_rows(self._ref, self._recent)
        self.per_field = self.raw_per_field - permutation_null(self._ref, self._recent, self.null_draws, rng)
        self.score = aggregate_scores(self.per_field, self.aggregate)
        if self.score < self.theta_high:
            return False
        # Shift: the next 2W rows select and count a reference of the new regime; the score is held.
        self.phase, self.phase_start = "select", self.rows_seen
        self.shifts += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (numpy arrays and plain python values)."""
        return {
            "num_fields": self.num_fields, "window": self.window, "top_k": self.top_k,
            "theta_high": self.theta_high, "aggregate": self.aggregate, "null_draws": self.null_draws,
            "seed": self.seed, "rows_seen": self.rows_seen, "phase": self.phase, "phase_start": self.phase_start,
            "ring": self._ring.copy(), "top_ids": None if self._top is None else [t.copy() for t in self._top],
            "ref": self._ref.copy(), "recent": self._recent.copy(), "score": self.score,
            "per_field": None if self.per_field is None else self.per_field.copy(),
            "raw_per_field": None if self.raw_per_field is None else self.raw_per_field.copy(), "fresh": self.fresh,
            "shifts": self.shifts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the field count and window must match this detector's."""
        for key in ("num_fields", "window"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(f"WindowDriftDetector.load_state_dict: state has {key} {state[key]}, "
                                 f"this detector {getattr(self, key)}")
        if state["phase"] not in _PHASES:
            raise ValueError(f"WindowDriftDetector.load_state_dict: unknown phase {state['phase']!r}")
        self.top_k, self.theta_high, self.aggregate = int(state["top_k"]), float(state["theta_high"]), state["aggregate"]
        self.null_draws, self.seed = int(state["null_draws"]), int(state["seed"])
        self._ref = np.zeros((self.num_fields, self.top_k + 1), dtype=np.int64)
        self._recent = np.zeros_like(self._ref)
        self.rows_seen, self.phase, self.phase_start = int(state["rows_seen"]), state["phase"], int(state["phase_start"])
        self._ring[:] = np.asarray(state["ring"])
        self._top = None if state["top_ids"] is None else [np.asarray(t, dtype=np.int64) for t in state["top_ids"]]
        self._ref[:] = np.asarray(state["ref"])
        self._recent[:] = np.asarray(state["recent"])
        self.score = float(state["score"])
        self.per_field = None if state["per_field"] is None else np.asarray(state["per_field"], dtype=np.float64)
        raw = state.get("raw_per_field")
        self.raw_per_field = None if raw is None else np.asarray(raw, dtype=np.float64)
        self.fresh, self.shifts = bool(state["fresh"]), int(state["shifts"])


@dataclass(frozen=True)
class DriftTrace:
    """The score of a :class:`WindowDriftDetector` refreshed every ``every`` rows of a stream.

    Positions count the stream's rows from 0. ``scores[i]`` was measured on the rows before
    ``ends[i]`` and decides every row from ``ends[i]`` until the next refresh; ``initial`` (the score
    after the rows seen before the stream) decides the rows before ``ends[0]``. ``shifts[i]`` marks
    the refreshes that declared a shift. The trace depends on the traffic alone, so every online
    method and seed replays the same one.
    """

    every: int
    initial: float
    ends: np.ndarray  # (R,) int64, increasing
    scores: np.ndarray  # (R,) float64
    fresh: np.ndarray  # (R,) bool: measured (True) or held while the windows refill
    shifts: np.ndarray  # (R,) bool

    def score_at(self, pos: int) -> float:
        """The score that decides the row at stream position ``pos`` (measured on rows before it)."""
        i = int(np.searchsorted(self.ends, pos, side="right"))
        return float(self.scores[i - 1]) if i else self.initial

    def summary(self, start: int, end: int) -> dict[str, Any]:
        """Drift figures of the rows ``[start, end)`` (a period): the score in force at its first row,
        the largest score in force for any of its rows, and the shifts its rows caused (with the
        row offsets, within the span, at which they were declared)."""
        inside = (self.ends > start) & (self.ends < end)
        first = self.score_at(start)
        caused = (self.ends > start) & (self.ends <= end) & self.shifts
        return {"drift_score": first, "drift_score_max": float(max([first, *self.scores[inside].tolist()])),
                "shifts": int(caused.sum()), "shift_rows": [int(e - start) for e in self.ends[caused]]}

    def pooled(self, max_points: int = 1000) -> dict[str, Any]:
        """At most ``max_points`` points for a plot: consecutive refreshes pooled by their largest
        score (a shift stays visible); ``shift_ends``: where shifts were declared."""
        step = max(1, -(-self.ends.size // max_points))
        idx = np.arange(0, self.ends.size, step)
        scores = [float(self.scores[i : i + step].max()) for i in idx]
        return {"every": self.every, "initial": self.initial, "ends": [int(self.ends[min(i + step, self.ends.size) - 1])
                                                                      for i in idx],
                "scores": scores, "shift_ends": self.ends[self.shifts].tolist()}

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (JSON)."""
        return {"every": self.every, "initial": self.initial, "ends": self.ends.tolist(),
                "scores": self.scores.tolist(), "fresh": self.fresh.tolist(), "shifts": self.shifts.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DriftTrace":
        return cls(int(d["every"]), float(d["initial"]), np.asarray(d["ends"], np.int64),
                   np.asarray(d["scores"], np.float64), np.asarray(d["fresh"], bool), np.asarray(d["shifts"], bool))


def drift_trace(detector: WindowDriftDetector, stream: Iterable[np.ndarray], every: int,
                warmup: np.ndarray | None = None) -> DriftTrace:
    """Run ``detector`` over a stream and record its score after every ``every`` rows.

    Args:
        detector: a fresh detector.
        stream: ids ``(N_i, F)`` of consecutive blocks of the stream (e.g. one per period), in time
            order; refreshes fall every ``every`` rows whatever the block boundaries.
        every: rows between refreshes (the online batch size: one refresh per batch of traffic).
        warmup: ids of the traffic seen before the stream (observed ``every`` rows at a time first).
    """
    if every < 1:
        raise ValueError(f"drift_trace: every must be >= 1, got {every}")
    if warmup is not None:
        for s0 in range(0, warmup.shape[0], every):
            detector.observe(warmup[s0 : s0 + every])
    initial = detector.score
    ends, scores, fresh, shifts = [], [], [], []
    pos, left = 0, None

    def refresh(rows: np.ndarray) -> None:
        nonlocal pos
        shifted = detector.observe(rows)
        pos += rows.shape[0]
        ends.append(pos), scores.append(detector.score), fresh.append(detector.fresh), shifts.append(shifted)

    for ids in stream:
        ids = np.asarray(ids) if left is None else np.concatenate([left, ids])
        full = ids.shape[0] - ids.shape[0] % every
        for s0 in range(0, full, every):
            refresh(ids[s0 : s0 + every])
        left = ids[full:] if full < ids.shape[0] else None
    if left is not None:
        refresh(left)
    return DriftTrace(every, float(initial), np.asarray(ends, np.int64), np.asarray(scores, np.float64),
                      np.asarray(fresh, bool), np.asarray(shifts, bool))


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
