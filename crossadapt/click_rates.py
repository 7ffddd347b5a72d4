"""The per-field click-rate model: the trivial baseline every teacher must beat (no Ray, no torch).

Counting: impressions and clicks of every id of every categorical field, added one batch of rows at
a time into two counters as long as the whole vocabulary (the embedding table's layout), so memory
is bounded by the vocabulary whatever the number of rows.

Scoring: a naive-Bayes sum over fields of each id's smoothed click log-odds relative to the base
rate. It uses every field (no field is picked on the rows it is scored on) and has nothing to fit
beyond counts; it ranks at about the level of a first-order model. A teacher that cannot beat it
has learned less than counting does, and distilling it transfers nothing worth the name.

Example:
    >>> counts = ClickCounts.zeros([3, 2])
    >>> counts.add(np.array([[0, 1], [1, 1], [0, 0]]), np.array([1.0, 0.0, 1.0]))
    >>> counts.impressions.tolist(), counts.clicks.tolist()
    ([2, 1, 0, 1, 2], [2.0, 0.0, 0.0, 1.0, 1.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

#: Pseudo-impressions at the base rate added to every id (a Bayesian average): an id seen a few
#: times scores near the base rate instead of at 0 or 1 clicks per impression.
PRIOR_IMPRESSIONS = 20.0


def _offsets(vocab_sizes: list[int]) -> np.ndarray:
    """First counter slot of every field (exclusive prefix sums of the vocabulary sizes)."""
    return np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]]).astype(np.int64)


@dataclass
class ClickCounts:
    """Impressions and clicks per (field, id), flat in field order, plus the totals."""

    vocab_sizes: list[int]
    impressions: np.ndarray  # int64, (sum of vocab sizes,)
    clicks: np.ndarray  # float64 (exact below 2**53), same shape
    rows: int = 0
    total_clicks: float = 0.0

    @classmethod
    def zeros(cls, vocab_sizes: Iterable[int]) -> "ClickCounts":
        sizes = [int(v) for v in vocab_sizes]
        total = int(sum(sizes))
        return cls(sizes, np.zeros(total, np.int64), np.zeros(total, np.float64))

    def add(self, ids: np.ndarray, label: np.ndarray) -> None:
        """Count one batch: ``ids`` int (rows, fields) within each field's vocabulary, ``label`` 0/1."""
        if ids.shape[0] == 0:
            return
        flat = (ids + _offsets(self.vocab_sizes)[None, :]).ravel()
        y = np.asarray(label, np.float64)
        n = self.impressions.size
        self.impressions += np.bincount(flat, minlength=n)
        self.clicks += np.bincount(flat, weights=np.broadcast_to(y[:, None], ids.shape).ravel(), minlength=n)
        self.rows += ids.shape[0]
        self.total_clicks += float(y.sum())

    def log_odds(self, prior: float = PRIOR_IMPRESSIONS) -> np.ndarray:
        """Per (field, id): ``logit(smoothed rate) - logit(base rate)``; 0 for an id never seen."""
        base = (self.total_clicks + 0.5) / (self.rows + 1.0)  # never exactly 0 or 1
        rate = (self.clicks + prior * base) / (self.impressions + prior)
        return np.log(rate / (1.0 - rate)) - np.log(base / (1.0 - base))


def count_clicks(batches: Iterable[tuple[np.ndarray, np.ndarray]], vocab_sizes: Iterable[int]) -> ClickCounts:
    """Counts over ``(ids, label)`` batches."""
    counts = ClickCounts.zeros(vocab_sizes)
    for ids, label in batches:
        counts.add(ids, label)
    return counts


def score(ids: np.ndarray, log_odds: np.ndarray, vocab_sizes: list[int]) -> np.ndarray:
    """Naive-Bayes score of every row: the sum over fields of its ids' log-odds (float64, a logit)."""
    return log_odds[ids + _offsets(vocab_sizes)[None, :]].sum(axis=1)
