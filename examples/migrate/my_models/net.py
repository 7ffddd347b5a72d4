"""The new architecture to migrate to: a field-gated DNN, written against crossadapt's model interface.

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
    """An MLP over field embeddings, each field scaled by a learned gate in (0, 1)."""

    def __init__(self, feature_map, cfg) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        width = self.embedding.num_fields * cfg.embed_dim
        self.gate = nn.Linear(width, self.embedding.num_fields)
        self.mlp = mlp_tower(width, cfg, output_dim=1)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embedding(ids, dense)  # (B, F, d)
        gates = torch.sigmoid(self.gate(e.flatten(1))).unsqueeze(-1)
        return self.mlp((gates * e).flatten(1)).squeeze(-1)
