"""DeepFM (Guo et al., 2017): first-order + FM + DNN sharing one embedding."""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.featuremap import FeatureMap
from crossadapt.models.embedding import FeatureEmbedding
from crossadapt.models.layers import FirstOrder, FMInteraction, mlp_tower


class DeepFM(nn.Module):
    """``logit = LR(x) + sum_{i<j} <e_i, e_j> + MLP(concat_f e_f)``.

    The first-order weights are their own 1-d table (``first_order``), not part of ``embedding``:
    projection and the phase-1 freeze touch the shared embedding only.
    Reads ``embed_dim``, ``hidden_units``, ``dropout``, ``batch_norm``, ``layer_norm``.

    Example::

        model = DeepFM(feature_map, ModelConfig(name="deepfm", embed_dim=16))
        model(ids, dense).shape  # (B,)
    """

    def __init__(self, feature_map: FeatureMap, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        self.first_order = FirstOrder(feature_map)
        self.fm = FMInteraction()
        flat_dim = self.embedding.num_fields * cfg.embed_dim
        self.mlp = mlp_tower(flat_dim, cfg, output_dim=1)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F_cat), (B, F_num) -> logits (B,)."""
        e = self.embedding(ids, dense)
        return self.first_order(ids, dense) + self.fm(e) + self.mlp(e.flatten(1)).squeeze(-1)
