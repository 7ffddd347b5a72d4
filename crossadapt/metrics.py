"""Evaluation metrics: exact rank-based AUC (float64), clipped LogLoss, prediction bias."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

EPS = 1e-7


def _as_arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size == 0:
        raise ValueError("no samples to evaluate")
    return y, s


def auc(y_true, y_score) -> float:
    """Exact ROC AUC via the Mann-Whitney U statistic; ties get half credit (average ranks).

    Returns NaN when only one class is present.
    """
    y, s = _as_arrays(y_true, y_score)
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s, method="average")
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(y_true, y_prob, eps: float = EPS) -> float:
    """Mean binary cross entropy with probabilities clipped to ``[eps, 1 - eps]``."""
    y, p = _as_arrays(y_true, y_prob)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def prediction_bias(y_true, y_prob) -> float:
    """``mean(p) / mean(y) - 1``: positive when the model over-predicts clicks (NaN if no clicks)."""
    y, p = _as_arrays(y_true, y_prob)
    my = y.mean()
    return float(p.mean() / my - 1.0) if my > 0 else float("nan")


def evaluate_predictions(y_true, y_prob) -> dict[str, float]:
    """All three metrics plus the sample count."""
    y, p = _as_arrays(y_true, y_prob)
    return {"auc": auc(y, p), "logloss": logloss(y, p), "bias": prediction_bias(y, p), "n": int(y.size)}


def mean_std(xs) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of per-seed figures."""
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
