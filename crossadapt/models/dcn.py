"""DCN (Wang et al., 2017): a rank-1 cross network beside an MLP."""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.featuremap import FeatureMap
from crossadapt.models.embedding import FeatureEmbedding
from crossadapt.models.layers import CrossNet, mlp_tower


class DCN(nn.Module):
    """``logit = w . [CrossNet(x0), MLP(x0)] + b`` with ``x0 = concat_f e_f``.

    ``hidden_units=()`` drops the deep tower (cross network only).
    Reads ``embed_dim``, ``num_cross_layers``, ``hidden_units``, ``dropout``, ``batch_norm``, ``layer_norm``.

    Example::

        model = DCN(feature_map, ModelConfig(name="dcn", num_cross_layers=3))
        model(ids, dense).shape  # (B,)
    """

    #: The cross network (DCNv2 subclasses this model and swaps in its full-rank one).
    cross_network: type[nn.Module] = CrossNet

    def __init__(self, feature_map: FeatureMap, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        flat_dim = self.embedding.num_fields * cfg.embed_dim
        self.cross = self.cross_network(flat_dim, cfg.num_cross_layers)
        self.deep = mlp_tower(flat_dim, cfg) if cfg.hidden_units else None
        self.head = nn.Linear(flat_dim + (self.deep.output_dim if self.deep is not None else 0), 1)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F_cat), (B, F_num) -> logits (B,)."""
        x0 = self.embedding(ids, dense).flatten(1)
        parts = [self.cross(x0)] if self.deep is None else [self.cross(x0), self.deep(x0)]
        return self.head(torch.cat(parts, dim=1)).squeeze(-1)
