"""Drift statistics: JS divergence by hand, histograms, r_enh schedule, the size correction, and the
causal window detector on Zipf ids and on the quick demo's synthetic world."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from crossadapt.config import OnlineConfig, load_config
from crossadapt.data.synthetic import build_world
from crossadapt.online.drift import (
    DriftTrace,
    WindowDriftDetector,
    aggregate_scores,
    drift_trace,
    first_order_null,
    id_histogram,
    js_divergence,
    js_divergence_rows,
    permutation_null,
    r_enh_from_score,
    top_ids,
)

REPO = Path(__file__).resolve().parents[1]


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


def test_js_rows_matches_scalar() -> None:
    rng = np.random.default_rng(3)
    p, q = rng.integers(0, 30, (4, 7)), rng.integers(0, 30, (4, 7))
    q[2] = 0
    q[2, 0] = 5  # a one-bucket row
    want = [js_divergence(a, b) for a, b in zip(p, q)]
    np.testing.assert_allclose(js_divergence_rows(p, q), want, rtol=0, atol=1e-15)


def test_first_order_null_matches_monte_carlo_on_well_filled_buckets() -> None:
    """E[JS] of two samples of one distribution is (K-1)/8 (1/n + 1/m) when every bucket expects many rows."""
    K, n, m, draws = 11, 4000, 6000, 400
    p = np.full(K, 1.0 / K)
    rng = np.random.default_rng(0)
    js = js_divergence_rows(rng.multinomial(n, p, size=draws), rng.multinomial(m, p, size=draws))
    want = first_order_null(K, n, m)  # 10/8 * (1/4000 + 1/6000) = 5.208e-4
    assert want == pytest.approx(5.2083e-4, rel=1e-4)
    # 8 n_eff JS is ~ chi2(K-1), n_eff = nm/(n+m): sd of the mean of `draws` values = want sqrt(2/(K-1)/draws);
    # 5 sd of Monte Carlo error, plus 1 % for the next order (O(1/(n p)) with n p >= 364)
    tol = 5 * want * math.sqrt(2 / (K - 1) / draws) + 0.01 * want
    assert abs(js.mean() - want) < tol, (js.mean(), want)


@pytest.mark.parametrize("vocab, first_order_error", [(5000, 1.0), (300, -0.1)])
def test_permutation_null_is_unbiased_where_first_order_fails(vocab: int, first_order_error: float) -> None:
    """A flat field (hashed ids) at W = 500, 101 buckets fixed on a separate sample as the detector
    does: over 5,000 ids every bucket expects ~0.1 row and first order is 4 times too high; over 300
    ids it is too low. The permutation null matches the true no-drift JS in both."""
    W, k, reps = 500, 100, 60
    probs = np.full(vocab, 1.0 / vocab)
    rng = np.random.default_rng(vocab)
    raw, null, first = [], [], []
    for _ in range(reps):
        top = top_ids(rng.choice(vocab, W, p=probs), k)
        bucket_p = np.r_[probs[top], 1 - probs[top].sum()]
        ref, rec = rng.multinomial(W, bucket_p)[None], rng.multinomial(W, bucket_p)[None]
        raw.append(js_divergence_rows(ref, rec)[0])
        null.append(permutation_null(ref, rec, 32, rng)[0])
        first.append(first_order_null(top.size + 1, W, W))
    truth = np.mean(raw)  # the true no-drift JS at this W, up to its sampling error
    sd_mean = np.std(raw, ddof=1) / math.sqrt(reps)
    err = np.mean(first) / truth - 1
    assert err > first_order_error if first_order_error > 0 else err < first_order_error, err
    assert abs(np.mean(null) - truth) < 4 * sd_mean + 0.02 * truth  # 2 %: the O(1/W) of the split draws


def _zipf_ids(rng: np.random.Generator, rows: int, fields: int, vocab: int = 2000, a: float = 1.1) -> np.ndarray:
    cdf = np.cumsum(np.arange(1, vocab + 1, dtype=float) ** -a)
    return np.searchsorted(cdf / cdf[-1], rng.random((rows, fields)), side="right").astype(np.int64)


@pytest.mark.parametrize("window", [500, 1000, 5000, 20_000, 100_000])
def test_no_drift_score_below_theta_low_at_every_window_size(window: int) -> None:
    """One Zipf distribution in 6 fields, 4 windows of traffic: every measured score stays below
    theta_low (uncorrected JS at W = 500 is ~0.06, three times theta_low), and no shift is declared."""
    o = OnlineConfig()
    rng = np.random.default_rng([window, 2])
    ids = _zipf_ids(rng, 4 * window, 6)
    det = WindowDriftDetector(6, window, o.top_k, o.theta_high, seed=window)
    scores, raw = [], []
    step = window // 8  # 8 refreshes per window length: the recent window slides over the 4th
    for s0 in range(0, ids.shape[0], step):
        det.observe(ids[s0 : s0 + step])
        if det.fresh:
            scores.append(det.score)
            raw.append(aggregate_scores(det.raw_per_field))
    assert len(scores) == 9 and det.shifts == 0
    assert max(scores) < o.theta_low, scores
    assert min(scores) > -o.theta_low  # centred, not pushed far below either
    if window == 500:
        assert min(raw) > o.theta_low  # the correction is what keeps it below


def test_detector_state_round_trip_continues_exactly() -> None:
    rng = np.random.default_rng(4)
    ids = _zipf_ids(rng, 9000, 3)
    ids[6000:, 1] = rng.integers(5000, 5010, 3000)  # field 1: ten new ids take over
    a = WindowDriftDetector(3, 1000, 20, 0.1, seed=1)
    for s0 in range(0, 4100, 300):
        a.observe(ids[s0 : s0 + 300])
    b = WindowDriftDetector(3, 1000, 1, 0.5)
    b.load_state_dict(a.state_dict())
    got_a, got_b = [], []
    for s0 in range(4200, 9000, 300):
        got_a.append((a.observe(ids[s0 : s0 + 300]), a.score, a.fresh))
        got_b.append((b.observe(ids[s0 : s0 + 300]), b.score, b.fresh))
    assert got_a == got_b
    assert a.shifts == 1 and np.argmax(a.per_field) == 1  # the shift, seen in the field that moved
    with pytest.raises(ValueError, match="window"):
        WindowDriftDetector(3, 999, 20, 0.1).load_state_dict(a.state_dict())


def test_detector_windows_and_phases_by_hand() -> None:
    """W = 40: rows 0-39 select the top ids, 40-79 are the reference, the score needs 40 more rows; a
    new id in every row of the recent window is a shift (JS ln 2 minus the no-drift level of 40 + 40
    rows in 3 buckets, about (3 - 1) / 8 * (2 / 40) = 0.0125)."""
    det = WindowDriftDetector(1, 40, 2, theta_high=0.5)
    assert det.observe(np.array([[1], [1], [2], [3]] * 10 + [[1], [2]] * 20)) is False
    assert det.phase == "score" and not det.fresh and det.score == 0.0
    det.observe(np.full((39, 1), 7))
    assert not det.fresh  # 39 of 40 recent rows
    assert det.observe(np.array([[7]])) is True  # reference {1: 20, 2: 20}, recent {other: 40}
    assert det.raw_per_field[0] == pytest.approx(math.log(2), abs=1e-12)
    assert math.log(2) - 0.05 < det.score < math.log(2)
    assert det.phase == "select" and det.shifts == 1
    det.observe(np.full((80, 1), 7))
    assert not det.fresh and det.score > 0.5  # held until a new reference and a full recent window
    det.observe(np.full((40, 1), 7))
    assert det.fresh and det.score == pytest.approx(0.0, abs=1e-12)  # one id only: nothing to split


def test_trace_is_causal_and_refreshes_every_batch() -> None:
    """A score never depends on rows at or after the position it decides: changing every row from
    position x on leaves every refresh that ends at or before x as it was."""
    rng = np.random.default_rng(5)
    blocks = [_zipf_ids(rng, n, 4) for n in (2500, 3100, 2900)]  # refreshes cross block boundaries
    x = 6100
    changed = np.concatenate(blocks)
    changed[x:] = rng.integers(9000, 9050, changed[x:].shape)  # a shift right at x

    def trace(stream):
        return drift_trace(WindowDriftDetector(4, 500, 50, 0.1), stream, every=256, warmup=blocks[0][:1500])

    a, b = trace(blocks), trace([changed[:4000], changed[4000:]])
    np.testing.assert_array_equal(a.ends, np.r_[np.arange(256, 8500, 256), 8500])
    np.testing.assert_array_equal(a.ends, b.ends)
    before = a.ends <= x
    np.testing.assert_array_equal(a.scores[before], b.scores[before])
    assert a.score_at(x) == b.score_at(x)
    assert not a.shifts.any() and b.shifts[~before].any()  # ... and the change is seen after x


def test_trace_summary_of_a_span() -> None:
    tr = DriftTrace(every=100, initial=0.01, ends=np.array([100, 200, 300, 400]),
                    scores=np.array([0.02, 0.15, 0.15, 0.0]), fresh=np.array([True, True, False, True]),
                    shifts=np.array([False, True, False, False]))
    assert tr.score_at(0) == 0.01 and tr.score_at(99) == 0.01 and tr.score_at(100) == 0.02
    # rows [150, 350): in force at 150 is the score measured up to 100; 200 and 300 end inside
    assert tr.summary(150, 350) == {"drift_score": 0.02, "drift_score_max": 0.15, "shifts": 1, "shift_rows": [50]}
    assert tr.summary(200, 400)["shifts"] == 0  # the shift was caused by rows before 200
    assert DriftTrace.from_dict(tr.to_dict()).summary(0, 400) == tr.summary(0, 400)


@pytest.fixture(scope="module")
def quick_world_ids():
    """Periods 8-15 of the quick demo's synthetic world (configs/quick.yaml): the rows before the
    stream and the stream, with drifts at 11 and 14."""
    cfg = load_config(REPO / "configs" / "quick.yaml")
    world = build_world(cfg.synthetic)
    periods = range(8, cfg.synthetic.num_periods)
    return {k: world.sample_period(k)["ids"] for k in periods}, set(cfg.synthetic.drift_periods)


@pytest.mark.parametrize("window", [500, 2000, 5000])
def test_quick_world_drifts_cross_theta_high_and_nothing_else_leaves_stable(quick_world_ids, window):
    ids, drift = quick_world_ids
    assert drift == {11, 14}
    o = OnlineConfig(drift_window_rows=window)
    det = WindowDriftDetector(next(iter(ids.values())).shape[1], window, o.top_k, o.theta_high)
    # one refresh every 1000 rows here (every batch in the demo: finer, same windows)
    tr = drift_trace(det, list(ids.values()), every=1000)
    start = 0
    for k, block in ids.items():
        span = (tr.ends > start) & (tr.ends <= start + block.shape[0])
        s = tr.summary(start, start + block.shape[0])
        if k in drift:
            assert s["shifts"] == 1 and tr.scores[span].max() >= o.theta_high, (k, s)
        else:
            assert s["shifts"] == 0, (k, s)
            measured = tr.scores[span & tr.fresh]
            assert measured.size and measured.max() <= o.theta_low, (k, measured.max())
        start += block.shape[0]


def test_window_size_below_the_checked_range_is_a_config_error() -> None:
    from crossadapt.errors import ConfigError

    with pytest.raises(ConfigError, match="online.drift_window_rows"):
        load_config(None, {"online.drift_window_rows": 499})
    assert load_config(None, {"online.drift_window_rows": 500}).online.drift_window_rows == 500
