"""Per-period truth statistics of generated rows (CTR, Bayes AUC and LogLoss), fed chunk by chunk.

A period that arrives as one chunk gets the exact metrics of ``crossadapt.metrics``. A longer one
is folded into a histogram of the true probabilities so that memory stays bounded: its AUC counts
every pair in different bins exactly and a pair inside one bin as a tie (half credit), which is
off by at most half the share of positive-negative pairs that share a bin. That bound is reported
beside the AUC (``bayes_auc_max_error``; 0 when exact) and is ~1e-6 at a few million rows.

Example:
    >>> import numpy as np
    >>> s = PeriodStats()
    >>> s.add(np.array([0, 1, 1], np.int8), np.array([0.2, 0.7, 0.9]))
    >>> s.summary()["bayes_auc"]
    1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossadapt.metrics import EPS, auc, logloss

#: Bins of the probability histogram (two int64 counts each: 16 MiB in all).
HIST_BINS = 1 << 20


class PeriodStats:
    """Accumulates labels and true probabilities of one period; ``summary`` gives its meta entry."""

    def __init__(self, bins: int = HIST_BINS) -> None:
        self.bins = bins
        self._first: tuple[np.ndarray, np.ndarray] | None = None
        self._pos: np.ndarray | None = None  # histogram counts, once a second chunk arrives
        self._neg: np.ndarray | None = None
        self.rows = 0
        self._clicks = 0
        self._p_sum = 0.0
        self._loss_sum = 0.0

    def add(self, label: np.ndarray, p: np.ndarray) -> None:
        """One chunk: ``label`` 0/1 and the true click probability ``p`` of each row."""
        y = np.asarray(label, np.float64)
        p = np.asarray(p, np.float64)
        self.rows += y.size
        self._clicks += int(y.sum())
        self._p_sum += float(p.sum())
        q = np.clip(p, EPS, 1 - EPS)  # as metrics.logloss
        self._loss_sum += float(-np.sum(y * np.log(q) + (1 - y) * np.log1p(-q)))
        if self._first is None and self._pos is None:
            self._first = (label, p)  # kept as given: a one-chunk period gets the exact metrics
            return
        if self._pos is None:
            self._pos = np.zeros(self.bins, np.int64)
            self._neg = np.zeros(self.bins, np.int64)
            assert self._first is not None
            y0, p0 = self._first
            self._bin(np.asarray(y0, np.float64), p0)
            self._first = None
        self._bin(y, p)

    def _bin(self, y: np.ndarray, p: np.ndarray) -> None:
        # Monotone in p, so rows in different bins are ordered exactly as their probabilities.
        b = np.minimum((p * self.bins).astype(np.int64), self.bins - 1)
        pos = y == 1
        self._pos += np.bincount(b[pos], minlength=self.bins)
        self._neg += np.bincount(b[~pos], minlength=self.bins)

    def summary(self) -> dict[str, Any]:
        """``rows, ctr, true_ctr, bayes_auc, bayes_auc_max_error, bayes_logloss`` (AUC None if one class)."""
        if self._first is not None:
            y, p = self._first
            exact = auc(y, p)
            return {"rows": int(y.size), "ctr": float(y.mean()), "true_ctr": float(p.mean()),
                    "bayes_auc": float(exact) if np.isfinite(exact) else None, "bayes_auc_max_error": 0.0,
                    "bayes_logloss": float(logloss(y, p))}
        value, err = binned_auc(self._pos, self._neg)
        return {"rows": self.rows, "ctr": self._clicks / self.rows, "true_ctr": self._p_sum / self.rows,
                "bayes_auc": value, "bayes_auc_max_error": err, "bayes_logloss": self._loss_sum / self.rows}


def binned_auc(pos: np.ndarray, neg: np.ndarray) -> tuple[float | None, float | None]:
    """AUC from per-bin positive and negative counts (bins in increasing score), and its error bound.

    Pairs in different bins count exactly; pairs in one bin get half credit, so the true AUC of the
    underlying scores is within ``0.5 * sum(pos * neg) / (P * N)`` of the value returned.
    Returns ``(None, None)`` when one class is absent.
    """
    P, N = int(pos.sum()), int(neg.sum())
    if P == 0 or N == 0:
        return None, None
    pos_f, neg_f = pos.astype(np.float64), neg.astype(np.float64)
    neg_below = np.cumsum(neg_f) - neg_f  # negatives in strictly lower bins
    same = float(pos_f @ neg_f)
    correct = float(pos_f @ neg_below) + 0.5 * same
    return correct / (P * N), 0.5 * same / (P * N)
