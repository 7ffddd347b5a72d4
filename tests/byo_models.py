"""User model classes for the bring-your-own tests (imported by name, ``tests.byo_models:Class``, as a
team's own package would be: Ray puts the driver's folder, the repository root, on its workers' path)."""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.models.embedding import FeatureEmbedding


class TinyGated(nn.Module):
    """A factorisation machine over gated field embeddings: pairwise inner products + a linear term.

    The inner products let it express the click model of the test world (user . item) from the
    projected teacher tables alone; the gates (1 at start) re-weight fields.
    """

    def __init__(self, feature_map, cfg) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        width = self.embedding.num_fields * cfg.embed_dim
        self.gate = nn.Parameter(torch.zeros(self.embedding.num_fields, 1))
        self.linear = nn.Linear(width, 1)
        nn.init.zeros_(self.linear.weight)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embedding(ids, dense) * (2 * torch.sigmoid(self.gate))  # (B, F, d)
        pairs = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)  # sum over i < j of <e_i, e_j>
        return pairs + self.linear(e.flatten(1)).squeeze(-1)


class NoSharedEmbedding(nn.Module):
    """Wrong: its own nn.Embedding instead of the shared FeatureEmbedding."""

    def __init__(self, feature_map, cfg) -> None:
        super().__init__()
        self.embedding = nn.Embedding(sum(feature_map.vocab_sizes), cfg.embed_dim)

    def forward(self, ids, dense=None):
        return self.embedding(ids).sum((1, 2))


class WrongOutput(TinyGated):
    """Wrong: returns (B, 1) logits."""

    def forward(self, ids, dense=None):
        return super().forward(ids, dense).unsqueeze(-1)


class NoFeatureMap(nn.Module):
    """Wrong: a constructor without (feature_map, cfg)."""

    def __init__(self) -> None:
        super().__init__()


NOT_A_CLASS = 3
