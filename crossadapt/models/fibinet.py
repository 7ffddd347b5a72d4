"""FiBiNET (Huang et al., 2019): SENET field re-weighting and bilinear interactions under a DNN."""

from __future__ import annotations

import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.featuremap import FeatureMap
from crossadapt.models.embedding import FeatureEmbedding
from crossadapt.models.layers import SENET, BilinearInteraction, FirstOrder, mlp_tower


class FiBiNET(nn.Module):
    """Two variants, chosen by ``cfg.fibinet_variant``:

    - ``"paper"``: ``logit = LR(x) + MLP([Bi(E), Bi'(SENET(E))])`` with ReLU/ReLU excitation and no
      SENET biases, as in the paper (two bilinear layers with their own weights, as in the common
      reproductions: DeepCTR, FuxiCTR).
    - ``"released"``: ``logit = MLP([E, Bi(SENET(E))])`` with a ReLU/sigmoid excitation and biases,
      what the released CrossAdapt code's student computes (no LR term, the plain embeddings in
      place of their bilinear products).

    ``E`` holds every embedded field (categorical, then numeric); ``Bi`` yields ``F (F - 1) / 2``
    vectors of size ``d``, so the tower's input grows with ``F^2 d`` (39 Criteo fields at d = 16:
    11 856 per bilinear layer).
    Reads ``embed_dim``, ``senet_reduction``, ``bilinear_type``, ``fibinet_variant``,
    ``hidden_units``, ``dropout``, ``batch_norm``, ``layer_norm``.

    Example::

        model = FiBiNET(feature_map, ModelConfig(name="fibinet", embed_dim=16, hidden_units=(256, 128, 16)))
        model(ids, dense).shape  # (B,)
    """

    def __init__(self, feature_map: FeatureMap, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, cfg.embed_dim)
        f, d = self.embedding.num_fields, cfg.embed_dim
        self.released = cfg.fibinet_variant == "released"
        self.senet = SENET(f, cfg.senet_reduction, excitation="sigmoid" if self.released else "relu",
                           bias=self.released)
        self.bilinear_senet = BilinearInteraction(f, d, cfg.bilinear_type)
        pairs = self.bilinear_senet.num_pairs
        if self.released:
            self.bilinear_embed, self.first_order = None, None
            tower_in = f * d + pairs * d
        else:
            self.bilinear_embed = BilinearInteraction(f, d, cfg.bilinear_type)
            self.first_order = FirstOrder(feature_map)
            tower_in = 2 * pairs * d
        self.mlp = mlp_tower(tower_in, cfg, output_dim=1)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F_cat), (B, F_num) -> logits (B,)."""
        e = self.embedding(ids, dense)
        q = self.bilinear_senet(self.senet(e)).flatten(1)
        if self.released:
            return self.mlp(torch.cat([e.flatten(1), q], dim=1)).squeeze(-1)
        p = self.bilinear_embed(e).flatten(1)
        return self.first_order(ids, dense) + self.mlp(torch.cat([p, q], dim=1)).squeeze(-1)
