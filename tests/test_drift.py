"""Drift statistics: JS divergence by hand, histograms, r_enh schedule, detection on synthetic logs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossadapt.config import OnlineConfig, SyntheticConfig
from crossadapt.data.synthetic import build_world
from crossadapt.online.drift import (
    DriftDetector,
    aggregate_scores,
    id_histogram,
    js_divergence,
    r_enh_from_score,
)


def test_js_identical_is_zero() -> None:
    p = np.array([3, 0, 5, 2])
    assert js_divergence(p, p) == 0.0
    assert js_divergence(p, 10 * p) == pytest.approx(0.0, abs=1e-15)  # counts are normalised


def test_js_disjoint_is_ln2() -> None:
    assert abs(js_divergence([1, 2, 0, 0], [0, 0, 4, 1]) - math.log(2)) < 1e-12


def test_js_hand_computed() -> None:
    # P = (1/2, 1/2, 0), Q = (1/4, 1/4, 1/2) given as counts; M = (3/8, 3/8, 1/4).
    # KL(P||M) = 2 * 1/2 * ln((1/2)/(3/8)) = ln(4/3)
    # KL(Q||M) = 2 * 1/4 * ln((1/4)/(3/8)) + 1/2 * ln((1/2)/(1/4)) = 1/2 ln(2/3) + 1/2 ln 2
    # JS = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2
    expected = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert js_divergence([2, 2, 0], [1, 1, 2]) == pytest.approx(expected, abs=1e-12)
    # = 0.143841 - 0.101366 + 0.173287
    assert expected == pytest.approx(0.2157616, abs=1e-6)  # the number itself, to catch a wrong formula


def test_js_symmetric() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        p, q = rng.integers(0, 20, 8), rng.integers(0, 20, 8)
        assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), abs=1e-15)


def test_js_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes"):
        js_divergence([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        js_divergence([1, -1], [1, 1])
    with pytest.raises(ValueError, match="sums to zero"):
        js_divergence([0, 0], [1, 1])


def test_histogram_other_bucket() -> None:
    ids = np.array([5, 7, 5, 9, 1000, 5, 42, 7])
    counts = id_histogram(ids, np.array([7, 5, 3]))
    # 7 twice, 5 three times, 3 never; 9, 1000 and 42 fall into "other"
    np.testing.assert_array_equal(counts, [2, 3, 0, 3])
    np.testing.assert_array_equal(id_histogram(ids, np.array([], np.int64)), [8])
    with pytest.raises(ValueError, match="distinct"):
        id_histogram(ids, np.array([5, 5]))


def test_r_enh_schedule() -> None:
    kw = dict(theta_low=0.02, theta_high=0.1, r_min=0.1, r_max=0.5)
    assert r_enh_from_score(0.0, **kw) == 0.5
    assert r_enh_from_score(0.02, **kw) == 0.5  # stable: most history
    assert r_enh_from_score(0.1, **kw) == 0.1
    assert r_enh_from_score(0.7, **kw) == 0.1  # shift: least history
    assert r_enh_from_score(0.06, **kw) == pytest.approx(0.3, abs=1e-12)  # midpoint
    with pytest.raises(ValueError):
        r_enh_from_score(0.05, theta_low=0.1, theta_high=0.1, r_min=0.0, r_max=0.5)


def test_aggregates() -> None:
    s = np.array([0.0, 0.4, 0.1, 0.3, 0.2])
    assert aggregate_scores(s, "mean") == pytest.approx(0.2)
    assert aggregate_scores(s, "max") == pytest.approx(0.4)
    assert aggregate_scores(s, "top_half_mean") == pytest.approx((0.4 + 0.3 + 0.2) / 3)


def test_detector_scores_and_state_round_trip() -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 20, size=(5000, 3))
    det = DriftDetector(top_k=10, num_fields=3)
    with pytest.raises(RuntimeError):
        det.score(ref)
    det.set_reference(ref)
    same = det.score(rng.integers(0, 20, size=(5000, 3)))
    assert same.per_field.shape == (3,) and same.aggregate < 0.01
    shifted = rng.integers(0, 20, size=(5000, 3))
    shifted[:, 1] = rng.integers(100, 120, size=5000)  # field 1: only ids never seen before
    s = det.score(shifted)
    assert np.argmax(s.per_field) == 1 and s.per_field[1] > 0.1
    twin = DriftDetector(top_k=1, num_fields=3)
    twin.load_state_dict(det.state_dict())
    np.testing.assert_array_equal(twin.score(shifted).per_field, s.per_field)


def test_detector_fires_at_injected_drift_only() -> None:
    """Reference = previous period; the score must cross theta_high exactly at the drift periods."""
    cfg = SyntheticConfig(rows_per_period=8000)
    online = OnlineConfig()
    world = build_world(cfg)
    drift = set(cfg.drift_periods)
    det = DriftDetector(top_k=online.top_k, num_fields=cfg.num_fields)
    det.set_reference(world.sample_period(0)["ids"])
    scores = {}
    for k in range(1, cfg.num_periods):
        ids = world.sample_period(k)["ids"]
        scores[k] = det.score(ids).aggregate
        det.set_reference(ids)
    for k, s in scores.items():
        if k in drift:
            assert s >= online.theta_high, f"period {k}: drift missed, score {s:.4f} (all: {scores})"
        else:
            assert s <= online.theta_low, f"period {k}: false alarm, score {s:.4f} (all: {scores})"
