"""DCNv2 (Wang et al., 2021): full-rank cross network beside an MLP (parallel structure)."""

from __future__ import annotations

from crossadapt.models.dcn import DCN
from crossadapt.models.layers import CrossNetV2


class DCNv2(DCN):
    """``logit = w . [CrossNetV2(x0), MLP(x0)] + b`` with ``x0 = concat_f e_f``.

    DCN with the full-rank cross layers; the parallel structure of the paper (its default in most
    reproductions); ``hidden_units=()`` drops the deep tower. Full-rank cross matrices are
    ``(F d)^2`` each: fine for tens of fields at d <= 64, the sizes this project uses.
    Reads ``embed_dim``, ``num_cross_layers``, ``hidden_units``, ``dropout``, ``batch_norm``.

    Example::

        model = DCNv2(feature_map, ModelConfig(name="dcnv2", embed_dim=32))
        model(ids, dense).shape  # (B,)
    """

    cross_network = CrossNetV2
