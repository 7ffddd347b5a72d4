import math

import numpy as np
import pytest

from crossadapt.metrics import (
    UndefinedMetricWarning,
    auc,
    chance_auc_sd,
    evaluate_predictions,
    logloss,
    prediction_bias,
)


def test_auc_hand_computed():
    # positives scored 0.8, 0.4; negatives 0.6, 0.2, 0.4
    # pairs (pos > neg): 0.8 beats all 3; 0.4 beats 0.2, ties 0.4 (half), loses to 0.6 -> 3 + 1.5 = 4.5 of 6
    y = [1, 0, 1, 0, 0]
    s = [0.8, 0.6, 0.4, 0.2, 0.4]
    assert auc(y, s) == pytest.approx(4.5 / 6, abs=1e-15)


def test_auc_perfect_inverted_and_single_class():
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    with pytest.warns(UndefinedMetricWarning, match="one class"):
        assert auc([1, 1], [0.2, 0.3]) is None  # null, never NaN: NaN is not JSON and compares False
    with pytest.warns(UndefinedMetricWarning):
        assert auc([0, 0, 0], [0.2, 0.3, 0.1]) is None


def test_one_class_metrics_are_null_and_logloss_stays_defined():
    with pytest.warns(UndefinedMetricWarning):
        m = evaluate_predictions([0, 0, 0, 0], [0.1, 0.2, 0.1, 0.4])
    assert m["auc"] is None and m["bias"] is None and m["n"] == 4
    assert m["logloss"] == pytest.approx(-(2 * math.log(0.9) + math.log(0.8) + math.log(0.6)) / 4, abs=1e-12)
    with pytest.warns(UndefinedMetricWarning):
        m = evaluate_predictions([1, 1], [0.5, 0.25])
    assert m["auc"] is None and m["bias"] == pytest.approx(0.375 - 1)  # clicks only: bias is defined


def test_chance_auc_sd_matches_label_shuffles():
    """The null spread of AUC (Mann-Whitney) against the spread of label-blind scores: 4000 draws of
    an AUC whose sd is ~0.04 estimate it within ~2 % (sd of a sample sd ~ sd / sqrt(2 * 4000))."""
    rng = np.random.default_rng(0)
    ranks = rng.random((4000, 200)).argsort(axis=1).argsort(axis=1) + 1.0  # rows 0-29 are the clicks
    draws = (ranks[:, :30].sum(axis=1) - 30 * 31 / 2) / (30 * 170)  # Mann-Whitney, as in auc()
    assert auc(np.r_[np.ones(30), np.zeros(170)], ranks[0]) == pytest.approx(draws[0], abs=1e-12)
    assert chance_auc_sd(30, 170) == pytest.approx(math.sqrt(201 / (12 * 30 * 170)), abs=1e-15)
    assert np.std(draws) == pytest.approx(chance_auc_sd(30, 170), rel=0.05)


def test_auc_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 2)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert auc(y, s) == pytest.approx(brute, abs=1e-12)


def test_logloss_hand_computed_and_clipped():
    y = [1, 0]
    p = [0.8, 0.4]
    assert logloss(y, p) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2, abs=1e-12)
    assert np.isfinite(logloss([1, 0], [0.0, 1.0]))
    assert logloss([1], [0.0]) == pytest.approx(-math.log(1e-7), rel=1e-9)


def test_prediction_bias():
    assert prediction_bias([1, 0, 0, 0], [0.5, 0.5, 0.25, 0.25]) == pytest.approx(0.375 / 0.25 - 1)
    assert prediction_bias([1, 0], [0.5, 0.5]) == pytest.approx(0.0)


def test_evaluate_predictions_and_length_mismatch():
    m = evaluate_predictions([1, 0], [0.9, 0.1])
    assert m["auc"] == 1.0 and m["n"] == 2
    with pytest.raises(ValueError, match="differ in length"):
        auc([1, 0], [0.5])
