"""Model names (as written in configs) to classes; ``build_model`` is the one way to make a model."""

from __future__ import annotations

from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.models.autoint import AutoInt
from crossadapt.models.dcn import DCN
from crossadapt.models.dcnv2 import DCNv2
from crossadapt.models.deepfm import DeepFM
from crossadapt.models.dnn import DNN
from crossadapt.models.fibinet import FiBiNET
from crossadapt.models.lr import LR
from crossadapt.models.xdeepfm import XDeepFM

#: Every model takes ``(feature_map, cfg: ModelConfig)`` and maps ``(ids, dense)`` to logits (B,).
MODEL_REGISTRY: dict[str, type[nn.Module]] = {
    "lr": LR,
    "dnn": DNN,
    "deepfm": DeepFM,
    "dcn": DCN,
    "dcnv2": DCNv2,
    "xdeepfm": XDeepFM,
    "autoint": AutoInt,
    "fibinet": FiBiNET,
}


def build_model(cfg: ModelConfig, feature_map: FeatureMap) -> nn.Module:
    """Build the model ``cfg.name`` for ``feature_map`` (freshly initialised, in train mode).

    Raises:
        ConfigError: unknown ``cfg.name`` (the message lists the valid names) or a hyper-parameter
            the model cannot use (the message names the ``model.<key>``).

    Example::

        model = build_model(ModelConfig(name="dcnv2", embed_dim=32), feature_map)
        logits = model(ids, dense)  # (B,)
    """
    cls = MODEL_REGISTRY.get(cfg.name)
    if cls is None:
        raise ConfigError(f"model.name: unknown model {cfg.name!r}; valid names: {sorted(MODEL_REGISTRY)}")
    return cls(feature_map, cfg)
