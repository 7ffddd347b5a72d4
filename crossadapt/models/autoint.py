"""AutoInt (Song et al., 2019): stacked multi-head self-attention over fields."""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.models.embedding import FeatureEmbedding
from crossadapt.models.layers import MultiHeadSelfAttention, mlp_tower


class AutoInt(nn.Module):
    """``logit = w . flatten(Att_L(...Att_1(E))) [+ MLP(concat_f e_f)]``.

    With non-empty ``hidden_units`` this is AutoInt+ (the paper's variant with a parallel DNN);
    ``hidden_units=()`` gives plain AutoInt. ``attention_dim`` is the total width of a layer's
    output (``attention_dim // num_heads`` per head).
    Reads ``embed_dim``, ``num_attention_layers``, ``num_heads``, ``attention_dim``,
    ``hidden_units``, ``dropout``, ``batch_norm``, ``layer_norm``.

    Example::

        model = AutoInt(feature_map, ModelConfig(name="autoint", hidden_units=()))
        model(ids, dense).shape  # (B,)
    """

    def __init__(self, feature_map: FeatureMap, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.num_attention_layers < 1:
            raise ConfigError(f"model.num_attention_layers: must be >= 1, got {cfg.num_attention_layers}")
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        num_fields = self.embedding.num_fields
        dims = [cfg.embed_dim] + [cfg.attention_dim] * cfg.num_attention_layers
        self.attention = nn.Sequential(
            *(MultiHeadSelfAttention(d_in, cfg.attention_dim, cfg.num_heads) for d_in in dims[:-1])
        )
        self.att_head = nn.Linear(num_fields * cfg.attention_dim, 1)
        self.mlp = (
            mlp_tower(num_fields * cfg.embed_dim, cfg, output_dim=1)
            if cfg.hidden_units
            else None
        )

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F_cat), (B, F_num) -> logits (B,)."""
        e = self.embedding(ids, dense)
        logit = self.att_head(self.attention(e).flatten(1)).squeeze(-1)
        if self.mlp is not None:
            logit = logit + self.mlp(e.flatten(1)).squeeze(-1)
        return logit
