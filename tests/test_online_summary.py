"""Online results over seeds: per-period and overall mean ± std, degradation, paired differences (pure)."""

from __future__ import annotations

import json

import pytest

from crossadapt.online.summary import paired_difference, summarize_runs


def _run(seed, aucs, biases, steps=10):
    return {"seed": seed, "steps": steps, "rows_trained": 100 * steps, "history_rows": 0, "train_seconds": 1.0,
            "exchange_share": 0.01,
            "windows": [{"period": 9 + i, "auc": a, "logloss": 0.4, "bias": b, "r_enh": 0.5, "drift_score_max": 0.0}
                        for i, (a, b) in enumerate(zip(aucs, biases))]}


def test_summary_by_hand() -> None:
    runs = [_run(0, [0.70, 0.60, 0.65], [0.1, -0.3, 0.2]), _run(1, [0.72, 0.62, 0.70], [0.0, 0.1, -0.2], steps=12)]
    s = summarize_runs(runs)
    assert s["seeds"] == [0, 1] and s["periods"] == [9, 10, 11]
    assert s["per_period"]["auc"]["mean"] == pytest.approx([0.71, 0.61, 0.675])
    assert s["per_period"]["auc"]["std"] == pytest.approx([0.02 / 2 ** 0.5, 0.02 / 2 ** 0.5, 0.05 / 2 ** 0.5])
    assert s["per_period"]["abs_bias"]["mean"] == pytest.approx([0.05, 0.2, 0.2])
    # per seed: mean AUC 0.65 and 0.68; degradation 0.70 - 0.625 = 0.075 and 0.72 - 0.66 = 0.06
    assert s["overall"]["auc"]["values"] == pytest.approx([0.65, 0.68])
    assert s["overall"]["auc"]["mean"] == pytest.approx(0.665)
    assert s["overall"]["degradation"]["values"] == pytest.approx([0.075, 0.06])
    assert s["overall"]["abs_bias"]["values"] == pytest.approx([0.2, 0.1])
    assert s["overall"]["steps"] == {"mean": 11.0, "std": pytest.approx(2 ** 0.5), "values": [10.0, 12.0]}


def test_undefined_auc_is_left_out_and_never_written_as_nan() -> None:
    runs = [_run(0, [0.7, None], [0.1, 0.1]), _run(1, [None, None], [0.1, 0.1])]
    s = summarize_runs(runs)
    assert s["per_period"]["auc"]["mean"] == [0.7, None]
    assert s["overall"]["auc"]["values"] == [0.7, None] and s["overall"]["auc"]["mean"] == 0.7
    json.dumps(s, allow_nan=False)  # no NaN anywhere


def test_mismatched_periods_are_an_error() -> None:
    with pytest.raises(ValueError, match="periods"):
        summarize_runs([_run(0, [0.7, 0.7], [0, 0]), _run(1, [0.7], [0])])


def test_paired_difference_and_spread_rule() -> None:
    ca = {"runs": [_run(0, [0.70], [0]), _run(1, [0.72], [0]), _run(2, [0.74], [0])]}
    close = {"runs": [_run(0, [0.69], [0]), _run(1, [0.72], [0]), _run(2, [0.735], [0])]}
    far = {"runs": [_run(1, [0.60], [0]), _run(2, [0.61], [0]), _run(5, [0.5], [0])]}
    d = paired_difference(ca, close)
    assert d["seeds"] == [0, 1, 2] and d["values"] == pytest.approx([0.01, 0.0, 0.005])
    assert d["mean"] == pytest.approx(0.005) and not d["exceeds_spread"] and not d["same_sign"]
    d = paired_difference(ca, far)  # seeds 1 and 2 only
    assert d["seeds"] == [1, 2] and d["mean"] == pytest.approx(0.125) and d["exceeds_spread"] and d["same_sign"]
    assert paired_difference(ca, {"runs": [_run(7, [0.5], [0])]}) is None
