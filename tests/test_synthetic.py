"""Synthetic logs: contract layout, determinism, CTR / Bayes AUC ranges, drift metadata; the
Criteo-shaped world (cardinality profile, long tail, numeric fields, bounded memory)."""

from __future__ import annotations

import hashlib
import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossadapt.config import SyntheticConfig, load_config, replace
from crossadapt.data.arrays import read_periods
from crossadapt.data.period_stats import PeriodStats, binned_auc
from crossadapt.data.synthetic import META_FILE, TRUTH_FILE, build_world, feature_map, generate, is_current, load_world
from crossadapt.data.synthetic_world import ClickModelScales
from crossadapt.errors import ConfigError, DataError
from crossadapt.featuremap import FeatureMap
from crossadapt.metrics import auc

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
    generate(SMALL, tmp_path)
    assert is_current(tmp_path, SMALL)
    assert not is_current(tmp_path, SyntheticConfig(**{**SMALL.__dict__, "seed": 8}))
    assert not is_current(tmp_path, SMALL, ClickModelScales(drift_block=3))  # scales live in code
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "generator_version": -1}))
    assert not is_current(tmp_path, SMALL)


# ---------------------------------------------------------------- the Criteo-shaped world

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Criteo's categorical cardinalities at min count 10 (issue 14), C1..C26.
CRITEO_PROFILE = [1458, 555, 193948, 138800, 306, 18, 11970, 634, 4, 42646, 5178, 192772, 3175, 27, 11422,
                  181074, 11, 4654, 2031, 4, 189656, 17, 16, 59696, 85, 45570]
# A small long-tailed world with every feature of the Criteo-shaped one: uneven vocabularies (one
# of 4 ids, as C9), every id kept, numeric fields, several chunks per period.
TAIL = SyntheticConfig(num_fields=4, vocab_sizes=(4, 50, 400, 3000), rare_ids="keep", numeric_fields=3,
                       rows_per_period=5000, num_periods=4, drift_periods=(2,), base_ctr=0.25, chunk_rows=1536, seed=5)


def _ctr_tolerance(ctr: float, rows: int) -> float:
    """4 sd of a period's CTR around base_ctr: the rows' Bernoulli noise plus the calibration sample's
    (the bias is solved so that the mean probability of ``calib_rows`` rows is base_ctr)."""
    var = ctr * (1 - ctr)
    return 4 * (math.sqrt(var / rows) + math.sqrt(var / ClickModelScales().calib_rows))


@pytest.fixture(scope="module")
def criteo_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticConfig, Path, dict]:
    """configs/criteo_like.yaml on fewer rows: 3 periods of 20 k rows in chunks of 8 k, drift at 2."""
    cfg = load_config(CONFIGS / "criteo_like.yaml").synthetic
    cfg = replace(cfg, rows_per_period=20_000, num_periods=3, drift_periods=(2,), chunk_rows=8192)
    root = tmp_path_factory.mktemp("criteo_like")
    return cfg, root, generate(cfg, root)


def test_criteo_like_cardinality_profile(criteo_like) -> None:
    cfg, root, _ = criteo_like
    fm = FeatureMap.load(root)
    assert fm.vocab_sizes == CRITEO_PROFILE and sum(fm.vocab_sizes) == 1_085_727
    assert fm.categorical_names == [f"f{i}" for i in range(26)]
    assert fm.numeric_names == [f"n{j}" for j in range(13)]
    table = pq.read_table(root / "period=1" / "part-00000.parquet")
    assert table.column_names == ["label", *fm.categorical_names, *fm.numeric_names, "ts"]
    assert all(table.schema.field(n).type == pa.float32() for n in fm.numeric_names)
    arrays = read_periods(root, [0, 1, 2], fm)  # the reader checks id ranges, labels and finiteness
    assert arrays["ids"].shape == (60_000, 26) and arrays["dense"].shape == (60_000, 13)
    assert arrays["ids"].min() >= 1  # every id kept: nothing is written as OOV
    assert (arrays["dense"] >= 0).all() and arrays["dense"].std(axis=0).min() > 0.1  # log1p of counts, varied
    assert pq.ParquetFile(root / "period=0" / "part-00000.parquet").metadata.num_row_groups == 3  # 8192-row chunks


