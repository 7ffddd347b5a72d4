"""Online results over seeds: mean ± std per period and overall, and paired differences (pure).

A *run* is one seed's replay of the stream (``crossadapt.online.coordinator.OnlineStream.run``):
``{"seed", "windows": [{"period", "auc", "logloss", "bias", ...}, ...], "steps", ...}``. Every
std is the sample std over seeds (ddof = 1; 0 for one seed). A figure that is undefined in some
window (an AUC of a one-class window, written as null) is left out of that seed's mean; a
statistic with no defined value at all is null, never NaN.

Example:
    >>> runs = [{"seed": s, "windows": [{"period": 9, "auc": a, "logloss": 0.4, "bias": 0.1}]}
    ...         for s, a in ((0, 0.70), (1, 0.72))]
    >>> summarize_runs(runs)["overall"]["auc"]["mean"]
    0.71
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Per-window figures summarised per period (``abs_bias`` is ``|bias|``).
PERIOD_METRICS = ("auc", "logloss", "bias", "abs_bias", "r_enh", "drift_score_max")
#: Run-level counters summarised over seeds.
RUN_COUNTERS = ("steps", "rows_trained", "history_rows", "train_seconds", "exchange_share")
#: Figures of the final models on the test periods after the stream (``run["final_test"]``).
FINAL_METRICS = ("auc", "logloss", "bias", "abs_bias")


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _stats(values: np.ndarray) -> dict[str, Any]:
    """Mean and sample std over the finite values (null when none), and the values themselves."""
    v = np.asarray(values, dtype=np.float64)
    ok = v[np.isfinite(v)]
    mean = float(ok.mean()) if ok.size else float("nan")
    std = float(ok.std(ddof=1)) if ok.size > 1 else (0.0 if ok.size else float("nan"))
    return {"mean": _json_float(mean), "std": _json_float(std), "values": [_json_float(x) for x in v]}


def _window_value(w: dict[str, Any], metric: str) -> float:
    if metric == "abs_bias":
        return abs(_num(w.get("bias")))
    return _num(w.get(metric))


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(a)
        return np.where(ok.any(axis=axis), np.nansum(a, axis=axis) / np.maximum(ok.sum(axis=axis), 1), np.nan)


def period_matrix(runs: list[dict[str, Any]], metric: str) -> np.ndarray:
    """``(seeds, periods)`` values of one per-window figure (NaN where undefined)."""
    return np.array([[_window_value(w, metric) for w in r["windows"]] for r in runs], dtype=np.float64)


def degradation(auc: np.ndarray) -> np.ndarray:
    """Per seed: AUC of the first window minus the mean AUC of the later ones (positive: the AUC
    fell after the first window, which the starting student scores untouched)."""
    if auc.shape[1] < 2:
        return np.zeros(auc.shape[0])
    return auc[:, 0] - _nanmean(auc[:, 1:], axis=1)


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of one method's runs: per period and overall.

    Returns ``{"seeds", "periods", "per_period": {metric: {"mean": [...], "std": [...]}},
    "overall": {"auc" | "logloss" | "abs_bias" | "degradation" | counter: {"mean", "std", "values"}},
    "final_test": :func:`summarize_final`}`` where overall figures are first averaged over periods
    within each seed.
    """
    if not runs:
        raise ValueError("summarize_runs: no runs")
    periods = [w["period"] for w in runs[0]["windows"]]
    for r in runs:
        if [w["period"] for w in r["windows"]] != periods:
            raise ValueError(f"summarize_runs: seed {r.get('seed')} has periods {[w['period'] for w in r['windows']]}, "
                             f"seed {runs[0].get('seed')} has {periods}")
    per_period: dict[str, Any] = {}
    for m in PERIOD_METRICS:
        mat = period_matrix(runs, m)
        cols = [_stats(mat[:, j]) for j in range(mat.shape[1])]
        per_period[m] = {"mean": [c["mean"] for c in cols], "std": [c["std"] for c in cols]}
    auc = period_matrix(runs, "auc")
    overall = {m: _stats(_nanmean(period_matrix(runs, m), axis=1)) for m in ("auc", "logloss", "abs_bias")}
    overall["degradation"] = _stats(degradation(auc))
    for key in RUN_COUNTERS:
        overall[key] = _stats(np.array([_num(r.get(key)) for r in runs]))
    return {"seeds": [r.get("seed") for r in runs], "periods": periods, "per_period": per_period, "overall": overall,
            "final_test": summarize_final(runs)}


def summarize_final(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean ± std over seeds of the final models' figures on the test periods after the stream:
    ``{"periods", metric: stats (the student's), "teacher": {metric: stats} | None}``; None when a
    run has no final test (test periods before the stream, or an older results.json)."""
    finals = [r.get("final_test") for r in runs]
    if not finals or any(f is None for f in finals):
        return None
    out: dict[str, Any] = {"periods": finals[0]["periods"],
                           **{m: _stats(np.array([_window_value(f, m) for f in finals])) for m in FINAL_METRICS}}
    teachers = [f.get("teacher") for f in finals]
    out["teacher"] = None if any(t is None for t in teachers) else {
        m: _stats(np.array([_window_value(t, m) for t in teachers])) for m in FINAL_METRICS}
    return out


def paired_difference(a: dict[str, Any], b: dict[str, Any], metric: str = "auc") -> dict[str, Any] | None:
    """Per seed, the mean over periods of ``metric`` of block ``a`` minus block ``b`` (both blocks
    ``{"runs": [...]}``), on the seeds both ran; None when they share none.

    Returns ``{"seeds", "mean", "std", "values", "exceeds_spread"}`` where ``exceeds_spread`` says
    whether ``|mean|`` is larger than the larger of the two methods' std over those seeds (the
    project's rule for calling a difference real), and ``same_sign`` whether every seed agrees.
    """
    ra = {r["seed"]: r for r in a["runs"]}
    rb = {r["seed"]: r for r in b["runs"]}
    seeds = [s for s in ra if s in rb]
    if not seeds:
        return None
    va = _nanmean(period_matrix([ra[s] for s in seeds], metric), axis=1)
    vb = _nanmean(period_matrix([rb[s] for s in seeds], metric), axis=1)
    diff = _stats(va - vb)
    spread = max(_stats(va)["std"] or 0.0, _stats(vb)["std"] or 0.0)
    mean = diff["mean"]
    finite = (va - vb)[np.isfinite(va - vb)]
    return {"seeds": seeds, **diff, "spread": spread,
            "exceeds_spread": bool(mean is not None and len(seeds) > 1 and abs(mean) > spread),
            "same_sign": bool(finite.size > 0 and (np.all(finite > 0) or np.all(finite < 0)))}
