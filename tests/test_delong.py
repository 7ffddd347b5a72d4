"""DeLong's paired AUC test (``crossadapt.metrics.delong_*``) against hand and brute-force answers."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from crossadapt.metrics import auc, delong_covariance, delong_test


def _brute_force(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) as written: O(m n) kernel per model, then sample covariances (ddof=1)."""
    y = np.asarray(y)
    v10, v01, aucs = [], [], []
    for s in scores:
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = len(v10[0]), len(v01[0])
    return np.array(aucs), np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n


def test_hand_computed_two_models_with_a_tie():
    # positives: A 0.9, 0.5 / B 0.2, 0.8; negatives: A 0.5, 0.3, 0.1 / B 0.4, 0.6, 0.1
    # A: V10 = [1, 5/6] (0.5 ties a negative), V01 = [3/4, 1, 1], AUC 11/12
    # B: V10 = [1/3, 1], V01 = [1/2, 1/2, 1], AUC 2/3
    # differences: V10 [2/3, -1/6] -> var 25/72; V01 [1/4, 1/2, 0] -> var 1/16
    # Var(delta) = (25/72) / 2 + (1/16) / 3 = 7/36
    y = [1, 1, 0, 0, 0]
    a = [0.9, 0.5, 0.5, 0.3, 0.1]
    b = [0.2, 0.8, 0.4, 0.6, 0.1]
    r = delong_test(y, a, b)
    assert r["auc_a"] == pytest.approx(11 / 12, abs=1e-15)
    assert r["auc_b"] == pytest.approx(2 / 3, abs=1e-15)
    assert r["delta"] == pytest.approx(1 / 4, abs=1e-15)
    assert r["se"] == pytest.approx(math.sqrt(7 / 36), abs=1e-15)
    assert r["z"] == pytest.approx(3 / (2 * math.sqrt(7)), abs=1e-14)
    assert r["p"] == pytest.approx(2 * norm.sf(3 / (2 * math.sqrt(7))), abs=1e-14)
    # one model's own variance: V10 [1, 5/6] -> 1/72, V01 [3/4, 1, 1] -> 1/48; 1/144 + 1/144
    _, cov = delong_covariance(y, np.array([a]))
    assert cov[0, 0] == pytest.approx(1 / 72, abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_brute_force_definition_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 400
    y = (rng.random(n) < 0.3).astype(np.int64)
    signal = rng.normal(size=n) + y
    # three correlated models, rounded so that many scores tie (within and across classes)
    scores = np.stack([np.round(signal + rng.normal(scale=s, size=n), 1) for s in (0.5, 1.0, 2.0)])
    aucs, cov = delong_covariance(y, scores)
    ref_aucs, ref_cov = _brute_force(y, scores)
    # float64 sums of ~400 terms of size <= 1: agreement to ~1e-15 relative; 1e-12 leaves room
    np.testing.assert_allclose(aucs, ref_aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10, atol=1e-15)
    assert [auc(y, s) for s in scores] == pytest.approx(list(aucs), abs=1e-12)
    r = delong_test(y, scores[0], scores[2])
    var = ref_cov[0, 0] + ref_cov[2, 2] - 2 * ref_cov[0, 2]
    assert r["delta"] == pytest.approx(ref_aucs[0] - ref_aucs[2], abs=1e-12)
    assert r["z"] == pytest.approx((ref_aucs[0] - ref_aucs[2]) / math.sqrt(var), rel=1e-9)
    assert r["delta"] > 0 and r["p"] < 1e-3  # less noise is a clearly better model on 400 rows


def test_symmetric_identical_and_monotone_invariant():
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.4).astype(int)
    a = rng.normal(size=300) + y
    b = rng.normal(size=300) + 0.5 * y
    ab, ba = delong_test(y, a, b), delong_test(y, b, a)
    assert ba["delta"] == -ab["delta"] and ba["z"] == -ab["z"]
    assert ba["se"] == ab["se"] and ba["p"] == ab["p"]
    same = delong_test(y, a, a)
    assert (same["delta"], same["se"], same["z"], same["p"]) == (0.0, 0.0, 0.0, 1.0)
    # ranks are all that matter: a monotone transform of one model changes nothing
    mono = delong_test(y, 1 / (1 + np.exp(-a)), b)
    assert mono["z"] == pytest.approx(ab["z"], rel=1e-12) and mono["delta"] == pytest.approx(ab["delta"], abs=1e-15)
    # float32 probabilities (what the offline stage saves) are widened to float64, not summed in float32
    p32 = (1 / (1 + np.exp(-a))).astype(np.float32)
    assert delong_test(y, p32, b)["auc_a"] == auc(y, p32.astype(np.float64))


def test_zero_variance_with_a_difference_is_an_infinite_z():
    # A separates perfectly (components all 1), B is a constant (all ties: components all 1/2):
    # Var(delta) = 0 with delta = 1/2
    y = [1, 1, 0, 0]
    r = delong_test(y, [0.9, 0.8, 0.1, 0.2], [0.5, 0.5, 0.5, 0.5])
    assert r["delta"] == pytest.approx(0.5) and r["se"] == 0.0
    assert r["z"] == math.inf and r["p"] == 0.0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 positives"):
        delong_test([1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="differ in length"):
        delong_test([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        delong_test([2, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
