"""Sampling modes for ``r`` (pure functions) and the log-odds correction of positive-rate sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossadapt.data.sampling import (
    correct_logits,
    label_mask,
    positive_rate_plan,
    stratified_counts,
    stratified_index,
    uniform_mask,
)
from crossadapt.errors import ConfigError, DataError
from crossadapt.metrics import prediction_bias


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_plan_keep_probabilities_and_shift_by_hand() -> None:
    plan = positive_rate_plan(base_rate=0.25, r=0.1, target_rate=0.5)
    assert plan.keep_pos == pytest.approx(0.1 * 0.5 / 0.25) and plan.keep_neg == pytest.approx(0.1 * 0.5 / 0.75)
    # logit(0.5) - logit(0.25) = 0 - log(1/3) = log 3: the sample's log-odds are log 3 higher.
    assert plan.logit_shift == pytest.approx(math.log(3.0), rel=1e-12)
    assert correct_logits(np.array([0.0, 1.0]), plan).tolist() == pytest.approx([-math.log(3), 1 - math.log(3)])
    # A target below the base rate shifts the other way.
    assert positive_rate_plan(0.25, 0.1, 0.1).logit_shift == pytest.approx(math.log(0.1 / 0.9) - math.log(1 / 3))


def test_positive_rate_sampler_hits_its_target_within_one_percent() -> None:
    """1 M labels at a 25 % base rate, r = 0.4, target 50 % (keep_pos 0.8, keep_neg 0.267).

    The sample's positive share is K1 / (K1 + K0) with independent binomial counts; by the delta
    method its sd is sqrt(pi_t (1 - pi_t) [(1 - pi_t)(1 - keep_pos) + pi_t (1 - keep_neg)] / n_s)
    = sqrt(0.25 * 0.467 / 400 000) = 5.4e-4 with n_s = r n = 400 000. A 1 % relative tolerance
    (0.005) is 9 sd: a correct sampler never fails it, one off by a percent always does. The
    sample size's sd is sqrt(n [pi kp (1 - kp) + (1 - pi) kn (1 - kn)]) = 432 rows; 5 sd = 2 200.
    """
    n, base = 1_000_000, 0.25
    labels = np.zeros(n, dtype=np.int8)
    labels[: int(base * n)] = 1
    np.random.default_rng(0).shuffle(labels)
    plan = positive_rate_plan(base, r=0.4, target_rate=0.5)
    keep = label_mask(labels, plan, np.random.default_rng(1))
    rate = labels[keep].mean()
    assert abs(rate - 0.5) <= 0.01 * 0.5, rate
    assert abs(int(keep.sum()) - 0.4 * n) <= 2_200, int(keep.sum())
    # Seeded: the same generator seed gives the same sample.
    assert np.array_equal(keep, label_mask(labels, plan, np.random.default_rng(1)))


def test_corrected_logits_are_calibrated_on_a_test_set() -> None:
    """Logistic regression fitted to a 50 %-positive sample of a ~20 % world: its raw predictions
    over-predict clicks on a uniform test set; after ``correct_logits`` the bias is near zero.

    The fit is exact Newton (IRLS) on 2 parameters, so only sampling noise remains: with ~40 k
    sampled rows the intercept's sd is ~0.01 and the test set's own mean label's relative sd is
    sqrt(0.8 / (0.2 * 200 000)) = 0.45 %, so the corrected |bias| stays well under 5 %; the raw
    one is about +130 % (the odds are multiplied by ~4.2: seeds 0-2 gave +129 to +131 % raw, -1.4 to
    +0.1 % corrected).
    """
    rng = np.random.default_rng(0)

    def world(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal(n)
        return x, (rng.random(n) < _sigmoid(-1.7 + 1.0 * x)).astype(np.int8)

    x, y = world(400_000)
    plan = positive_rate_plan(float(y.mean()), r=0.1, target_rate=0.5)
    keep = label_mask(y, plan, rng)
    xs, ys = np.stack([np.ones(keep.sum()), x[keep]], axis=1), y[keep].astype(np.float64)
    w = np.zeros(2)
    for _ in range(25):  # Newton's method for the logistic log-likelihood
        p = _sigmoid(xs @ w)
        w += np.linalg.solve((xs * (p * (1 - p))[:, None]).T @ xs, xs.T @ (ys - p))
    x_test, y_test = world(200_000)
    z = w[0] + w[1] * x_test
    raw, corrected = prediction_bias(y_test, _sigmoid(z)), prediction_bias(y_test, _sigmoid(correct_logits(z, plan)))
    assert abs(corrected) <= abs(raw)
    assert raw > 0.5 and abs(corrected) < 0.05, (raw, corrected)
    assert w[1] == pytest.approx(1.0, abs=0.05)  # the slope is untouched by label-dependent sampling


def test_plan_refuses_what_it_cannot_draw() -> None:
    with pytest.raises(ConfigError, match=r"distill.r = 0.5 .* needs 1.250 of the pool's positives"):
        positive_rate_plan(base_rate=0.2, r=0.5, target_rate=0.5)
    with pytest.raises(ConfigError, match="distill.positive_rate"):
        positive_rate_plan(0.2, 0.1, 1.0)
    with pytest.raises(ConfigError, match="distill.r"):
        positive_rate_plan(0.2, 0.0, 0.5)
    with pytest.raises(DataError, match="both classes"):
        positive_rate_plan(0.0, 0.1, 0.5)


def test_uniform_and_stratified_modes() -> None:
    rng = np.random.default_rng(0)
    assert uniform_mask(10, 1.0, rng).all()
    # Bernoulli(0.3) over 100 000 rows: sd of the kept count is sqrt(n r (1 - r)) = 145; 5 sd = 725.
    assert abs(int(uniform_mask(100_000, 0.3, rng).sum()) - 30_000) <= 725
    counts = [1000, 10, 0, 3]
    assert stratified_counts(counts, 0.1) == [100, 1, 0, 1]  # at least one row of a non-empty period
    idx = stratified_index(counts, 0.1, rng)
    assert np.all(np.diff(idx) > 0)  # sorted, no row twice
    per_period = np.histogram(idx, bins=[0, 1000, 1010, 1010, 1013])[0].tolist()
    assert per_period == [100, 1, 0, 1]
    with pytest.raises(ConfigError, match="distill.r"):
        stratified_counts(counts, 1.5)
