"""xDeepFM (Lian et al., 2018): first-order + CIN (explicit vector-wise crosses) + DNN."""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.featuremap import FeatureMap
from crossadapt.models.embedding import FeatureEmbedding
from crossadapt.models.layers import CIN, FirstOrder, mlp_tower


class XDeepFM(nn.Module):
    """``logit = LR(x) + w . CIN(E) + MLP(concat_f e_f)``.

    ``hidden_units=()`` makes the deep part a single linear layer.
    Reads ``embed_dim``, ``cin_layer_units``, ``hidden_units``, ``dropout``, ``batch_norm``, ``layer_norm``.

    Example::

        model = XDeepFM(feature_map, ModelConfig(name="xdeepfm", cin_layer_units=(64, 64)))
        model(ids, dense).shape  # (B,)
    """

    def __init__(self, feature_map: FeatureMap, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        self.first_order = FirstOrder(feature_map)
        self.cin = CIN(self.embedding.num_fields, cfg.cin_layer_units)
        self.cin_head = nn.Linear(self.cin.output_dim, 1, bias=False)  # the bias is first_order's
        flat_dim = self.embedding.num_fields * cfg.embed_dim
        self.mlp = mlp_tower(flat_dim, cfg, output_dim=1)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F_cat), (B, F_num) -> logits (B,)."""
        e = self.embedding(ids, dense)
        cin = self.cin_head(self.cin(e)).squeeze(-1)
        return self.first_order(ids, dense) + cin + self.mlp(e.flatten(1)).squeeze(-1)
