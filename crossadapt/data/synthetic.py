"""Synthetic CTR logs with a known click model and scheduled drift (the embedded default).

The generator is the ground truth for the demo and the tests: because the true click probability
of every row is known, we can report the Bayes-optimal AUC/LogLoss per period, and because drift
is injected at known periods, the drift detector and online adaptation can be checked against it.

World (fixed per ``SyntheticConfig.seed``):

- ``F = num_fields`` categorical fields ``f0 .. f{F-1}``, each with ``vocab_size`` ids; id 0 is the
  OOV index of the contract and is never emitted (every synthetic id is "known").
- Popularity: per field a random permutation maps popularity rank ``r`` (0 = most popular) to an
  id; rank ``r`` is drawn with probability ``(r + 1) ** -zipf_a`` (Zipf-like over ``vocab_size - 1``
  real ids). Fields are drawn independently of each other.
- Click model (FM-style):
  ``logit = b + sum_f w_f[id_f] + sum_{f<g} W[f, g] * <v_f[id_f], v_g[id_g]>`` with latent vectors of
  size ``latent_dim`` and a sparse symmetric pair-weight matrix ``W``. Latent vectors are centred
  under the period-0 popularity, so the interaction term has (almost) no first-order projection:
  a first-order model (logistic regression) cannot pick it up, which keeps the gap between LR
  and interaction models large. Both terms are rescaled to target standard deviations
  (:class:`ClickModelScales`) and ``b`` is found by bisection so the period-0 mean CTR equals
  ``base_ctr``.
- Drift at every period in ``drift_periods`` (a *regime change*, which persists until the next one):
  (a) ``new_popular_ids``: for about half the fields a block of previously rare ids is promoted to the
  top of the popularity ranking, (b) ``interaction_weights``: a fraction of the pair weights ``W`` are
  redrawn. ``b``, ``w`` and ``v`` never change, so the CTR stays near ``base_ctr``.

Outputs (data contract): ``<root>/period=<k>/part-00000.parquet`` (``label`` int8, ``f0..`` int64,
``ts`` int64, rows in time order), ``feature_map.json``, ``meta.json`` (config, drift schedule and
per-period CTR / Bayes AUC / Bayes LogLoss) and ``truth.npz`` (the true parameters, for oracles).
Everything is a deterministic function of the config: same seed, byte-identical files.

Example:
    >>> from crossadapt.config import SyntheticConfig
    >>> meta = generate(SyntheticConfig(rows_per_period=1000, num_periods=3, drift_periods=(2,)), "/tmp/syn")
    >>> meta["drift_periods"]
    [2]
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crossadapt import atomic
from crossadapt.config import SyntheticConfig, from_dict, to_dict
from crossadapt.errors import DataError
from crossadapt.featuremap import FieldSpec, FeatureMap
from crossadapt.metrics import auc, logloss

#: Bumped whenever the generator's code changes what it writes: cached logs of another version are
#: regenerated (``crossadapt.experiment.prepare``).
GENERATOR_VERSION = 2
META_FILE = "meta.json"
TRUTH_FILE = "truth.npz"
DATASET_NAME = "synthetic"
#: Start of period 0 (2024-01-01 UTC); each period is one day of seconds.
TS_ORIGIN = 1_704_067_200
PERIOD_SECONDS = 86_400

# Stream tags for ``np.random.default_rng([seed, tag, ...])``: every random draw has its own stream,
# so changing ``rows_per_period`` or ``num_periods`` never changes the world's parameters.
_TAG_PARAMS, _TAG_ROWS, _TAG_DRIFT, _TAG_CALIB = 0, 1, 2, 3


@dataclass(frozen=True)
class ClickModelScales:
    """Strength of the hidden click model (not in ``SyntheticConfig``: tuned once, see the report).

    Attributes:
        first_order_std: target std of ``sum_f w_f[id_f]`` over period-0 rows.
        interaction_std: target std of the pairwise term over period-0 rows.
        pair_density: fraction of field pairs with a non-zero interaction weight.
        drift_field_fraction: fraction of fields whose popularity ranking changes at a drift.
        drift_block: number of rare ids promoted to the top of the ranking of an affected field.
        drift_pair_fraction: fraction of pair weights redrawn at a drift.
        head_ranks, tail_decay: an id's effects (``w`` and ``v``) are scaled by
            ``(1 + best_rank / head_ranks) ** -tail_decay`` where ``best_rank`` is the best popularity
            rank the id ever has (over all regimes).
        kept_ranks: ids whose best rank is never below ``kept_ranks`` are written as the OOV id 0,
            as a min-count vocabulary built over the whole log would do; their effects are zero, so
            the true probability is a function of the written ids and the Bayes AUC is exact.
        calib_rows: rows used to fit the scales and the bias (period-0 popularity).

    Why these values (measured with the default ``SyntheticConfig``, 6 periods to train, period 8
    to test): interactions carry most of the signal (first-order oracle AUC 0.63, Bayes 0.77), so
    logistic regression trails the interaction models by ~0.1; with 20 kept ranks and rank-2
    latent vectors the interaction function is small enough that DNN and DCNv2 learn it to within
    0.01-0.02 of the Bayes AUC from 324 k rows (with 50 ranks and rank 8 they stalled 0.04-0.05
    short: DNNs learn dot products slowly). A drift (8 promoted ids in half the fields, 30 % of
    pair weights redrawn) leaves the previous regime's true logit at AUC ~0.74-0.77 against a Bayes
    ~0.79: a real shift that online learning can recover from, not a new world (16 ids and 50 %
    dropped it to 0.59).
    """

    first_order_std: float = 0.55
    interaction_std: float = 1.0
    pair_density: float = 0.35
    drift_field_fraction: float = 0.5
    drift_block: int = 8
    drift_pair_fraction: float = 0.3
    head_ranks: float = 20.0
    tail_decay: float = 1.0
    kept_ranks: int = 20
    calib_rows: int = 100_000


@dataclass
class Regime:
    """Popularity ranking and pair weights in force from ``start_period`` until the next regime."""

    start_period: int
    rank_to_id: np.ndarray  # (F, V-1) int64: id at each popularity rank
    pair_w: np.ndarray  # (F, F) float64, symmetric, zero diagonal
    info: dict[str, Any] = field(default_factory=dict)
    # Added to the world's bias so that this regime's mean CTR is base_ctr too: newly popular ids
    # carry their own first-order effects, which moved the CTR from 0.12 to 0.18 at one drift.
    bias_shift: float = 0.0


@dataclass
class SyntheticWorld:
    """The hidden parameters of the generator; ``logits``/``sample`` reproduce the data exactly."""

    cfg: SyntheticConfig
    scales: ClickModelScales
    bias: float
    w: np.ndarray  # (F, V) first-order weights, w[:, 0] = 0
    v: np.ndarray  # (F, V, k) latent vectors, v[:, 0] = 0
    rank_probs: np.ndarray  # (V-1,) popularity of each rank
    regimes: list[Regime]
    emit: np.ndarray  # (F, V) int64: the id written for each raw id (itself, or 0 = OOV)

    def regime_of(self, period: int) -> Regime:
        """The regime in force at ``period`` (the last one started at or before it)."""
        current = self.regimes[0]
        for r in self.regimes:
            if r.start_period <= period:
                current = r
        return current

    def sample_ids(self, regime: Regime, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, F)`` int64 ids drawn from the regime's popularity (fields independent)."""
        cdf = np.cumsum(self.rank_probs)
        cdf[-1] = 1.0
        ranks = np.searchsorted(cdf, rng.random((n, self.cfg.num_fields)), side="right")
        ranks = np.minimum(ranks, cdf.size - 1)
        raw = _rank_to_ids(regime, ranks)
        return _emit(self.emit, raw)

    def logit_terms(self, ids: np.ndarray, regime: Regime) -> tuple[np.ndarray, np.ndarray]:
        """First-order and pairwise parts of the logit (without the bias), float64 ``(N,)`` each."""
        cols = np.arange(self.cfg.num_fields)
        first = self.w[cols, ids].sum(axis=1)
        n, F = ids.shape
        lat = self.v[cols, ids].transpose(1, 0, 2).reshape(F, -1)  # (F, N*k), field-major
        # sum_{f<g} W[f,g] <v_f, v_g> = 0.5 * sum_{f,g} W[f,g] <v_f, v_g> (W symmetric, zero diagonal);
        # one (F, F) @ (F, N*k) product instead of an einsum (10x faster).
        mixed = regime.pair_w @ lat
        pair = 0.5 * (lat * mixed).reshape(F, n, -1).sum(axis=(0, 2))
        return first, pair

    def logits(self, ids: np.ndarray, period: int) -> np.ndarray:
        """True click logits of ``ids`` (N, F) under the regime of ``period``."""
        regime = self.regime_of(period)
        first, pair = self.logit_terms(ids, regime)
        return self.bias + regime.bias_shift + first + pair

    def sample_period(self, period: int, n: int | None = None) -> dict[str, np.ndarray]:
        """Rows of one period: ``{"ids", "label" (int8), "ts", "p"}``, deterministic per (seed, period)."""
        n = self.cfg.rows_per_period if n is None else n
        rng = np.random.default_rng([self.cfg.seed, _TAG_ROWS, period])
        ids = self.sample_ids(self.regime_of(period), n, rng)
        p = _sigmoid(self.logits(ids, period))
        label = (rng.random(n) < p).astype(np.int8)
        ts = TS_ORIGIN + period * PERIOD_SECONDS + np.sort(rng.integers(0, PERIOD_SECONDS, n))
        return {"ids": ids, "label": label, "ts": ts.astype(np.int64), "p": p}

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters as one ``.npz`` (atomically)."""
        arrays: dict[str, np.ndarray] = {
            "bias": np.array(self.bias),
            "w": self.w.astype(np.float64),
            "v": self.v.astype(np.float64),
            "rank_probs": self.rank_probs,
            "emit": self.emit,
            "regime_starts": np.array([r.start_period for r in self.regimes], np.int64),
        }
        for i, r in enumerate(self.regimes):
            arrays[f"rank_to_id_{i}"] = r.rank_to_id
            arrays[f"pair_w_{i}"] = r.pair_w
            arrays[f"bias_shift_{i}"] = np.array(r.bias_shift)
        # np.savez stamps each member with the current time; write the zip by hand with a fixed
        # date so the same seed gives byte-identical files (the npz is still np.load-able).
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, arr in arrays.items():
                member = io.BytesIO()
                np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, member.getvalue())
        atomic.write_bytes(path, buf.getvalue())


def _rank_to_ids(regime: Regime, ranks: np.ndarray) -> np.ndarray:
    """Map ``(N, F)`` popularity ranks to ids field by field."""
    out = np.empty(ranks.shape, np.int64)
    for f in range(ranks.shape[1]):
        out[:, f] = regime.rank_to_id[f, ranks[:, f]]
    return out


def _emit(emit: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Written ids of raw ids ``(N, F)``: rare raw ids become the OOV id 0."""
    return emit[np.arange(raw.shape[1])[None, :], raw]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _draw_pair_weights(rng: np.random.Generator, num_fields: int, density: float) -> np.ndarray:
    """Sparse symmetric pair weights: each pair is non-zero with prob ``density``, N(0, 1) if so."""
    iu = np.triu_indices(num_fields, k=1)
    vals = rng.normal(0.0, 1.0, iu[0].size) * (rng.random(iu[0].size) < density)
    if not vals.any():  # never leave a world without interactions (tiny num_fields)
        vals[rng.integers(vals.size)] = 1.0
    pw = np.zeros((num_fields, num_fields))
    pw[iu] = vals
    return pw + pw.T


