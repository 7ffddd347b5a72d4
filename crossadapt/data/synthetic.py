"""Synthetic CTR logs with a known click model and scheduled drift (the embedded default).

The generator is the ground truth for the demo and the tests: because the true click probability
of every row is known, we can report the Bayes-optimal AUC/LogLoss per period, and because drift
is injected at known periods, the drift detector and online adaptation can be checked against it.
The hidden world (click model, popularity, drift) is :mod:`crossadapt.data.synthetic_world`; this
module writes its rows and the metadata.

Two shapes from one generator: the small world of the demo (``SyntheticConfig`` defaults: 12
fields of 2,000 ids, rare ids written as OOV) and a Criteo-shaped one (``configs/criteo_like.yaml``:
26 fields with Criteo's cardinalities, every id kept, 13 numeric fields, CTR ~0.25).

Outputs (data contract): ``<root>/period=<k>/part-00000.parquet`` (``label`` int8, ``f0..`` int64,
``n0..`` float32 when there are numeric fields, ``ts`` int64, rows in time order, one row group per
``chunk_rows``), ``feature_map.json``, ``meta.json`` (config, drift schedule and per-period CTR /
Bayes AUC / Bayes LogLoss) and ``truth.npz`` (the true parameters, for oracles). Everything is a
deterministic function of the config: same seed, byte-identical files. Rows are generated and
written ``chunk_rows`` at a time, so memory does not grow with ``rows_per_period``.

Example:
    >>> from crossadapt.config import SyntheticConfig
    >>> meta = generate(SyntheticConfig(rows_per_period=1000, num_periods=3, drift_periods=(2,)), "/tmp/syn")
    >>> meta["drift_periods"]
    [2]
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crossadapt import atomic
from crossadapt.config import SyntheticConfig, from_dict, to_dict
from crossadapt.data.period_stats import PeriodStats
from crossadapt.data.synthetic_world import (
    PERIOD_SECONDS,
    TS_ORIGIN,
    ClickModelScales,
    FieldTable,
    Regime,
    SyntheticWorld,
    build_world,
    vocab_sizes,
)
from crossadapt.errors import DataError
from crossadapt.featuremap import NUMERIC, FieldSpec, FeatureMap

#: Bumped whenever the generator's code changes what it writes: cached logs of another version are
#: regenerated (``crossadapt.experiment.prepare``). 3: chunked rows, per-field vocabularies, kept
#: tails and numeric fields (the small world's rows are unchanged).
GENERATOR_VERSION = 3
#: ``meta.json``'s ``generator``: names this module (kept fixed, it marks synthetic logs).
GENERATOR = "crossadapt.data.synthetic"
META_FILE = "meta.json"
TRUTH_FILE = "truth.npz"
DATASET_NAME = "synthetic"


def feature_map(cfg: SyntheticConfig) -> FeatureMap:
    """The feature map of the synthetic logs: categorical fields ``f0..`` (``vocab_sizes`` or
    ``num_fields`` x ``vocab_size``), then numeric fields ``n0..``."""
    fields = tuple(
        FieldSpec(f"f{i}", "categorical", vocab_size=v, oov_index=0, encoder="synthetic")
        for i, v in enumerate(vocab_sizes(cfg))
    ) + tuple(FieldSpec(f"n{j}", NUMERIC, encoder="synthetic") for j in range(cfg.numeric_fields))
    return FeatureMap(DATASET_NAME, fields, meta={"generator": GENERATOR, "seed": cfg.seed})


def _schema(cfg: SyntheticConfig) -> pa.Schema:
    return pa.schema(
        [("label", pa.int8())]
        + [(f"f{f}", pa.int64()) for f in range(cfg.num_fields)]
        + [(f"n{j}", pa.float32()) for j in range(cfg.numeric_fields)]
        + [("ts", pa.int64())]
    )


def _table(rows: dict[str, Any], schema: pa.Schema, num_fields: int) -> pa.Table:
    cols = [pa.array(rows["label"], pa.int8())]
    cols += [pa.array(rows["ids"][:, f], pa.int64()) for f in range(num_fields)]
    cols += [pa.array(rows["dense"][:, j], pa.float32()) for j in range(rows["dense"].shape[1])]
    cols.append(pa.array(rows["ts"], pa.int64()))
    return pa.Table.from_arrays(cols, schema=schema)


def _write_period(root: Path, period: int, world: SyntheticWorld) -> dict[str, Any]:
    """Generate and write one period chunk by chunk (one row group each); returns its meta entry."""
    cfg = world.cfg
    schema = _schema(cfg)
    stats = PeriodStats()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic.atomic_path(root / f"period={period}" / "part-00000.parquet"))
        writer = stack.enter_context(pq.ParquetWriter(tmp, schema, compression="zstd"))
        for rows in world.iter_period(period):
            writer.write_table(_table(rows, schema, cfg.num_fields))
            stats.add(rows["label"], rows["p"])
    return {"period": period, **stats.summary()}


def generate(cfg: SyntheticConfig, out_root: str | os.PathLike, scales: ClickModelScales | None = None) -> dict[str, Any]:
    """Write the synthetic logs of ``cfg`` under ``out_root`` and return the metadata written to ``meta.json``.

    Existing ``period=<k>`` folders beyond ``num_periods`` are an error (a stale, longer dataset
    would silently mix with this one); the files of this config are overwritten atomically.
    Memory is bounded by ``chunk_rows`` (and the world's parameters), not by ``rows_per_period``.
    """
    root = Path(out_root)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: output path exists and is not a folder")
    stale = sorted(
        p.name for p in (root.iterdir() if root.is_dir() else [])
        if p.name.startswith("period=") and p.name[7:].isdigit() and int(p.name[7:]) >= cfg.num_periods
    )
    if stale:
        raise DataError(f"{root}: holds {stale} beyond num_periods={cfg.num_periods}; use an empty folder")
    world = build_world(cfg, scales)

    periods = [_write_period(root, k, world) for k in range(cfg.num_periods)]
    feature_map(cfg).save(root)
    world.save(root / TRUTH_FILE)
    meta = {
        "generator": GENERATOR,
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
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR else None


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


__all__ = [
    "GENERATOR_VERSION", "META_FILE", "PERIOD_SECONDS", "TRUTH_FILE", "TS_ORIGIN", "ClickModelScales", "FieldTable",
    "Regime", "SyntheticWorld", "build_world", "feature_map", "generate", "is_current", "load_world", "read_meta",
]
