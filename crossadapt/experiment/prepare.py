"""Make sure the encoded logs a config names exist: generate synthetic logs or convert raw ones."""

from __future__ import annotations

from pathlib import Path

from crossadapt.config import ExperimentConfig
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FEATURE_MAP_FILE, FeatureMap


def prepare_data(cfg: ExperimentConfig, force: bool = False, num_periods: int | None = None,
                 min_count: int | None = None) -> FeatureMap:
    """Return the feature map of ``cfg.data.root``, creating the data first when needed.

    Synthetic logs are regenerated when the saved generator version, config or scales differ from
    this code's and ``cfg.synthetic`` (cached data is keyed by everything that shapes it). Raw logs
    are converted once unless ``force``.
    """
    root = Path(cfg.data.root)
    have = (root / FEATURE_MAP_FILE).exists()
    source = cfg.data.source
    if source == "synthetic":
        from crossadapt.data.synthetic import generate, is_current

        if force or not have or not is_current(root, cfg.synthetic):
            print(f"[crossadapt] generating synthetic logs in {root}", flush=True)
            generate(cfg.synthetic, root)
    elif source in ("criteo", "avazu", "kdd12"):
        if force or not have:
            if not cfg.data.raw_path:
                raise ConfigError(f"data.raw_path: needed to convert {source} logs into {root}")
            from crossadapt.data.converters import convert

            convert(source, cfg.data.raw_path, root, min_count=min_count or cfg.data.min_count,
                    num_periods=num_periods or cfg.data.num_periods or None, overwrite=force)
    elif not have:
        raise ConfigError(f"data.root: {root} holds no {FEATURE_MAP_FILE}; run `crossadapt prepare` first")
    return FeatureMap.load(root)
