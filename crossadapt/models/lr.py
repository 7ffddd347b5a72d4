"""Logistic regression: the first-order baseline."""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.featuremap import FeatureMap
from crossadapt.models.embedding import FeatureEmbedding


class LR(nn.Module):
    """Logistic regression ``logit = b + sum_f w[id_f] + sum_j v_j x_j``, stored in ``model.embedding``.

    The per-id weight is the sum of the id's embedding row: ``w[i] = sum_k E[i, k]`` (and
    ``v_j = sum_k numeric[j, k]``). That is exactly logistic regression (any weight vector is
    reachable, and the logit stays linear in the parameters, so the loss stays convex), while the
    model keeps a real ``embedding`` like every other model: checkpoints, projection and the
    phase-1 freeze work uniformly, and every parameter gets a gradient (DDP without
    ``find_unused_parameters``). With ``embed_dim=1`` it is the textbook parametrisation.

    Reads ``cfg.embed_dim`` only.

    Example::

        model = LR(feature_map, ModelConfig(name="lr", embed_dim=1))
        model(ids).shape  # (B,)
    """

    def __init__(self, feature_map: FeatureMap, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F_cat), (B, F_num) -> logits (B,)."""
        return self.embedding(ids, dense).sum(dim=(1, 2)) + self.bias
