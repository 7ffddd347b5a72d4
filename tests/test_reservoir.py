"""The historical reservoir: bounded, uniform (chi-square), exact state round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from crossadapt.online.reservoir import Reservoir


def _rows(start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows whose content is their stream index, in every array."""
    i = np.arange(start, stop)
    return {
        "ids": np.stack([i, 2 * i], axis=1).astype(np.int64),
        "dense": i[:, None].astype(np.float32),
        "label": (i % 2).astype(np.float32),
    }


def _stream(res: Reservoir, n: int, batch: int) -> None:
    for s in range(0, n, batch):
        res.add(_rows(s, min(n, s + batch)))


@pytest.mark.parametrize("batch", [3, 50])
def test_inclusion_is_uniform(batch: int) -> None:
    # Every row of the stream must end up held with probability K/N, whatever the batch sizes
    # (batch=50 > N puts the whole stream, including many repeated slots, in one vectorised add).
    n, k, runs = 40, 8, 1500
    counts = np.zeros(n)
    for seed in range(runs):
        res = Reservoir(capacity=k, seed=seed)
        _stream(res, n, batch)
        held = res.contents()["ids"][:, 0]
        assert len(np.unique(held)) == k  # never a duplicate row
        counts[held] += 1
    expected = np.full(n, runs * k / n)
    p = chisquare(counts, expected).pvalue
    assert p > 0.01, f"inclusion counts not uniform (p={p:.4g})"


def test_len_bounded_and_seen_counted() -> None:
    res = Reservoir(capacity=10, seed=0)
    assert len(res) == 0 and res.seen == 0
    res.add(_rows(0, 4))
    assert len(res) == 4 and res.seen == 4
    res.add(_rows(4, 25))
    assert len(res) == 10 and res.seen == 25
    res.add(_rows(25, 25))  # an empty batch is fine
    assert len(res) == 10 and res.seen == 25
    held = res.contents()
    # rows stay intact: every array of a held row comes from the same stream row
    np.testing.assert_array_equal(held["ids"][:, 1], 2 * held["ids"][:, 0])
    np.testing.assert_array_equal(held["dense"][:, 0], held["ids"][:, 0].astype(np.float32))


def test_sample_sizes() -> None:
    res = Reservoir(capacity=10, seed=0)
    res.add(_rows(0, 6))
    rng = np.random.default_rng(0)
    assert res.sample(0, rng)["ids"].shape == (0, 2)
    assert res.sample(4, rng)["label"].shape == (4,)
    out = res.sample(100, rng)  # never more than held, no repeats
    assert out["ids"].shape == (6, 2)
    assert len(np.unique(out["ids"][:, 0])) == 6
    assert out["ids"].dtype == np.int64 and out["dense"].dtype == np.float32


def test_capacity_zero_holds_nothing() -> None:
    res = Reservoir(capacity=0, seed=0)
    res.add(_rows(0, 5))
    assert len(res) == 0 and res.seen == 5
    assert res.sample(3)["ids"].shape == (0, 2)


def test_state_dict_round_trip_continues_identically() -> None:
    a = Reservoir(capacity=16, seed=3)
    _stream(a, 50, 9)
    b = Reservoir(capacity=1, seed=99)
    b.load_state_dict(a.state_dict())
    assert len(b) == len(a) and b.seen == a.seen
    for s in range(50, 200, 13):
        a.add(_rows(s, s + 13))
        b.add(_rows(s, s + 13))
    for key in ("ids", "dense", "label"):
        np.testing.assert_array_equal(a.contents()[key], b.contents()[key])
        np.testing.assert_array_equal(a.sample(5)[key], b.sample(5)[key])


def test_mismatched_batches_rejected() -> None:
    res = Reservoir(capacity=4, seed=0)
    res.add(_rows(0, 3))
    bad = _rows(3, 6)
    bad["ids"] = bad["ids"][:, :1]
    with pytest.raises(ValueError, match="ids"):
        res.add(bad)
    with pytest.raises(ValueError, match="same leading length"):
        res.add({"ids": np.zeros((3, 2), np.int64), "dense": np.zeros((2, 1), np.float32), "label": np.zeros(3)})