def test_criteo_like_ctr_bayes_auc_and_drift(criteo_like) -> None:
    cfg, root, meta = criteo_like
    assert cfg.base_ctr == 0.25
    for p in meta["periods"]:
        assert abs(p["ctr"] - 0.25) <= _ctr_tolerance(0.25, p["rows"]), p
        assert 0.6 <= p["bayes_auc"] <= 0.95 and 0 < p["bayes_auc_max_error"] < 1e-4, p
        assert 0.0 < p["bayes_logloss"] < -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), p  # beats the constant
    (drift,) = meta["drifts"]
    assert drift["period"] == 2 and len(drift["fields"]) == 13
    promoted = drift["promoted_ids_per_field"]  # fields of < 32 ids promote a quarter of them
    assert promoted == {f: (8 if CRITEO_PROFILE[int(f[1:])] - 1 >= 32 else max(1, (CRITEO_PROFILE[int(f[1:])] - 1) // 4))
                        for f in drift["fields"]}
    # the exact Bayes AUC of the (multi-chunk) period from the regenerated truth lies within the bound
    world = load_world(root)
    rows = world.sample_period(2)
    exact = auc(rows["label"], rows["p"])
    assert abs(meta["periods"][2]["bayes_auc"] - exact) <= meta["periods"][2]["bayes_auc_max_error"]


def test_long_tail_kept_every_id_can_occur() -> None:
    world = build_world(TAIL)
    sizes = list(TAIL.vocab_sizes)
    assert world.emit is None  # ids are written as drawn
    for regime in world.regimes:
        for f, V in enumerate(sizes):  # every id 1..V-1 has a rank, every rank a probability > 0
            assert sorted(regime.rank_to_id.field(f).tolist()) == list(range(1, V))
            assert (world.rank_probs.field(f) > 0).all()
            assert (world.w.field(f)[1:] != 0).all() and world.w.field(f)[0] == 0  # effects for all, OOV none


def test_long_tail_distinct_ids_match_the_popularity_law() -> None:
    """Distinct ids in N rows of the last field (3,000 ids): E[D] = sum_r 1 - (1 - p_r)^N; indicators
    of occupancy are negatively correlated, so sd(D) <= sqrt(E[D]). The OOV world keeps ~20."""
    cfg = replace(TAIL, rows_per_period=20_000, chunk_rows=4096)
    world = build_world(cfg)
    ids = world.sample_period(0)["ids"][:, 3]
    probs = world.rank_probs.field(3)
    expected = float(np.sum(1 - (1 - probs) ** cfg.rows_per_period))
    distinct = np.unique(ids).size
    assert abs(distinct - expected) <= 5 * math.sqrt(expected), (distinct, expected)
    oov = build_world(replace(cfg, rare_ids="oov"))
    kept = np.unique(oov.sample_period(0)["ids"][:, 3])
    sc = ClickModelScales()
    assert kept.size <= sc.kept_ranks + sc.drift_block + 1  # + promoted ids + the OOV id 0
    assert distinct > 20 * kept.size


def test_long_tail_determinism_and_reload(tmp_path: Path) -> None:
    generate(TAIL, tmp_path / "a")
    generate(TAIL, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    generate(replace(TAIL, seed=6), tmp_path / "c")
    assert _files(tmp_path / "c")["period=0/part-00000.parquet"] != a["period=0/part-00000.parquet"]
    world = load_world(tmp_path / "a")
    rows = world.sample_period(3)
    table = pq.read_table(tmp_path / "a" / "period=3" / "part-00000.parquet")
    np.testing.assert_array_equal(rows["ids"][:, 2], table.column("f2").to_numpy())
    np.testing.assert_array_equal(rows["dense"][:, 1], table.column("n1").to_numpy())
    np.testing.assert_array_equal(rows["label"], table.column("label").to_numpy())
    assert np.all(np.diff(table.column("ts").to_numpy()) >= 0)  # in time order across chunks
    assert is_current(tmp_path / "a", TAIL) and not is_current(tmp_path / "a", replace(TAIL, chunk_rows=1000))
    fm = feature_map(TAIL)
    assert fm.vocab_sizes == [4, 50, 400, 3000] and fm.numeric_names == ["n0", "n1", "n2"]


def test_logit_with_numeric_fields_matches_fm_formula() -> None:
    """Numeric field j enters as z_j = (x_j - mean_j) / std_j: beta_j z_j first order, z_j v_j as latent."""
    world = build_world(TAIL)
    regime = world.regime_of(3)
    ids, dense = world.sample_features(regime, 7, np.random.default_rng(1))
    num = world.numeric
    z = (dense.astype(np.float64) - num.mean) / num.std
    lat = lambda row, zr, a: world.v[a, row[a]] if a < 4 else zr[a - 4] * num.v[a - 4]  # noqa: E731
    expected = [
        world.bias + regime.bias_shift + sum(world.w[f, row[f]] for f in range(4)) + zr @ num.w
        + sum(regime.pair_w[a, b] * lat(row, zr, a) @ lat(row, zr, b) for a in range(7) for b in range(a + 1, 7))
        for row, zr in zip(ids, z)
    ]
    np.testing.assert_allclose(world.logits(ids, 3, dense), expected, rtol=0, atol=1e-12)


def test_chunks_bound_the_generators_memory(tmp_path: Path) -> None:
    """8x the rows in the same chunks: the same peak (traced numpy/Python allocations), and every
    chunk holds at most chunk_rows rows. Holding a period whole would add ~70 bytes a row (2 MB here)."""
    cfg = replace(TAIL, num_periods=1, drift_periods=(), chunk_rows=4096)
    scales = ClickModelScales(calib_rows=2000)  # keep the calibration's own peak below the chunks'

    def peak(rows: int, root: Path) -> int:
        tracemalloc.start()
        generate(replace(cfg, rows_per_period=rows), root, scales)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(4 * 4096, tmp_path / "s"), peak(32 * 4096, tmp_path / "l")
    assert large <= small + 256 * 1024, (small, large)
    sizes = [len(c["label"]) for c in build_world(replace(cfg, rows_per_period=10_000), scales).iter_period(0)]
    assert sizes == [4096, 4096, 1808]
    assert pq.ParquetFile(tmp_path / "l" / "period=0" / "part-00000.parquet").metadata.num_row_groups == 32


def test_binned_auc_against_exact_auc() -> None:
    rng = np.random.default_rng(0)
    p = np.round(rng.random(50_000), 3)  # many ties, some sharing a bin with other values
    y = (rng.random(50_000) < p).astype(np.int8)
    stats = PeriodStats(bins=1 << 12)
    for i in range(0, 50_000, 7_000):
        stats.add(y[i : i + 7_000], p[i : i + 7_000])
    s = stats.summary()
    exact = auc(y, p)
    assert s["rows"] == 50_000 and s["ctr"] == pytest.approx(y.mean(), abs=1e-15)
    assert abs(s["bayes_auc"] - exact) <= s["bayes_auc_max_error"] and s["bayes_auc_max_error"] < 2e-3
    one = PeriodStats()
    one.add(y, p)  # one chunk: the exact metric
    assert one.summary()["bayes_auc"] == exact and one.summary()["bayes_auc_max_error"] == 0.0
    # known answer: two bins, one positive above two negatives, one tie in the lower bin
    assert binned_auc(np.array([1, 1]), np.array([2, 0])) == (0.75, 0.25)
    assert binned_auc(np.array([0, 0]), np.array([1, 1])) == (None, None)


def test_long_tail_config_errors() -> None:
    with pytest.raises(ConfigError, match="synthetic.vocab_sizes: 3 sizes for num_fields=4"):
        build_world(replace(TAIL, vocab_sizes=(4, 50, 400)))
    with pytest.raises(ConfigError, match=r"synthetic.vocab_sizes: need >= 3 each .*\('f1', 2\)"):
        build_world(replace(TAIL, vocab_sizes=(4, 2, 400, 5)))
    with pytest.raises(ConfigError, match="synthetic.chunk_rows"):
        build_world(replace(TAIL, chunk_rows=0))
    with pytest.raises(ConfigError, match="synthetic.numeric_fields"):
        build_world(replace(TAIL, numeric_fields=-1))


def test_small_world_rows_are_those_of_generator_version_2() -> None:
    """The demo's world is unchanged by the Criteo-shaped extension: the rows of periods 0, 11 and
    14 (both regimes after the drifts) hash as generator version 2 wrote them (commit 55a49de).
    Depends only on numpy's PCG64 streams, which numpy keeps stable."""
    world = build_world(SyntheticConfig(rows_per_period=3000))
    digest = hashlib.sha256()
    for k in (0, 11, 14):
        rows = world.sample_period(k)
        for a in (rows["ids"], rows["label"], rows["ts"]):
            digest.update(np.ascontiguousarray(a).tobytes())
    assert world.bias == -2.4010281161699503
    assert digest.hexdigest() == "d3b0f1c9fd158a918e18816d9002c5eb81f0d020fff2941e980cbe45ca166295"
