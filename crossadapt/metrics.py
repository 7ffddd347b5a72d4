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


def fmt(x: float | None, spec: str = ".4f") -> str:
    """``x`` formatted with ``spec``, or ``n/a`` for an undefined figure (a one-class AUC is None)."""
    return "n/a" if x is None else format(x, spec)


def mean_std(xs) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of per-seed figures."""
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


# ---------------------------------------------------------------- DeLong's paired AUC comparison


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of ``k`` score vectors on the same rows and DeLong's covariance of those AUCs.

    ``scores`` is ``(k, n)`` (or one vector). DeLong, DeLong & Clarke-Pearson (1988), computed with
    midranks as in Sun & Xu (2014): O(k n log n) in float64, ties counted as half. Returns
    ``(aucs (k,), covariance (k, k))``; raises ``ValueError`` when a class has fewer than two rows
    (the covariance of the structural components is then undefined).
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.ndim != 2 or s.shape[1] != y.size:
        raise ValueError(f"scores must be (k, {y.size}) for {y.size} labels, got {s.shape}")
    if y.size == 0:
        raise ValueError("no samples to evaluate")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    tx = rankdata(pos, method="average", axis=1)  # midranks within the positives
    ty = rankdata(neg, method="average", axis=1)  # within the negatives
    tz = rankdata(np.concatenate([pos, neg], axis=1), method="average", axis=1)  # within all rows
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    # Structural components: v10[i] = P(score of positive i beats a random negative), and
    # v01[j] = P(a random positive beats negative j), ties counted as half.
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_test(y_true, score_a, score_b) -> dict[str, float]:
    """DeLong's test of two correlated ROC AUCs (two models scored on the same rows).

    Returns ``auc_a``, ``auc_b``, ``delta`` (``auc_a - auc_b``), its standard error ``se``, ``z`` and
    the two-sided normal ``p``. Identical scores give ``delta = se = z = 0`` and ``p = 1``; a non-zero
    ``delta`` with zero variance gives an infinite ``z`` and ``p = 0``.
    """
    from scipy.stats import norm

    a = np.asarray(score_a, dtype=np.float64).ravel()
    b = np.asarray(score_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"the two score vectors differ in length: {a.size} vs {b.size}")
    aucs, cov = delong_covariance(y_true, np.stack([a, b]))
    delta = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(var)) if var > 0 else 0.0
    if se > 0:
        z = delta / se
    else:
        z = 0.0 if delta == 0 else float(np.copysign(np.inf, delta))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "delta": delta, "se": se, "z": z,
            "p": float(2.0 * norm.sf(abs(z)))}


def paired_spread(deltas) -> dict[str, float | int | bool | None]:
    """Mean, sample std and standard error of per-seed paired differences (method minus reference,
    seed by seed), and whether the mean exceeds their spread.

    ``exceeds_spread``: ``mean ± 2 standard errors`` excludes 0, i.e. ``|mean| > 2 std / sqrt(k)``
    over ``k`` seeds (at 3 seeds, ``|mean| > 1.15 std``); None with fewer than 2 seeds, where the
    spread is unknown.
    """
    a = np.asarray(deltas, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("no paired differences")
    mean, std = mean_std(a)
    se = std / np.sqrt(a.size)
    return {"seeds": int(a.size), "mean": mean, "std": std, "se": float(se),
            "exceeds_spread": bool(abs(mean) > 2.0 * se) if a.size > 1 else None}
