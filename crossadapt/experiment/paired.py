"""Paired tests of each offline method's test AUC against CrossAdapt's, on the same test rows.

The offline stage saves every student's test scores beside its checkpoint: ``test_scores.npy``
(float32 click probabilities, row ``i`` is row ``i`` of ``data.test_periods`` in file order) and
``test_scores.json`` (what binds them to those rows: the test periods, the row and click counts and
a SHA-256 of the labels). From them, the ``paired_tests`` block of results.json:

- per method and seed: DeLong's test (``crossadapt.metrics.delong_test``) of the method's AUC
  against ``crossadapt``'s of the same seed, on the same rows (Δ = method - crossadapt);
- per method: the per-seed Δ's mean ± std and whether it exceeds the seed spread
  (``crossadapt.metrics.paired_spread``: mean ± 2 standard errors excludes 0), and a verdict.

Two noises decide whether a difference is real: the test rows (DeLong, per seed) and the training
seed (the spread of the per-seed differences). ``real`` needs both: the mean Δ exceeds the seed
spread, and at every seed DeLong gives p < ``alpha`` with the sign of the mean.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossadapt import atomic
from crossadapt.errors import DataError
from crossadapt.metrics import delong_test, paired_spread

SCORES_FILE = "test_scores.npy"
SCORES_META = "test_scores.json"
REFERENCE = "crossadapt"
ALPHA = 0.05
SPREAD_RULE = "mean ± 2 standard errors of the per-seed differences excludes 0"
VERDICT_RULE = ("real: the mean difference exceeds the seed spread and DeLong's p < alpha at every seed, "
                "with the sign of the mean; otherwise within noise")


def rows_binding(labels: np.ndarray, test_periods: Sequence[int]) -> dict[str, Any]:
    """What identifies the test rows scores belong to: periods, rows, clicks and a digest of the labels."""
    y = np.ascontiguousarray(np.asarray(labels).ravel(), dtype=np.int8)
    return {"test_periods": [int(p) for p in test_periods], "rows": int(y.size), "positives": int(y.sum()),
            "labels_sha256": hashlib.sha256(y.tobytes()).hexdigest()}


def scores_path(checkpoint: str | Path) -> Path:
    """Where the test scores of ``checkpoint`` lie: beside it."""
    return Path(checkpoint).with_name(SCORES_FILE)


def save_test_scores(checkpoint: str | Path, scores: np.ndarray, labels: np.ndarray,
                     test_periods: Sequence[int]) -> Path:
    """Write ``scores`` (float32) beside ``checkpoint`` with the binding to the test rows; returns the .npy path."""
    scores = np.asarray(scores, dtype=np.float32).ravel()
    if scores.size != np.asarray(labels).size:
        raise ValueError(f"{checkpoint}: {scores.size} scores for {np.asarray(labels).size} test rows")
    path = scores_path(checkpoint)
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, scores)
    atomic.write_json(path.with_name(SCORES_META), {**rows_binding(labels, test_periods), "dtype": "float32",
                                                    "checkpoint": Path(checkpoint).name})
    return path


def load_test_scores(checkpoint: str | Path, labels: np.ndarray, test_periods: Sequence[int]) -> np.ndarray:
    """The saved test scores of ``checkpoint``; DataError naming the file when they are missing or were
    computed on other rows than ``labels`` of ``test_periods``."""
    path = scores_path(checkpoint)
    meta_path = path.with_name(SCORES_META)
    if not path.is_file() or not meta_path.is_file():
        raise DataError(f"{path}: no saved test scores (written by the offline stage beside each student)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path}: not valid JSON ({e})") from e
    want = rows_binding(labels, test_periods)
    diff = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
    if diff:
        raise DataError(f"{meta_path}: scores belong to other test rows ({', '.join(f'{k}: {a} != {b}' for k, (a, b) in diff.items())})")
    scores = np.load(path)
    if scores.shape != (want["rows"],):
        raise DataError(f"{path}: {scores.shape} scores for {want['rows']} test rows")
    return scores


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # results.json holds no inf


def paired_tests(records: list[dict], labels: np.ndarray, test_periods: Sequence[int],
                 reference: str = REFERENCE, alpha: float = ALPHA) -> dict[str, Any] | None:
    """The ``paired_tests`` block from the offline records (``method``, ``seed``, ``checkpoint``).

    Seeds are paired by value: a method's seed ``s`` against ``reference``'s seed ``s``. None when
    ``reference`` has no record.
    """
    refs = {r["seed"]: r for r in records if r["method"] == reference}
    if not refs:
        return None
    rows = rows_binding(labels, test_periods)
    if min(rows["positives"], rows["rows"] - rows["positives"]) < 2:  # AUC and its variance undefined
        return {"reference": reference, **rows, "methods": {},
                "skipped": f"the test rows hold {rows['positives']} clicks in {rows['rows']} rows: "
                           "DeLong needs at least 2 of each class"}
    ref_scores = {s: load_test_scores(r["checkpoint"], labels, test_periods) for s, r in refs.items()}
    methods: dict[str, Any] = {}
    for name in dict.fromkeys(r["method"] for r in records if r["method"] != reference):
        per_seed = []
        for r in (r for r in records if r["method"] == name and r["seed"] in refs):
            t = delong_test(labels, load_test_scores(r["checkpoint"], labels, test_periods), ref_scores[r["seed"]])
            per_seed.append({"seed": r["seed"], "auc": t["auc_a"], "reference_auc": t["auc_b"],
                             "delta_auc": t["delta"], "se": t["se"], "z": _finite(t["z"]), "p": t["p"]})
        if per_seed:
            methods[name] = {"per_seed": per_seed, **summarize_method(per_seed, alpha)}
    return {"reference": reference, "test": "DeLong (two-sided, normal), per seed on the same test rows",
            "alpha": alpha, **rows, "spread_rule": SPREAD_RULE,
            "verdict_rule": VERDICT_RULE, "methods": methods}


def summarize_method(per_seed: list[dict], alpha: float = ALPHA) -> dict[str, Any]:
    """Mean ± std of the per-seed Δ, whether it exceeds the seed spread, and the verdict."""
    spread = paired_spread([x["delta_auc"] for x in per_seed])
    sign = np.sign(spread["mean"])
    agree = sum(1 for x in per_seed if x["p"] < alpha and np.sign(x["delta_auc"]) == sign != 0)
    if spread["exceeds_spread"] is None:
        verdict = "1 seed: spread unknown"
    else:
        verdict = "real" if spread["exceeds_spread"] and agree == len(per_seed) else "within noise"
    return {"delta_mean": spread["mean"], "delta_std": spread["std"], "delta_se": spread["se"],
            "seeds": spread["seeds"], "exceeds_spread": spread["exceeds_spread"], "significant_seeds": agree,
            "verdict": verdict}