def build_world(cfg: SyntheticConfig, scales: ClickModelScales | None = None) -> SyntheticWorld:
    """Draw the hidden parameters and the drift schedule of ``cfg`` (deterministic per seed; ``cfg``'s
    ranges are checked when it is built: ``crossadapt.config.SyntheticConfig``)."""
    sc = scales or ClickModelScales()
    F, V, k = cfg.num_fields, cfg.vocab_size, cfg.latent_dim
    rng = np.random.default_rng([cfg.seed, _TAG_PARAMS])
    drift_rngs = {d: np.random.default_rng([cfg.seed, _TAG_DRIFT, d]) for d in sorted(cfg.drift_periods)}

    rank_probs = np.arange(1, V, dtype=np.float64) ** -cfg.zipf_a
    rank_probs /= rank_probs.sum()
    # Popularity of every regime first: the id amplitudes below depend on it.
    rankings = [np.stack([1 + rng.permutation(V - 1) for _ in range(F)]).astype(np.int64)]
    infos: list[dict[str, Any]] = [{}]
    for d, drng in drift_rngs.items():
        ranking, info = _promote_rare_ids(rankings[-1], d, sc, drng)
        rankings.append(ranking)
        infos.append(info)

    # Amplitude of an id's effects: the best popularity rank it ever has. Rare ids barely matter
    # (as in real logs, where their effects are swamped by noise), so a model trained on a few
    # hundred thousand rows can get close to the Bayes AUC; ids promoted by a drift are strong
    # from the start, so the drift costs a model that never saw them.
    best_rank = np.full((F, V), V, dtype=np.int64)
    for ranking in rankings:
        for f in range(F):
            best_rank[f, ranking[f]] = np.minimum(best_rank[f, ranking[f]], np.arange(V - 1))
    amp = (1.0 + best_rank / sc.head_ranks) ** -sc.tail_decay
    kept = best_rank < sc.kept_ranks
    amp[~kept] = 0.0  # OOV'd ids share id 0, whose effects are zero
    emit = np.where(kept, np.arange(V)[None, :], 0).astype(np.int64)

    w = rng.normal(0.0, 1.0, (F, V)) * rng.uniform(0.5, 1.5, (F, 1)) * amp  # fields differ in importance
    v = rng.normal(0.0, 1.0 / np.sqrt(k), (F, V, k)) * amp[:, :, None]
    pair_w = _draw_pair_weights(rng, F, sc.pair_density)
    # Centre w and v under period-0 popularity: w's mean goes into the bias anyway, and centred
    # latent vectors make the interaction term orthogonal to every first-order function of the ids,
    # so logistic regression cannot recover any of it. The mean is removed in proportion to each
    # id's amplitude: subtracting it uniformly would give every weak tail id the same non-zero
    # vector, which a model would have to learn id by id from a handful of rows.
    for f in range(F):
        ids = rankings[0][f]
        share = amp[f, ids] / (rank_probs @ amp[f, ids])
        w[f, ids] -= share * (rank_probs @ w[f, ids])
        v[f, ids] -= share[:, None] * (rank_probs @ v[f, ids])[None, :]
    w[:, 0] = 0.0
    v[:, 0] = 0.0

    world = SyntheticWorld(cfg, sc, 0.0, w, v, rank_probs, [Regime(0, rankings[0], pair_w, {})], emit)
    # Rescale both terms to their target std on a calibration sample, then solve the bias.
    calib = world.sample_ids(world.regimes[0], sc.calib_rows, np.random.default_rng([cfg.seed, _TAG_CALIB]))
    first, pair = world.logit_terms(calib, world.regimes[0])
    a1 = sc.first_order_std / max(first.std(), 1e-12)
    a2 = sc.interaction_std / max(pair.std(), 1e-12)
    world.w *= a1
    world.regimes[0].pair_w = pair_w * a2
    world.bias = _solve_bias(a1 * first + a2 * pair, cfg.base_ctr)

    for (d, drng), ranking, info in zip(drift_rngs.items(), rankings[1:], infos[1:]):
        world.regimes.append(_drift_regime(world, world.regimes[-1], d, ranking, info, drng))
    return world


