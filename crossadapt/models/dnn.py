"""DNN: an MLP over the concatenated field embeddings (implicit interactions only)."""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.featuremap import FeatureMap
from crossadapt.models.embedding import FeatureEmbedding
from crossadapt.models.layers import mlp_tower


class DNN(nn.Module):
    """``logit = MLP(concat_f e_f)``.

    Reads ``embed_dim``, ``hidden_units``, ``dropout``, ``batch_norm``, ``layer_norm``.

    Example::

        model = DNN(feature_map, ModelConfig(name="dnn", embed_dim=16, hidden_units=(256, 128)))
        model(ids, dense).shape  # (B,)
    """

    def __init__(self, feature_map: FeatureMap, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        flat_dim = self.embedding.num_fields * cfg.embed_dim
        self.mlp = mlp_tower(flat_dim, cfg, output_dim=1)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F_cat), (B, F_num) -> logits (B,)."""
        return self.mlp(self.embedding(ids, dense).flatten(1)).squeeze(-1)
