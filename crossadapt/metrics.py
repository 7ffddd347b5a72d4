"""Evaluation metrics: exact rank-based AUC (float64), clipped LogLoss, prediction bias.

AUC and bias are undefined on rows of one class (no click, or only clicks): they are ``None``
then, with an ``UndefinedMetricWarning``, never NaN, so that no JSON we write holds a NaN and no
comparison with them is silently false.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata

EPS = 1e-7


class UndefinedMetricWarning(UserWarning):
    """A metric was asked of data on which it is not defined (e.g. AUC on one class)."""


def _as_arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size == 0:
        raise ValueError("no samples to evaluate")
    return y, s


def auc(y_true, y_score) -> float | None:
    """Exact ROC AUC via the Mann-Whitney U statistic; ties get half credit (average ranks).

    ``None`` (with an ``UndefinedMetricWarning``) when only one class is present.
    """
    y, s = _as_arrays(y_true, y_score)
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        warnings.warn(f"AUC is undefined on {y.size} rows of one class ({int(n_pos)} clicks): reported as null",
                      UndefinedMetricWarning, stacklevel=2)
        return None
    ranks = rankdata(s, method="average")
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def chance_auc_sd(n_pos: int, n_neg: int) -> float:
    """Standard deviation of the AUC of scores unrelated to the labels (Mann-Whitney null, no ties):
    ``sqrt((n_pos + n_neg + 1) / (12 n_pos n_neg))``. How far from 0.5 chance alone reaches."""
    return float(np.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg)))


def logloss(y_true, y_prob, eps: float = EPS) -> float:
    """Mean binary cross entropy with probabilities clipped to ``[eps, 1 - eps]``."""
    y, p = _as_arrays(y_true, y_prob)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def prediction_bias(y_true, y_prob) -> float | None:
    """``mean(p) / mean(y) - 1``: positive when the model over-predicts clicks (``None`` if no clicks)."""
    y, p = _as_arrays(y_true, y_prob)
    my = y.mean()
    if my > 0:
        return float(p.mean() / my - 1.0)
    warnings.warn(f"prediction bias is undefined on {y.size} rows without a click: reported as null",
                  UndefinedMetricWarning, stacklevel=2)
    return None


def evaluate_predictions(y_true, y_prob) -> dict[str, float | None]:
    """All three metrics plus the sample count (AUC and bias ``None`` where undefined)."""
    y, p = _as_arrays(y_true, y_prob)
    return {"auc": auc(y, p), "logloss": logloss(y, p), "bias": prediction_bias(y, p), "n": int(y.size)}


def mean_std(xs) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of per-seed figures."""
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
