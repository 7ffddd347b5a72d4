"""The feature embedding shared by every model: one table for all categorical fields.

All categorical fields live in one ``nn.Embedding(sum(vocab_sizes), d)``; field ``f`` owns rows
``[offsets[f], offsets[f] + vocab_sizes[f])``. One table means one lookup per batch (fast on CPU and
GPU) and one tensor for projection and checkpoints; ``field_ranges()`` gives the per-field row
slices when a per-field view is needed. Numeric field ``j`` is embedded as ``value * numeric[j]``.

The progressive-distillation helpers (``set_embedding_trainable`` and the parameter splits) live
here so that every model is frozen and unfrozen the same way.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from crossadapt.errors import DataError
from crossadapt.featuremap import FeatureMap

#: Std of the N(0, std) init of embedding rows and numeric vectors.
#: Why 1e-2 and not xavier: xavier on one concatenated table depends on the total vocabulary
#: (sqrt(6 / (sum(V) + d)) is ~1e-3 for a million rows, ~0.1 for a toy map), so the same model
#: would start differently on every dataset. A fixed small std keeps the initial pairwise terms
#: (FM, CIN, cross, attention) near zero, so the first logits sit near the base rate, yet is large
#: enough that Adam's first steps (about ``lr`` per coordinate) are a ~10 % change, not the
#: 1000 % change they would be with the 1e-4 some CTR libraries use.
EMBEDDING_INIT_STD = 1e-2


def field_offsets(vocab_sizes: Iterable[int]) -> list[int]:
    """Exclusive prefix sums of ``vocab_sizes``: the first table row of every field.

    Example:
        >>> field_offsets([3, 5, 2])
        [0, 3, 8]
    """
    out, total = [], 0
    for v in vocab_sizes:
        out.append(total)
        total += int(v)
    return out


class FeatureEmbedding(nn.Module):
    """Embeds ids (B, F_cat) and numeric values (B, F_num) into (B, F_cat + F_num, d).

    Attributes:
        table: ``nn.Embedding(sum(vocab_sizes), embed_dim)``, all categorical fields stacked.
        offsets: buffer (F_cat,) int64, first row of each field in ``table.weight``.
        numeric: ``nn.Parameter`` (F_num, embed_dim), or ``None`` without numeric fields.

    Example:
        >>> from crossadapt.featuremap import FeatureMap, FieldSpec
        >>> fm = FeatureMap("toy", (FieldSpec("u", vocab_size=10), FieldSpec("i", vocab_size=5),
        ...                         FieldSpec("price", type="numeric")))
        >>> emb = FeatureEmbedding(fm, embed_dim=4)
        >>> emb(torch.tensor([[1, 2]]), torch.tensor([[0.5]])).shape
        torch.Size([1, 3, 4])
        >>> emb.field_ranges()
        [('u', 0, 10), ('i', 10, 15)]
    """

    def __init__(self, feature_map: FeatureMap, embed_dim: int, init_std: float = EMBEDDING_INIT_STD) -> None:
        super().__init__()
        self.field_names: list[str] = feature_map.categorical_names
        self.vocab_sizes: list[int] = [int(v) for v in feature_map.vocab_sizes]
        self.num_categorical = len(self.vocab_sizes)
        self.num_numeric = len(feature_map.numeric_fields)
        self.num_fields = self.num_categorical + self.num_numeric
        self.embed_dim = int(embed_dim)
        self.init_std = float(init_std)
        self.table = nn.Embedding(sum(self.vocab_sizes), self.embed_dim)
        # Persistent buffer: the checkpoint then records the row layout it was trained with.
        self.register_buffer("offsets", torch.tensor(field_offsets(self.vocab_sizes), dtype=torch.long))
        if self.num_numeric:
            self.numeric = nn.Parameter(torch.empty(self.num_numeric, self.embed_dim))
        else:
            self.register_parameter("numeric", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw the table and numeric vectors from N(0, ``init_std``)."""
        nn.init.normal_(self.table.weight, std=self.init_std)
        if self.numeric is not None:
            nn.init.normal_(self.numeric, std=self.init_std)

    def field_ranges(self) -> list[tuple[str, int, int]]:
        """``(name, start, end)`` rows of each categorical field in ``table.weight`` (end exclusive)."""
        return [(n, o, o + v) for n, o, v in zip(self.field_names, field_offsets(self.vocab_sizes), self.vocab_sizes)]

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """Return (B, F_cat + F_num, d); categorical fields first, then numeric, in feature-map order.

        Ids are not range-checked here (that would cost a device sync per batch): the data layer
        (``crossadapt.data.arrays``) checks every id against its field's vocabulary on load.
        """
        if ids.dim() != 2 or ids.shape[1] != self.num_categorical:
            raise DataError(f"ids: expected shape (B, {self.num_categorical}), got {tuple(ids.shape)}")
        e = self.table(ids + self.offsets)
        if self.numeric is None:
            return e
        if dense is None or dense.dim() != 2 or dense.shape[1] != self.num_numeric:
            got = None if dense is None else tuple(dense.shape)
            raise DataError(f"dense: expected shape (B, {self.num_numeric}) for the numeric fields, got {got}")
        e_num = dense.unsqueeze(-1).to(self.numeric.dtype) * self.numeric  # (B, F_num, d)
        return torch.cat([e, e_num.to(e.dtype)], dim=1)


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP / DataParallel wrapper (they keep it as ``.module``)."""
    while not hasattr(model, "embedding") and hasattr(model, "module"):
        model = model.module
    if not isinstance(getattr(model, "embedding", None), FeatureEmbedding):
        raise TypeError(f"{type(model).__name__} has no `embedding` FeatureEmbedding")
    return model


def embedding_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of ``model.embedding`` (the table and the numeric vectors)."""
    return list(_unwrap(model).embedding.parameters())


def interaction_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of ``model`` that is not in ``model.embedding`` (interaction net, heads, biases)."""
    emb = {id(p) for p in embedding_parameters(model)}
    return [p for p in _unwrap(model).parameters() if id(p) not in emb]


def set_embedding_trainable(model: nn.Module, flag: bool) -> None:
    """Freeze (``False``) or unfreeze (``True``) ``model.embedding``.

    Freezing also drops the embedding gradients: an optimizer built earlier over all parameters
    then skips them (Adam skips parameters whose ``grad`` is ``None``), so a frozen table stays
    bit-identical, weight decay included. Build the optimizer after calling this to leave frozen
    parameters out of it entirely (``crossadapt.train.engine.make_optimizer`` does).

    Example::

        set_embedding_trainable(model, False)  # phase 1: projected tables stay fixed
    """
    for p in embedding_parameters(model):
        p.requires_grad_(flag)
        if not flag:
            p.grad = None
