"""The hidden world of the synthetic logs: click model, popularity, drift regimes, row sampling.

World (fixed per ``SyntheticConfig.seed``):

- ``F`` categorical fields ``f0 .. f{F-1}``; field ``f`` has ``V_f`` ids (``vocab_sizes``, or
  ``vocab_size`` for every field); id 0 is the OOV index of the contract and is never drawn.
- Popularity: per field a random permutation maps popularity rank ``r`` (0 = most popular) to an
  id; rank ``r`` is drawn with probability ``(r + 1) ** -zipf_a`` (Zipf-like over the ``V_f - 1``
  real ids). Fields are drawn independently of each other.
- ``numeric_fields`` numeric fields ``n0 ..``: ``x = log1p(floor(exp(g)))``, ``g ~ N(m_j, s_j)`` (a
  long-tailed count, as Criteo's integer features), written as float32. The click model sees the
  standardised value ``z = (x - mean_j) / std_j`` of the float32 that is written.
- Click model (FM-style, numeric fields as ``z_j * v_j`` like the models' own numeric embedding):
  ``logit = b + sum_f w_f[id_f] + sum_j beta_j z_j + sum_{a<b} W[a, b] * <u_a, u_b>`` with latent
  vectors ``u`` (``v_f[id_f]`` or ``z_j v_j``) of size ``latent_dim`` and a sparse symmetric
  pair-weight matrix ``W`` over all fields. An id's effects are drawn around its field's mean and
  shrink with rarity: ``amp = (1 + best_rank / head_ranks) ** -tail_decay``, ``best_rank`` the best
  popularity rank the id ever has. Latent vectors are centred under the period-0 popularity (in
  proportion to ``amp``; numeric ``z`` has mean 0), so the interaction term has (almost) no
  first-order projection: logistic regression cannot pick it up, which keeps the gap between LR and
  interaction models large. Both terms are rescaled to target standard deviations
  (:class:`ClickModelScales`) and ``b`` is found by bisection so the period-0 mean CTR equals
  ``base_ctr``.
- ``rare_ids``: ``"oov"`` writes every id whose best rank is never below ``kept_ranks`` as the OOV
  id 0 with zero effect (the small world); ``"keep"`` writes every id with its own effect (the
  long tail of real logs). Either way the true probability is a function of the written row, so
  the Bayes AUC is exact.
- Drift at every period in ``drift_periods`` (a *regime change*, which persists until the next one):
  (a) ``new_popular_ids``: for about half the fields a block of previously rare ids is promoted to the
  top of the popularity ranking, (b) ``interaction_weights``: a fraction of the pair weights ``W`` are
  redrawn. ``b``, ``w`` and ``v`` never change, so the CTR stays near ``base_ctr``.
- Rows are drawn ``chunk_rows`` at a time from one random stream per period, so memory does not
  grow with ``rows_per_period``.

Per-field arrays of different lengths live in :class:`FieldTable` (one flat array and offsets):
a Criteo-shaped world has ~1.09 M ids over 26 fields of 4 to 194 k ids each.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from crossadapt import atomic
from crossadapt.config import SyntheticConfig
from crossadapt.errors import ConfigError

#: Start of period 0 (2024-01-01 UTC); each period is one day of seconds.
TS_ORIGIN = 1_704_067_200
PERIOD_SECONDS = 86_400

# Stream tags for ``np.random.default_rng([seed, tag, ...])``: every random draw has its own stream,
# so changing ``rows_per_period`` or ``num_periods`` never changes the world's parameters.
_TAG_PARAMS, _TAG_ROWS, _TAG_DRIFT, _TAG_CALIB, _TAG_NUMERIC = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class ClickModelScales:
    """Strength of the hidden click model (not in ``SyntheticConfig``: tuned once, see the report).

    Attributes:
        first_order_std: target std of the first-order term over period-0 rows.
        interaction_std: target std of the pairwise term over period-0 rows.
        pair_density: fraction of field pairs with a non-zero interaction weight.
        drift_field_fraction: fraction of fields whose popularity ranking changes at a drift.
        drift_block: number of rare ids promoted to the top of the ranking of an affected field
            (at most a quarter of the field's ids).
        head_ranks, tail_decay: an id's effects (``w`` and ``v``) are scaled by
            ``(1 + best_rank / head_ranks) ** -tail_decay`` where ``best_rank`` is the best popularity
            rank the id ever has (over all regimes).
        kept_ranks: with ``rare_ids="oov"``, ids whose best rank is never below ``kept_ranks`` are
            written as the OOV id 0, as a min-count vocabulary built over the whole log would do;
            their effects are zero, so the true probability is a function of the written ids.
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


class FieldTable:
    """Per-field arrays of different lengths in one flat array (rows of field ``f`` are
    ``flat[offsets[f]:offsets[f + 1]]``), indexed like a 2-D array: ``table[f, idx]``.

    ``f`` and ``idx`` broadcast as in numpy fancy indexing, so ``table[np.arange(F), ids]`` gathers
    the rows of an ``(N, F)`` id matrix; ``table[f]`` is field ``f``'s rows. Trailing dimensions of ``flat`` (e.g. latent vectors) are kept.

    Example:
        >>> t = FieldTable.from_sizes([2, 3], fill=0.0)
        >>> t.field(1)[:] = [5.0, 6.0, 7.0]
        >>> t[1, 2], t[np.array([0, 1]), np.array([[1, 0]])].tolist()
        (7.0, [[0.0, 5.0]])
    """

    def __init__(self, flat: np.ndarray, sizes: np.ndarray) -> None:
        self.flat = flat
        self.sizes = np.asarray(sizes, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        if self.offsets[-1] != flat.shape[0]:
            raise ValueError(f"FieldTable: sizes sum to {self.offsets[-1]}, flat has {flat.shape[0]} rows")

    @classmethod
    def from_sizes(cls, sizes: Any, fill: Any = 0, dtype: Any = np.float64, inner: tuple[int, ...] = ()) -> FieldTable:
        sizes = np.asarray(sizes, np.int64)
        return cls(np.full((int(sizes.sum()), *inner), fill, dtype=dtype), sizes)

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):  # table[f]: the rows of field f
            return self.field(key)
        f, idx = key
        return self.flat[self.offsets[:-1][f] + idx]

    def field(self, f: int) -> np.ndarray:
        """The rows of field ``f``: a view (writes go to the table)."""
        return self.flat[self.offsets[f] : self.offsets[f + 1]]

    def copy(self) -> FieldTable:
        return FieldTable(self.flat.copy(), self.sizes)

    def saved(self) -> np.ndarray:
        """``(F, V, ...)`` when every field has the same size (the small world), else the flat array."""
        if np.all(self.sizes == self.sizes[0]):
            return self.flat.reshape(self.sizes.size, int(self.sizes[0]), *self.flat.shape[1:])
        return self.flat


@dataclass
class Regime:
    """Popularity ranking and pair weights in force from ``start_period`` until the next regime."""

    start_period: int
    rank_to_id: FieldTable  # per field (V_f - 1,) int64: id at each popularity rank
    pair_w: np.ndarray  # (F + F_num, F + F_num) float64, symmetric, zero diagonal
    info: dict[str, Any] = field(default_factory=dict)
    # Added to the world's bias so that this regime's mean CTR is base_ctr too: newly popular ids
    # carry their own first-order effects, which moved the CTR from 0.12 to 0.18 at one drift.
    bias_shift: float = 0.0


@dataclass
class NumericFields:
    """Parameters of the numeric fields (all ``(F_num,)`` except ``v``: ``(F_num, k)``)."""

    log_mean: np.ndarray  # g ~ N(log_mean, log_std); x = log1p(floor(exp(g)))
    log_std: np.ndarray
    w: np.ndarray  # first-order weight of z
    v: np.ndarray  # latent vector of z
    mean: np.ndarray  # standardisation of x (from the calibration sample)
    std: np.ndarray

    @property
    def count(self) -> int:
        return int(self.w.size)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, F_num)`` float32 values as written."""
        g = rng.normal(self.log_mean, self.log_std, (n, self.count))
        return np.log1p(np.floor(np.exp(g))).astype(np.float32)

    def standardise(self, dense: np.ndarray) -> np.ndarray:
        return (dense.astype(np.float64) - self.mean) / self.std


def vocab_sizes(cfg: SyntheticConfig) -> list[int]:
    """Vocabulary size of each categorical field (OOV id 0 included)."""
    return list(cfg.vocab_sizes) if cfg.vocab_sizes else [cfg.vocab_size] * cfg.num_fields


@dataclass
class SyntheticWorld:
    """The hidden parameters of the generator; ``logits``/``iter_period`` reproduce the data exactly."""

    cfg: SyntheticConfig
    scales: ClickModelScales
    bias: float
    w: FieldTable  # per field (V_f,) first-order weights, w[f, 0] = 0
    v: FieldTable  # per field (V_f, k) latent vectors, v[f, 0] = 0
    rank_probs: FieldTable  # per field (V_f - 1,) popularity of each rank
    regimes: list[Regime]
    emit: FieldTable | None  # per field (V_f,) the id written for each id (itself or 0); None: itself
    numeric: NumericFields | None = None

    def __post_init__(self) -> None:
        cdf = self.rank_probs.copy()
        for f in range(self.num_fields):
            c = cdf.field(f)
            c[:] = np.cumsum(c)
            c[-1] = 1.0
        self._cdf = cdf

    @property
    def num_fields(self) -> int:
        """Categorical fields."""
        return int(self.w.sizes.size)

    @property
    def num_numeric(self) -> int:
        return 0 if self.numeric is None else self.numeric.count

    def regime_of(self, period: int) -> Regime:
        """The regime in force at ``period`` (the last one started at or before it)."""
        current = self.regimes[0]
        for r in self.regimes:
            if r.start_period <= period:
                current = r
        return current

    def sample_ids(self, regime: Regime, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, F)`` int64 ids drawn from the regime's popularity (fields independent)."""
        u = rng.random((n, self.num_fields))
        ids = np.empty((n, self.num_fields), np.int64)
        for f in range(self.num_fields):
            cdf = self._cdf.field(f)
            ranks = np.minimum(np.searchsorted(cdf, u[:, f], side="right"), cdf.size - 1)
            ids[:, f] = regime.rank_to_id.field(f)[ranks]
        if self.emit is not None:
            ids = self.emit[np.arange(self.num_fields)[None, :], ids]
        return ids

    def sample_features(self, regime: Regime, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Ids ``(n, F)`` then numeric values ``(n, F_num)`` float32, drawn in that order from ``rng``."""
        ids = self.sample_ids(regime, n, rng)
        dense = self.numeric.sample(n, rng) if self.numeric is not None else np.zeros((n, 0), np.float32)
        return ids, dense

    def logit_terms(
        self, ids: np.ndarray, regime: Regime, dense: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """First-order and pairwise parts of the logit (without the bias), float64 ``(N,)`` each."""
        n, C = ids.shape
        F, k = C + self.num_numeric, self.v.flat.shape[1]
        first = self.w[np.arange(C), ids].sum(axis=1)
        lat = np.empty((F, n, k))  # field-major latent vectors of every row
        lat[:C] = self.v[np.arange(C)[:, None], ids.T]
        if self.numeric is not None:
            if dense is None:
                raise ValueError("logit_terms: this world has numeric fields; pass dense")
            z = self.numeric.standardise(dense)
            first = first + z @ self.numeric.w
            lat[C:] = z.T[:, :, None] * self.numeric.v[:, None, :]
        lat = lat.reshape(F, -1)  # (F, N*k)
        # sum_{f<g} W[f,g] <v_f, v_g> = 0.5 * sum_{f,g} W[f,g] <v_f, v_g> (W symmetric, zero diagonal);
        # one (F, F) @ (F, N*k) product instead of an einsum (10x faster); the product is taken in
        # place to hold one temporary of this size fewer (chunks bound the generator's memory).
        mixed = regime.pair_w @ lat
        pair = 0.5 * np.multiply(lat, mixed, out=mixed).reshape(F, n, -1).sum(axis=(0, 2))
        return first, pair

    def logits(self, ids: np.ndarray, period: int, dense: np.ndarray | None = None) -> np.ndarray:
        """True click logits of ``ids`` (N, F) (and numeric ``dense`` (N, F_num)) under the regime of ``period``."""
        regime = self.regime_of(period)
        first, pair = self.logit_terms(ids, regime, dense)
        return self.bias + regime.bias_shift + first + pair

    def iter_period(self, period: int) -> Iterator[dict[str, np.ndarray]]:
        """Rows of one period in chunks of ``chunk_rows``: ``{"ids", "dense", "label" (int8), "ts", "p"}``.

        Deterministic per (seed, period, chunk_rows); ``ts`` is non-decreasing across chunks (chunk
        ``c`` draws its seconds from its own share of the day).
        """
        cfg = self.cfg
        n, size = cfg.rows_per_period, cfg.chunk_rows
        rng = np.random.default_rng([cfg.seed, _TAG_ROWS, period])
        regime = self.regime_of(period)
        day0 = TS_ORIGIN + period * PERIOD_SECONDS
        for start in range(0, n, size):
            m = min(size, n - start)
            ids, dense = self.sample_features(regime, m, rng)
            p = _sigmoid(self.logits(ids, period, dense))
            label = (rng.random(m) < p).astype(np.int8)
            lo, hi = start * PERIOD_SECONDS // n, (start + m) * PERIOD_SECONDS // n
            ts = day0 + lo + np.sort(rng.integers(0, max(hi - lo, 1), m))
            yield {"ids": ids, "dense": dense, "label": label, "ts": ts.astype(np.int64), "p": p}

    def sample_period(self, period: int) -> dict[str, np.ndarray]:
        """All rows of one period at once (the chunks of :meth:`iter_period` concatenated)."""
        chunks = list(self.iter_period(period))
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters as one ``.npz`` (atomically).

        Per-field arrays are ``(F, V, ...)`` when every field has the same vocabulary, else flat with
        ``field_offsets`` (field ``f`` is rows ``[field_offsets[f], field_offsets[f+1])``; popularity
        arrays have one row fewer per field, see ``rank_offsets``).
        """
        arrays: dict[str, np.ndarray] = {
            "bias": np.array(self.bias),
            "w": self.w.saved().astype(np.float64),
            "v": self.v.saved().astype(np.float64),
            "rank_probs": self.rank_probs.saved()[0] if _uniform(self.rank_probs) else self.rank_probs.flat,
        }
        if self.emit is not None:
            arrays["emit"] = self.emit.saved()
        arrays["regime_starts"] = np.array([r.start_period for r in self.regimes], np.int64)
        if not _uniform(self.w):
            arrays["field_offsets"] = self.w.offsets
            arrays["rank_offsets"] = self.rank_probs.offsets
        for i, r in enumerate(self.regimes):
            arrays[f"rank_to_id_{i}"] = r.rank_to_id.saved()
            arrays[f"pair_w_{i}"] = r.pair_w
            arrays[f"bias_shift_{i}"] = np.array(r.bias_shift)
        if self.numeric is not None:
            for name in ("log_mean", "log_std", "w", "v", "mean", "std"):
                arrays[f"numeric_{name}"] = getattr(self.numeric, name)
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


def _uniform(t: FieldTable) -> bool:
    return bool(np.all(t.sizes == t.sizes[0]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def check_config(cfg: SyntheticConfig) -> None:
    """Reject configs the generator cannot honour, naming the key."""
    if cfg.num_fields < 2:
        raise ConfigError(f"synthetic.num_fields: need >= 2 (pairwise interactions), got {cfg.num_fields}")
    if cfg.vocab_size < 3:
        raise ConfigError(f"synthetic.vocab_size: need >= 3 (id 0 is OOV), got {cfg.vocab_size}")
    if cfg.vocab_sizes:
        if len(cfg.vocab_sizes) != cfg.num_fields:
            raise ConfigError(f"synthetic.vocab_sizes: {len(cfg.vocab_sizes)} sizes for num_fields={cfg.num_fields}")
        small = [(f"f{i}", v) for i, v in enumerate(cfg.vocab_sizes) if v < 3]
        if small:
            raise ConfigError(f"synthetic.vocab_sizes: need >= 3 each (id 0 is OOV), got {small}")
    if cfg.rows_per_period < 1:
        raise ConfigError(f"synthetic.rows_per_period: need >= 1, got {cfg.rows_per_period}")
    if cfg.chunk_rows < 1:
        raise ConfigError(f"synthetic.chunk_rows: need >= 1, got {cfg.chunk_rows}")
    if cfg.numeric_fields < 0:
        raise ConfigError(f"synthetic.numeric_fields: need >= 0, got {cfg.numeric_fields}")
    if cfg.num_periods < 1:
        raise ConfigError(f"synthetic.num_periods: need >= 1, got {cfg.num_periods}")
    if cfg.zipf_a <= 0:
        raise ConfigError(f"synthetic.zipf_a: need > 0, got {cfg.zipf_a}")
    if cfg.latent_dim < 1:
        raise ConfigError(f"synthetic.latent_dim: need >= 1, got {cfg.latent_dim}")
    if not 0.0 < cfg.base_ctr < 1.0:
        raise ConfigError(f"synthetic.base_ctr: need 0 < base_ctr < 1, got {cfg.base_ctr}")
    bad = [d for d in cfg.drift_periods if not 0 < d < cfg.num_periods]
    if bad:
        raise ConfigError(f"synthetic.drift_periods: {bad} outside [1, num_periods={cfg.num_periods})")
    if len(set(cfg.drift_periods)) != len(cfg.drift_periods):
        raise ConfigError(f"synthetic.drift_periods: duplicates in {list(cfg.drift_periods)}")


def _draw_pair_weights(rng: np.random.Generator, num_fields: int, density: float) -> np.ndarray:
    """Sparse symmetric pair weights: each pair is non-zero with prob ``density``, N(0, 1) if so."""
    iu = np.triu_indices(num_fields, k=1)
    vals = rng.normal(0.0, 1.0, iu[0].size) * (rng.random(iu[0].size) < density)
    if not vals.any():  # never leave a world without interactions (tiny num_fields)
        vals[rng.integers(vals.size)] = 1.0
    pw = np.zeros((num_fields, num_fields))
    pw[iu] = vals
    return pw + pw.T


def _draw_numeric(cfg: SyntheticConfig, sc: ClickModelScales) -> NumericFields | None:
    """Numeric fields' distributions and effects, from their own stream (the categorical draws stay put)."""
    if cfg.numeric_fields == 0:
        return None
    rng = np.random.default_rng([cfg.seed, _TAG_NUMERIC])
    J, k = cfg.numeric_fields, cfg.latent_dim
    return NumericFields(
        log_mean=rng.uniform(0.0, 4.0, J),
        log_std=rng.uniform(0.5, 1.5, J),
        w=rng.normal(0.0, 1.0, J) * rng.uniform(0.5, 1.5, J),
        v=rng.normal(0.0, 1.0 / np.sqrt(k), (J, k)),
        mean=np.zeros(J),
        std=np.ones(J),
    )


def _best_ranks(rankings: list[FieldTable], sizes: list[int]) -> FieldTable:
    """Per id, the best popularity rank it has in any regime (``V_f`` for id 0, which has none)."""
    best = FieldTable(np.concatenate([np.full(V, V, np.int64) for V in sizes]), np.asarray(sizes))
    for ranking in rankings:
        for f in range(len(sizes)):
            b, r = best.field(f), ranking.field(f)
            b[r] = np.minimum(b[r], np.arange(r.size))
    return best


def build_world(cfg: SyntheticConfig, scales: ClickModelScales | None = None) -> SyntheticWorld:
    """Draw the hidden parameters and the drift schedule of ``cfg`` (deterministic per seed)."""
    check_config(cfg)
    sc = scales or ClickModelScales()
    sizes = vocab_sizes(cfg)
    rng = np.random.default_rng([cfg.seed, _TAG_PARAMS])
    drift_rngs = {d: np.random.default_rng([cfg.seed, _TAG_DRIFT, d]) for d in sorted(cfg.drift_periods)}
    # Draw order on ``rng`` (rankings, id effects, pair weights) is part of the world's identity.
    rank_probs, rankings, infos = _popularity(cfg, sizes, sc, rng, drift_rngs)
    w, v, emit = _id_effects(cfg, sizes, sc, rankings, rank_probs, rng)
    pair_w = _draw_pair_weights(rng, len(sizes) + cfg.numeric_fields, sc.pair_density)
    numeric = _draw_numeric(cfg, sc)
    world = SyntheticWorld(cfg, sc, 0.0, w, v, rank_probs, [Regime(0, rankings[0], pair_w, {})], emit, numeric)
    _calibrate(world)
    for (d, drng), ranking, info in zip(drift_rngs.items(), rankings[1:], infos[1:]):
        world.regimes.append(_drift_regime(world, world.regimes[-1], d, ranking, info, drng))
    return world


def _popularity(cfg: SyntheticConfig, sizes: list[int], sc: ClickModelScales, rng: np.random.Generator,
                drift_rngs: dict[int, np.random.Generator]) -> tuple[FieldTable, list[FieldTable], list[dict[str, Any]]]:
    """Probability of each popularity rank, and the ranking (rank -> id) of every regime."""
    ranks = np.asarray(sizes) - 1
    rank_probs = FieldTable(np.concatenate([np.arange(1, V, dtype=np.float64) ** -cfg.zipf_a for V in sizes]), ranks)
    for f in range(len(sizes)):
        p = rank_probs.field(f)
        p /= p.sum()
    rankings = [FieldTable(np.concatenate([1 + rng.permutation(V - 1) for V in sizes]).astype(np.int64), ranks)]
    infos: list[dict[str, Any]] = [{}]
    for d, drng in drift_rngs.items():
        ranking, info = _promote_rare_ids(rankings[-1], d, sc, drng)
        rankings.append(ranking)
        infos.append(info)
    return rank_probs, rankings, infos


def _id_effects(cfg: SyntheticConfig, sizes: list[int], sc: ClickModelScales, rankings: list[FieldTable],
                rank_probs: FieldTable, rng: np.random.Generator) -> tuple[FieldTable, FieldTable, FieldTable | None]:
    """First-order weights ``w`` and latent vectors ``v`` of every id, and the written id of each
    (``None``: itself; with ``rare_ids="oov"`` the never-popular ids are written as 0)."""
    F, k, V = len(sizes), cfg.latent_dim, np.asarray(sizes)
    # Amplitude of an id's effects: the best popularity rank it ever has. Rare ids barely matter
    # (as in real logs, where their effects are swamped by noise), so a model trained on a few
    # hundred thousand rows can get close to the Bayes AUC; ids promoted by a drift are strong
    # from the start, so the drift costs a model that never saw them.
    best_rank = _best_ranks(rankings, sizes)
    amp = FieldTable((1.0 + best_rank.flat / sc.head_ranks) ** -sc.tail_decay, V)
    emit = None
    if cfg.rare_ids == "oov":
        kept = best_rank.flat < sc.kept_ranks
        amp.flat[~kept] = 0.0  # OOV'd ids share id 0, whose effects are zero
        own = np.concatenate([np.arange(n) for n in sizes])
        emit = FieldTable(np.where(kept, own, 0).astype(np.int64), V)

    w_raw = rng.normal(0.0, 1.0, int(V.sum()))  # drawn before the field scales (stream order)
    field_scale = np.repeat(rng.uniform(0.5, 1.5, F), sizes)  # fields differ in importance
    w = FieldTable(w_raw * field_scale * amp.flat, V)
    v = FieldTable(rng.normal(0.0, 1.0 / np.sqrt(k), (int(V.sum()), k)) * amp.flat[:, None], V)
    # Centre w and v under period-0 popularity: w's mean goes into the bias anyway, and centred
    # latent vectors make the interaction term orthogonal to every first-order function of the ids,
    # so logistic regression cannot recover any of it. The mean is removed in proportion to each
    # id's amplitude: subtracting it uniformly would give every weak tail id the same non-zero
    # vector, which a model would have to learn id by id from a handful of rows.
    for f in range(F):
        ids = rankings[0].field(f)
        probs = rank_probs.field(f)
        wf, vf, af = w.field(f), v.field(f), amp.field(f)
        share = af[ids] / (probs @ af[ids])
        wf[ids] -= share * (probs @ wf[ids])
        vf[ids] -= share[:, None] * (probs @ vf[ids])[None, :]
        wf[0] = 0.0
        vf[0] = 0.0
    return w, v, emit


def _calibrate(world: SyntheticWorld) -> None:
    """Standardise the numeric fields, rescale both logit terms to their target std on a
    calibration sample (period-0 popularity), then solve the bias for ``base_ctr``."""
    cfg, sc, numeric, regime = world.cfg, world.scales, world.numeric, world.regimes[0]
    calib, dense = world.sample_features(regime, sc.calib_rows, np.random.default_rng([cfg.seed, _TAG_CALIB]))
    if numeric is not None:  # z = standardised x has mean 0: the numeric latents need no centring
        x = dense.astype(np.float64)
        numeric.mean, numeric.std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-12)
    first, pair = world.logit_terms(calib, regime, dense)
    a1 = sc.first_order_std / max(first.std(), 1e-12)
    a2 = sc.interaction_std / max(pair.std(), 1e-12)
    world.w.flat *= a1
    if numeric is not None:
        numeric.w *= a1
    regime.pair_w = regime.pair_w * a2
    world.bias = _solve_bias(a1 * first + a2 * pair, cfg.base_ctr)


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
    prev: FieldTable, period: int, sc: ClickModelScales, rng: np.random.Generator
) -> tuple[FieldTable, dict[str, Any]]:
    """New popularity ranking at a drift: in some fields a block of rare ids jumps to the top."""
    F = prev.sizes.size
    n_fields = max(1, int(round(sc.drift_field_fraction * F)))
    fields = np.sort(rng.choice(F, n_fields, replace=False))
    ranking = prev.copy()
    blocks = []
    for f in fields:
        n_ranks = int(prev.sizes[f])
        block = max(1, min(sc.drift_block, n_ranks // 4))
        # ``block`` ids from the rare half of the ranking go to the top; the others keep their order.
        rare = np.sort(rng.choice(np.arange(n_ranks // 2, n_ranks), block, replace=False))
        keep = np.setdiff1d(np.arange(n_ranks), rare, assume_unique=True)
        old = prev.field(f)
        ranking.field(f)[:] = np.concatenate([old[rare], old[keep]])
        blocks.append(block)
    info = {
        "period": int(period),
        "types": ["new_popular_ids", "interaction_weights"],
        "fields": [f"f{int(f)}" for f in fields],
        # One number when every affected field promoted the same count (fields of fewer than
        # 4 * drift_block ids promote fewer), else the count per field.
        "promoted_ids_per_field": (
            int(blocks[0]) if len(set(blocks)) == 1 else {f"f{int(f)}": int(b) for f, b in zip(fields, blocks)}
        ),
    }
    return ranking, info


def _drift_regime(
    world: SyntheticWorld,
    prev: Regime,
    period: int,
    ranking: FieldTable,
    info: dict[str, Any],
    rng: np.random.Generator,
) -> Regime:
    """The regime starting at ``period``: the new ranking, and a fraction of pair weights redrawn."""
    cfg, sc = world.cfg, world.scales
    F = prev.pair_w.shape[0]
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
    calib_rng = np.random.default_rng([cfg.seed, _TAG_CALIB, period])
    calib, dense = world.sample_features(regime, sc.calib_rows, calib_rng)
    _, pair = world.logit_terms(calib, regime, dense)
    regime.pair_w = pair_w * (sc.interaction_std / max(pair.std(), 1e-12))
    first, pair = world.logit_terms(calib, regime, dense)
    regime.bias_shift = _solve_bias(first + pair, cfg.base_ctr) - world.bias
    regime.info = {**info, "pairs_redrawn": int(redraw.size), "pairs_total": int(n_pairs),
                   "bias_shift": float(regime.bias_shift)}
    return regime
