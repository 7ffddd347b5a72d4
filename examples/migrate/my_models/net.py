"""The new architecture to migrate to: a field-gated DNN with a factorisation-machine term, written
against crossadapt's model interface.

The interface (``crossadapt.models.registry.check_model`` checks it before anything runs):

- constructed as ``GatedDNN(feature_map, cfg)``: the data's ``FeatureMap`` and the config's
  ``student`` section (a ``ModelConfig``: ``embed_dim``, ``hidden_units``, ``dropout``, ...);
- an attribute ``embedding``: the shared ``FeatureEmbedding(feature_map, cfg.embed_dim)`` (the
  projection writes the teacher's knowledge into its table, and phase 1 of the distillation freezes it);
- ``forward(ids, dense)``: ids int64 (B, F_cat), dense float32 (B, F_num) or None -> logits (B,).
"""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.models.embedding import FeatureEmbedding
from crossadapt.models.layers import mlp_tower


class GatedDNN(nn.Module):
    """Field embeddings scaled by learned gates in (0, 2) (1 at start), scored by pairwise inner
    products (a factorisation machine: what the projected teacher tables already encode) plus an MLP."""

    def __init__(self, feature_map, cfg) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        self.gate = nn.Parameter(torch.zeros(self.embedding.num_fields, 1))
        self.mlp = mlp_tower(self.embedding.num_fields * cfg.embed_dim, cfg, output_dim=1)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embedding(ids, dense) * (2 * torch.sigmoid(self.gate))  # (B, F, d)
        pairs = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)  # sum over fields i < j of <e_i, e_j>
        return pairs + self.mlp(e.flatten(1)).squeeze(-1)
