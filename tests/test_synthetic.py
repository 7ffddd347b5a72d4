"""Synthetic logs: contract layout, determinism, CTR / Bayes AUC ranges, drift metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossadapt.config import SyntheticConfig
from crossadapt.data.arrays import read_periods
from crossadapt.data.synthetic import META_FILE, TRUTH_FILE, build_world, generate, load_world
from crossadapt.errors import ConfigError, DataError
from crossadapt.featuremap import FeatureMap

SMALL = SyntheticConfig(num_fields=6, vocab_size=300, rows_per_period=3000, num_periods=4, drift_periods=(2,), seed=7)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_dtypes(tmp_path: Path) -> None:
    meta = generate(SMALL, tmp_path)
    for k in range(SMALL.num_periods):
        assert (tmp_path / f"period={k}" / "part-00000.parquet").is_file()
    table = pq.read_table(tmp_path / "period=1" / "part-00000.parquet")
    assert table.column_names == ["label", *[f"f{i}" for i in range(6)], "ts"]
    assert table.schema.field("label").type == pa.int8()
    assert table.schema.field("f0").type == pa.int64()
    assert table.schema.field("ts").type == pa.int64()
    ts = table.column("ts").to_numpy()
    assert np.all(np.diff(ts) >= 0)  # rows in time order
    fm = FeatureMap.load(tmp_path)
    assert fm.categorical_names == [f"f{i}" for i in range(6)]
    assert all(f.vocab_size == 300 and f.oov_index == 0 and f.encoder == "synthetic" for f in fm.fields)
    arrays = read_periods(tmp_path, [0, 1])  # the lead's reader validates ids and labels
    assert arrays["ids"].shape == (6000, 6) and arrays["dense"].shape == (6000, 0)
    assert arrays["ids"].min() >= 0 and arrays["ids"].max() < 300
    assert json.loads((tmp_path / META_FILE).read_text()) == meta
    assert (tmp_path / TRUTH_FILE).is_file()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    generate(SMALL, tmp_path / "a")
    generate(SMALL, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    generate(SyntheticConfig(**{**SMALL.__dict__, "seed": 8}), tmp_path / "c")
    assert _files(tmp_path / "c")["period=0/part-00000.parquet"] != a["period=0/part-00000.parquet"]


def test_meta_drift_schedule(tmp_path: Path) -> None:
    meta = generate(SMALL, tmp_path)
    assert meta["drift_periods"] == [2]
    (drift,) = meta["drifts"]
    assert drift["period"] == 2
    assert set(drift["types"]) == {"new_popular_ids", "interaction_weights"}
    assert 1 <= len(drift["fields"]) <= 6 and all(f.startswith("f") for f in drift["fields"])
    assert [p["period"] for p in meta["periods"]] == [0, 1, 2, 3]
    assert all(p["rows"] == 3000 for p in meta["periods"])
    assert set(meta["periods"][0]) >= {"period", "rows", "ctr", "bayes_auc", "bayes_logloss"}


def test_default_config_ctr_and_bayes_auc(tmp_path: Path) -> None:
    # The real default shape (12 fields, vocab 2000) on fewer rows to stay fast.
    cfg = SyntheticConfig(rows_per_period=10_000)
    meta = generate(cfg, tmp_path)
    assert meta["drift_periods"] == sorted(cfg.drift_periods)
    for p in meta["periods"]:
        assert 0.03 <= p["ctr"] <= 0.25, p
        assert abs(p["true_ctr"] - cfg.base_ctr) < 0.03, p  # the bias solves mean CTR ~= base_ctr
        assert 0.7 <= p["bayes_auc"] <= 0.9, p
        assert 0.0 < p["bayes_logloss"] < 0.693, p


def test_drift_changes_popular_ids() -> None:
    cfg = SyntheticConfig(rows_per_period=5000)
    world = build_world(cfg)
    d = cfg.drift_periods[0]
    before = world.regime_of(d - 1)
    after = world.regime_of(d)
    assert before.start_period < d == after.start_period
    changed = [f for f in range(cfg.num_fields) if not np.array_equal(before.rank_to_id[f], after.rank_to_id[f])]
    assert [f"f{f}" for f in changed] == after.info["fields"]
    assert not np.allclose(before.pair_w, after.pair_w)
    # the new regime persists until the next drift
    assert world.regime_of(d + 1) is after


def test_load_world_reproduces_probabilities(tmp_path: Path) -> None:
    generate(SMALL, tmp_path)
    world = load_world(tmp_path)
    rows = world.sample_period(3)
    table = pq.read_table(tmp_path / "period=3" / "part-00000.parquet")
    np.testing.assert_array_equal(rows["ids"][:, 0], table.column("f0").to_numpy())
    np.testing.assert_array_equal(rows["label"], table.column("label").to_numpy())


def test_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="drift_periods"):
        build_world(SyntheticConfig(num_periods=4, drift_periods=(4,)))
    with pytest.raises(ConfigError, match="base_ctr"):
        build_world(SyntheticConfig(base_ctr=1.5))
    generate(SMALL, tmp_path)
    with pytest.raises(DataError, match="beyond num_periods"):
        generate(SyntheticConfig(**{**SMALL.__dict__, "num_periods": 3, "drift_periods": (2,)}), tmp_path)


def test_logit_matches_fm_formula() -> None:
    """logit = b + sum_f w_f[id_f] + sum_{f<g} W[f,g] <v_f[id_f], v_g[id_g]>, checked by brute force."""
    cfg = SyntheticConfig(num_fields=5, vocab_size=60, latent_dim=3, num_periods=3, drift_periods=(1,))
    world = build_world(cfg)
    ids = world.sample_ids(world.regime_of(2), 9, np.random.default_rng(0))
    pw = world.regime_of(2).pair_w
    expected = np.array(
        [
            world.bias
            + world.regime_of(2).bias_shift
            + sum(world.w[f, row[f]] for f in range(5))
            + sum(pw[f, g] * world.v[f, row[f]] @ world.v[g, row[g]] for f in range(5) for g in range(f + 1, 5))
            for row in ids
        ]
    )
    np.testing.assert_allclose(world.logits(ids, 2), expected, rtol=0, atol=1e-12)


def test_cache_key_covers_version_config_and_scales(tmp_path: Path) -> None:
    from crossadapt.data.synthetic import ClickModelScales, is_current

    generate(SMALL, tmp_path)
    assert is_current(tmp_path, SMALL)
    assert not is_current(tmp_path, SyntheticConfig(**{**SMALL.__dict__, "seed": 8}))
    assert not is_current(tmp_path, SMALL, ClickModelScales(drift_block=3))  # scales live in code
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "generator_version": -1}))
    assert not is_current(tmp_path, SMALL)