def _solve_bias(logit_wo_bias: np.ndarray, target_ctr: float) -> float:
    """Bisection on ``b`` so that ``mean(sigmoid(b + x)) == target_ctr`` (monotone in ``b``)."""
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _sigmoid(mid + logit_wo_bias).mean() < target_ctr:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _promote_rare_ids(
    prev: np.ndarray, period: int, sc: ClickModelScales, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """New popularity ranking at a drift: in some fields a block of rare ids jumps to the top."""
    F, n_ranks = prev.shape
    n_fields = max(1, int(round(sc.drift_field_fraction * F)))
    fields = np.sort(rng.choice(F, n_fields, replace=False))
    block = max(1, min(sc.drift_block, n_ranks // 4))
    ranking = prev.copy()
    for f in fields:
        # ``block`` ids from the rare half of the ranking go to the top; the others keep their order.
        rare = np.sort(rng.choice(np.arange(n_ranks // 2, n_ranks), block, replace=False))
        keep = np.setdiff1d(np.arange(n_ranks), rare, assume_unique=True)
        ranking[f] = np.concatenate([prev[f, rare], prev[f, keep]])
    info = {
        "period": int(period),
        "types": ["new_popular_ids", "interaction_weights"],
        "fields": [f"f{int(f)}" for f in fields],
        "promoted_ids_per_field": int(block),
    }
    return ranking, info


def _drift_regime(
    world: SyntheticWorld,
    prev: Regime,
    period: int,
    ranking: np.ndarray,
    info: dict[str, Any],
    rng: np.random.Generator,
) -> Regime:
    """The regime starting at ``period``: the new ranking, and a fraction of pair weights redrawn."""
    cfg, sc = world.cfg, world.scales
    F = cfg.num_fields
    iu = np.triu_indices(F, k=1)
    n_pairs = iu[0].size
    redraw = np.sort(rng.choice(n_pairs, max(1, int(round(sc.drift_pair_fraction * n_pairs))), replace=False))
    nonzero = prev.pair_w[iu][prev.pair_w[iu] != 0]
    rms = float(np.sqrt(np.mean(nonzero**2))) if nonzero.size else 1.0
    fresh = _draw_pair_weights(rng, F, sc.pair_density)[iu] * rms  # same scale as the kept weights
    vals = prev.pair_w[iu].copy()
    vals[redraw] = fresh[redraw]
    pair_w = np.zeros((F, F))
    pair_w[iu] = vals
    pair_w = pair_w + pair_w.T
    regime = Regime(period, ranking, pair_w, {})
    # Keep the interaction *strength* of the first regime: a drift changes which ids are popular
    # and which pairs matter, not how much the pairs matter in total, so CTR and Bayes AUC stay
    # comparable across regimes (without this the Bayes AUC moved by ~0.02 at a drift).
    calib = world.sample_ids(regime, sc.calib_rows, np.random.default_rng([cfg.seed, _TAG_CALIB, period]))
    _, pair = world.logit_terms(calib, regime)
    regime.pair_w = pair_w * (sc.interaction_std / max(pair.std(), 1e-12))
    first, pair = world.logit_terms(calib, regime)
    regime.bias_shift = _solve_bias(first + pair, cfg.base_ctr) - world.bias
    regime.info = {**info, "pairs_redrawn": int(redraw.size), "pairs_total": int(n_pairs),
                   "bias_shift": float(regime.bias_shift)}
    return regime


def feature_map(cfg: SyntheticConfig) -> FeatureMap:
    """The feature map of the synthetic logs: ``num_fields`` categorical fields of ``vocab_size`` ids."""
    fields = tuple(
        FieldSpec(f"f{i}", "categorical", vocab_size=cfg.vocab_size, oov_index=0, encoder="synthetic")
        for i in range(cfg.num_fields)
    )
    return FeatureMap(DATASET_NAME, fields, meta={"generator": __name__, "seed": cfg.seed})


def _write_period(root: Path, period: int, rows: dict[str, np.ndarray], num_fields: int) -> None:
    cols: dict[str, pa.Array] = {"label": pa.array(rows["label"], pa.int8())}
    for f in range(num_fields):
        cols[f"f{f}"] = pa.array(rows["ids"][:, f], pa.int64())
    cols["ts"] = pa.array(rows["ts"], pa.int64())
    table = pa.table(cols)
    with atomic.atomic_path(root / f"period={period}" / "part-00000.parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")


def generate(cfg: SyntheticConfig, out_root: str | os.PathLike, scales: ClickModelScales | None = None) -> dict[str, Any]:
    """Write the synthetic logs of ``cfg`` under ``out_root`` and return the metadata written to ``meta.json``.

    Existing ``period=<k>`` folders beyond ``num_periods`` are an error (a stale, longer dataset
    would silently mix with this one); the files of this config are overwritten atomically.
    """
    root = Path(out_root)
    world = build_world(cfg, scales)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: output path exists and is not a folder")
    stale = sorted(
        p.name for p in (root.iterdir() if root.is_dir() else [])
        if p.name.startswith("period=") and p.name[7:].isdigit() and int(p.name[7:]) >= cfg.num_periods
    )
    if stale:
        raise DataError(f"{root}: holds {stale} beyond num_periods={cfg.num_periods}; use an empty folder")

    periods = []
    for k in range(cfg.num_periods):
        rows = world.sample_period(k)
        _write_period(root, k, rows, cfg.num_fields)
        y = rows["label"]
        periods.append(
            {
                "period": k,
                "rows": int(y.size),
                "ctr": float(y.mean()),
                "true_ctr": float(rows["p"].mean()),
                "bayes_auc": _finite(auc(y, rows["p"])),
                "bayes_logloss": float(logloss(y, rows["p"])),
            }
        )
    feature_map(cfg).save(root)
    world.save(root / TRUTH_FILE)
    meta = {
        "generator": __name__,
        "generator_version": GENERATOR_VERSION,
        "config": to_dict(cfg),
        "scales": to_dict(world.scales),
        "bias": world.bias,
        "drift_periods": sorted(int(d) for d in cfg.drift_periods),
        "drifts": [r.info for r in world.regimes[1:]],
        "periods": periods,
    }
    atomic.write_json(root / META_FILE, meta)
    return meta


def _finite(x: float | None) -> float | None:
    """JSON has no NaN: a one-class period (tiny configs) gets ``None`` for its AUC."""
    return float(x) if x is not None and np.isfinite(x) else None


def read_meta(root: str | os.PathLike) -> dict[str, Any] | None:
    """The generator's ``meta.json`` of ``root``, or None when ``root`` holds no synthetic logs
    (no or unreadable ``meta.json``, or a raw-log converter's)."""
    path = Path(root) / META_FILE
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == __name__ else None


def is_current(root: str | os.PathLike, cfg: SyntheticConfig, scales: ClickModelScales | None = None) -> bool:
    """Whether ``root`` holds logs this generator would write for ``cfg`` (same version, config, scales)."""
    saved = read_meta(root)
    return (saved is not None and saved.get("generator_version") == GENERATOR_VERSION
            and saved.get("config") == to_dict(cfg) and saved.get("scales") == to_dict(scales or ClickModelScales()))


def load_world(root: str | os.PathLike) -> SyntheticWorld:
    """Rebuild the generator's world from ``<root>/meta.json`` (regenerated from the seed, then checked)."""
    root = Path(root)
    path = root / META_FILE
    if not path.exists():
        raise DataError(f"{path}: synthetic meta not found")
    meta = json.loads(path.read_text())
    cfg = from_dict(SyntheticConfig, meta["config"], prefix="meta.config")
    scales = from_dict(ClickModelScales, meta.get("scales", {}), prefix="meta.scales")
    world = build_world(cfg, scales)
    if abs(world.bias - float(meta["bias"])) > 1e-9:
        raise DataError(f"{path}: regenerated world does not match (bias {world.bias} vs {meta['bias']})")
    return world
