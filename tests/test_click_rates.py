"""The per-field click-rate model: exact counts and scores on hand-computed cases, and counting that
streams parquet record batches gives the same counters as counting everything at once."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossadapt import click_rates
from crossadapt.data import arrays as A
from crossadapt.featuremap import FeatureMap, FieldSpec

FM = FeatureMap("toy", (FieldSpec("a", vocab_size=3), FieldSpec("b", vocab_size=2), FieldSpec("x", type="numeric")))


def test_counts_and_log_odds_hand_computed():
    ids = np.array([[0, 1], [1, 1], [0, 0], [2, 1]])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    c = click_rates.count_clicks([(ids[:2], y[:2]), (ids[2:], y[2:])], [3, 2])
    assert c.impressions.tolist() == [2, 1, 1, 1, 3] and c.clicks.tolist() == [2, 0, 0, 1, 1]
    assert c.rows == 4 and c.total_clicks == 2
    base = 2.5 / 5  # (clicks + 0.5) / (rows + 1)
    rate_a0 = (2 + 20 * base) / (2 + 20)  # field a, id 0: 2 clicks in 2 rows, 20 pseudo-rows at the base
    lo = c.log_odds(prior=20)
    assert lo[0] == pytest.approx(math.log(rate_a0 / (1 - rate_a0)) - math.log(base / (1 - base)), abs=1e-12)
    row = np.array([[0, 1]])  # a=0 (slot 0), b=1 (slot 3 + 1 = 4)
    assert click_rates.score(row, lo, [3, 2])[0] == pytest.approx(lo[0] + lo[4], abs=1e-12)


def test_unseen_ids_score_the_base_rate():
    c = click_rates.count_clicks([(np.array([[0, 0]]), np.array([1.0]))], [3, 2])
    assert c.log_odds()[[1, 2, 4]].tolist() == [0.0, 0.0, 0.0]


def test_streamed_counting_equals_counting_at_once(tmp_path):
    rng = np.random.default_rng(0)
    FM.save(tmp_path)
    parts = []
    for k in range(2):
        n = 1000 + 37 * k
        t = {"label": (rng.random(n) < 0.2).astype(np.int8), "a": rng.integers(0, 3, n), "b": rng.integers(0, 2, n),
             "x": rng.random(n).astype(np.float32)}
        (tmp_path / f"period={k}").mkdir()
        pq.write_table(pa.table(t), tmp_path / f"period={k}" / "part-0.parquet", row_group_size=100)
        parts.append(t)
    whole = A.read_periods(tmp_path, [0, 1], FM)
    streamed = click_rates.ClickCounts.zeros(FM.vocab_sizes)
    starts = []
    for start, a in A.iter_period_batches(tmp_path, [0, 1], FM, batch_rows=64):
        assert A.num_rows(a) <= 64
        np.testing.assert_array_equal(a["ids"], whole["ids"][start:start + A.num_rows(a)])  # time order kept
        streamed.add(a["ids"], a["label"])
        starts.append(start)
    once = click_rates.count_clicks([(whole["ids"], whole["label"])], FM.vocab_sizes)
    assert starts[0] == 0 and streamed.rows == once.rows == 2037
    np.testing.assert_array_equal(streamed.impressions, once.impressions)
    np.testing.assert_array_equal(streamed.clicks, once.clicks)
    assert A.label_counts(tmp_path, [0, 1], "label") == (2037, int(whole["label"].sum()))
