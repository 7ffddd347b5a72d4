"""StreamBatcher: batches of exactly batch_size rows, history share from the causal drift trace, equal
batches for CrossAdapt and student_replay, reset on shift, exact resume (pure, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from crossadapt.config import OnlineConfig
from crossadapt.online.drift import DriftTrace, r_enh_from_score
from crossadapt.online.mixing import StreamBatcher


def _rows(start: int, n: int) -> dict[str, np.ndarray]:
    """Rows whose field 0 is their stream position (retained-window rows: negative positions)."""
    pos = np.arange(start, start + n, dtype=np.int64)
    return {"ids": np.stack([pos, pos % 7], axis=1), "dense": np.zeros((n, 0), np.float32),
            "label": (pos % 3 == 0).astype(np.float32)}


def _trace(ends, scores, shifts=None, initial=0.0, every=64) -> DriftTrace:
    ends = np.asarray(ends, np.int64)
    return DriftTrace(every, initial, ends, np.asarray(scores, float), np.ones(ends.size, bool),
                      np.zeros(ends.size, bool) if shifts is None else np.asarray(shifts, bool))


CFG = OnlineConfig(batch_size=64, reservoir_size=500, theta_low=0.02, theta_high=0.1, r_enh_min=0.0, r_enh_max=0.5)
PERIODS = [(0, 1000), (1000, 700), (1700, 1300)]


def _run(history: bool, trace: DriftTrace, seed: int = 0, cfg: OnlineConfig = CFG):
    b = StreamBatcher(cfg, history=history, seed=seed, trace=trace)
    b.warm_up(_rows(-300, 300))
    out = []
    for start, n in PERIODS:
        out.append([(batch, info) for batch, info in b.batches(_rows(start, n))])
    return b, out


def test_every_batch_has_batch_size_rows_and_every_row_is_trained_once_in_order() -> None:
    # stable until 1500, a shift measured on rows before 1536, then stable again from 2400
    trace = _trace([1536, 2432], [0.2, 0.0], shifts=[True, False])
    for history in (False, True):
        b, periods = _run(history, trace)
        current = []
        for batches in periods:
            for batch, info in batches:
                assert batch["ids"].shape[0] == CFG.batch_size and batch["label"].shape[0] == CFG.batch_size
                n_cur = CFG.batch_size - info["history_rows"]
                current.append(batch["ids"][:n_cur, 0])
        current = np.concatenate(current)
        # the stream's rows, each once, in time order; only the last, fewer than one batch, wait
        np.testing.assert_array_equal(current, np.arange(current.size))
        assert b.carry_rows == 3000 - current.size < CFG.batch_size
        assert b.rows_trained == current.size and b.pos == current.size
        if not history:
            assert b.history_rows == 0 and sum(len(p) for p in periods) == 3000 // 64


def test_history_share_follows_the_score_in_force_at_the_batch_start() -> None:
    trace = _trace([600, 1600, 2200], [0.06, 0.5, 0.0], shifts=[False, True, False], initial=0.0)
    b, periods = _run(True, trace)
    pos = 0
    for batches in periods:
        for batch, info in batches:
            want = r_enh_from_score(trace.score_at(pos), CFG.theta_low, CFG.theta_high, CFG.r_enh_min, CFG.r_enh_max)
            assert info["r_enh"] == want and info["drift_score"] == trace.score_at(pos)
            assert info["history_rows"] == min(round(64 * want), 63)  # the reservoir is never short here...
            hist = batch["ids"][64 - info["history_rows"]:, 0]
            assert np.all(hist < pos)  # history rows are rows already seen (or the retained window)
            if pos >= 1600:  # ... except that the shift at 1600 emptied it: only rows after it come back
                assert np.all(hist >= 1600)
            pos += 64 - info["history_rows"]
    r = [info["r_enh"] for batches in periods for _, info in batches]
    assert r[0] == 0.5 and min(r) == 0.0 and 0.0 < sorted(set(r))[1] < 0.5  # max, min and interpolated


def test_replay_and_crossadapt_batches_are_identical_and_seeds_differ() -> None:
    trace = _trace([1536], [0.05])
    _, a = _run(True, trace, seed=3)
    _, b = _run(True, trace, seed=3)
    _, c = _run(True, trace, seed=4)
    flat = lambda p: np.concatenate([x["ids"] for batches in p for x, _ in batches])  # noqa: E731
    np.testing.assert_array_equal(flat(a), flat(b))
    assert not np.array_equal(flat(a), flat(c))


def test_state_round_trip_resumes_exactly() -> None:
    trace = _trace([900, 1800], [0.05, 0.3], shifts=[False, True])
    a = StreamBatcher(CFG, history=True, seed=1, trace=trace)
    a.warm_up(_rows(-300, 300))
    list(a.batches(_rows(0, 1000)))
    b = StreamBatcher(CFG, history=True, seed=1, trace=trace)
    b.load_state_dict(a.state_dict())
    assert b.carry_rows == a.carry_rows > 0
    for start, n in PERIODS[1:]:
        xa = [x for x, _ in a.batches(_rows(start, n))]
        xb = [x for x, _ in b.batches(_rows(start, n))]
        assert len(xa) == len(xb) > 0
        for u, v in zip(xa, xb):
            for k in u:
                np.testing.assert_array_equal(u[k], v[k])


@pytest.mark.parametrize("r_max", [0.5, 0.999])
def test_at_least_one_current_row_per_batch(r_max: float) -> None:
    cfg = OnlineConfig(batch_size=64, reservoir_size=5000, r_enh_max=r_max)
    b = StreamBatcher(cfg, history=True, seed=0, trace=_trace([], []))
    b.warm_up(_rows(-3000, 3000))
    n = [info["history_rows"] for _, info in b.batches(_rows(0, 500))]
    assert max(n) == min(round(64 * r_max), 63)


def test_a_period_fed_in_chunks_gives_the_batches_of_the_whole_period() -> None:
    """The online stage reads each period in chunks: the batcher carries rows across chunk boundaries as
    across periods, so the batches (current rows, history samples, r_enh) are the same, bit for bit."""
    trace = _trace([1536, 2432], [0.2, 0.0], shifts=[True, False])
    whole_b, whole = _run(True, trace)
    b = StreamBatcher(CFG, history=True, seed=0, trace=trace)
    b.warm_up(_rows(-300, 300))
    for (start, n), expected in zip(PERIODS, whole):
        got = [x for s in range(start, start + n, 150) for x in b.batches(_rows(s, min(150, start + n - s)))]
        assert len(got) == len(expected)
        for (bg, ig), (be, ie) in zip(got, expected):
            assert ig == ie and all(np.array_equal(bg[k], be[k]) for k in be)
    assert b.state_dict()["pos"] == whole_b.state_dict()["pos"] and b.carry_rows == whole_b.carry_rows
