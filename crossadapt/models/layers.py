"""Named building blocks of the model zoo: MLP, FM, CrossNet (DCN), CrossNetV2 (DCNv2), CIN
(xDeepFM), the AutoInt interacting layer, SENET and the bilinear interaction (FiBiNET) and the
first-order (LR) term.

Every block is vectorised over the batch: the only Python loops run over layers. Shapes use
``B`` batch, ``F`` embedded fields (categorical plus numeric), ``d`` embedding size and
``D = F * d`` for the flattened embeddings.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as fn
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.errors import ConfigError, DataError
from crossadapt.featuremap import FeatureMap
from crossadapt.models.embedding import field_offsets


class MLP(nn.Module):
    """Feed-forward tower: ``[Linear -> (BatchNorm | LayerNorm) -> ReLU -> (Dropout)] * len(hidden_units)``,
    then an optional linear output layer.

    Args:
        input_dim: size of the input vector.
        hidden_units: width of each hidden layer (may be empty).
        dropout: dropout after every hidden activation (0 disables it).
        batch_norm: batch norm before every hidden activation.
        output_dim: size of a final linear layer without activation; ``None``: none
            (the tower then ends on the last hidden layer, of size ``self.output_dim``).
        layer_norm: layer norm before every hidden activation (not with ``batch_norm``), as the
            released CrossAdapt code's MLP: each row's pre-activations re-centred and re-scaled
            per layer (then its own gain and shift).

    Example:
        >>> MLP(32, (64, 16), output_dim=1)(torch.randn(8, 32)).shape
        torch.Size([8, 1])
    """

    def __init__(
        self,
        input_dim: int,
        hidden_units: Sequence[int],
        dropout: float = 0.0,
        batch_norm: bool = False,
        output_dim: int | None = None,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if batch_norm and layer_norm:
            raise ConfigError("model.batch_norm and model.layer_norm: choose at most one normalisation")
        layers: list[nn.Module] = []
        dim = int(input_dim)
        for i, h in enumerate(hidden_units):
            if h < 1:
                raise ConfigError(f"model.hidden_units[{i}]: must be >= 1, got {h}")
            # No Linear bias under batch norm: BN's own shift makes it redundant. Under layer norm
            # it is not (LN removes only its mean over the layer), so it stays, as in the released code.
            linear = nn.Linear(dim, h, bias=not batch_norm)
            # He init fits the ReLU that follows (PyTorch's default is ~1/3 of the variance).
            nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
            layers.append(linear)
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            if layer_norm:
                layers.append(nn.LayerNorm(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = h
        if output_dim is not None:
            layers.append(nn.Linear(dim, output_dim))
            dim = output_dim
        self.net = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, input_dim) -> (B, output_dim)."""
        return self.net(x)


def mlp_tower(input_dim: int, cfg: ModelConfig, output_dim: int | None = None) -> MLP:
    """The DNN tower of model config ``cfg`` (the one place that reads ``hidden_units``,
    ``dropout``, ``batch_norm`` and ``layer_norm`` for every model of the zoo).

    Example:
        >>> mlp_tower(32, ModelConfig(hidden_units=(8,), layer_norm=True), output_dim=1)(torch.randn(4, 32)).shape
        torch.Size([4, 1])
    """
    return MLP(input_dim, cfg.hidden_units, cfg.dropout, cfg.batch_norm, output_dim=output_dim,
               layer_norm=cfg.layer_norm)


class FMInteraction(nn.Module):
    """Second-order factorisation-machine term ``sum_{i<j} <e_i, e_j>`` in O(F d).

    Uses ``0.5 * (||sum_i e_i||^2 - sum_i ||e_i||^2)`` instead of the O(F^2 d) pair loop.

    Example:
        >>> FMInteraction()(torch.randn(8, 5, 4)).shape
        torch.Size([8])
    """

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(B, F, d) -> (B,)."""
        square_of_sum = e.sum(dim=1).pow(2)
        sum_of_square = e.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


class CrossNet(nn.Module):
    """DCN (v1) cross network: ``x_{l+1} = x0 * (x_l . w_l) + b_l + x_l`` (rank-1 crosses).

    Example:
        >>> CrossNet(12, num_layers=2)(torch.randn(8, 12)).shape
        torch.Size([8, 12])
    """

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"model.num_cross_layers: must be >= 1, got {num_layers}")
        bound = input_dim**-0.5  # same scale as nn.Linear(input_dim, 1)
        self.weight = nn.Parameter(torch.empty(num_layers, input_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(num_layers, input_dim))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D)."""
        x = x0
        for w, b in zip(self.weight, self.bias):
            x = x0 * (x @ w).unsqueeze(1) + b + x
        return x


class CrossNetV2(nn.Module):
    """DCNv2 cross network with full-rank matrices: ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l``.

    Example:
        >>> CrossNetV2(12, num_layers=2)(torch.randn(8, 12)).shape
        torch.Size([8, 12])
    """

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"model.num_cross_layers: must be >= 1, got {num_layers}")
        self.layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(num_layers))
        for layer in self.layers:
            # The residual carries x_l; a zero bias makes each layer start as x0 * (W x) + x.
            nn.init.zeros_(layer.bias)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D)."""
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class CIN(nn.Module):
    """Compressed interaction network (xDeepFM): explicit vector-wise crosses of growing order.

    Layer ``k``: ``X_{k+1}[h] = sum_{i,j} W_k[h, i, j] * (X_k[i] ∘ X0[j])`` (a 1x1 convolution over
    the ``H_k * F`` outer-product channels), then each layer's maps are sum-pooled over ``d``.

    Example:
        >>> CIN(num_fields=5, layer_units=(8, 4))(torch.randn(2, 5, 3)).shape
        torch.Size([2, 12])
    """

    def __init__(self, num_fields: int, layer_units: Sequence[int]) -> None:
        super().__init__()
        if not layer_units or min(layer_units) < 1:
            raise ConfigError(f"model.cin_layer_units: need at least one layer, each >= 1, got {list(layer_units)}")
        self.convs = nn.ModuleList()
        prev = num_fields
        for h in layer_units:
            conv = nn.Conv1d(prev * num_fields, h, kernel_size=1)
            # A bias is added at each of the d positions and then sum-pooled: start it at zero so
            # the first logits stay near the base rate instead of a random offset times d.
            nn.init.zeros_(conv.bias)
            self.convs.append(conv)
            prev = h
        self.output_dim = int(sum(layer_units))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """(B, F, d) -> (B, sum(layer_units))."""
        b, f, d = x0.shape
        x, pooled = x0, []
        for conv in self.convs:
            z = torch.einsum("bhd,bmd->bhmd", x, x0).reshape(b, x.shape[1] * f, d)
            x = conv(z)  # (B, H_{k+1}, d)
            pooled.append(x.sum(dim=2))
        return torch.cat(pooled, dim=1)


class MultiHeadSelfAttention(nn.Module):
    """AutoInt interacting layer: multi-head self-attention over fields, residual, ReLU.

    ``out = ReLU(MHA(e) + W_res e)`` with ``attention_dim`` the total output size
    (``attention_dim // num_heads`` per head). Scores are scaled by ``1/sqrt(head_dim)`` (as in
    Transformers; the AutoInt paper leaves them unscaled): it keeps the softmax out of saturation
    when the embeddings grow during training.

    Example:
        >>> MultiHeadSelfAttention(4, attention_dim=8, num_heads=2)(torch.randn(2, 5, 4)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, input_dim: int, attention_dim: int, num_heads: int) -> None:
        super().__init__()
        if num_heads < 1 or attention_dim < 1 or attention_dim % num_heads:
            raise ConfigError(
                f"model.attention_dim ({attention_dim}) must be a positive multiple of model.num_heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.head_dim = attention_dim // num_heads
        self.qkv = nn.Linear(input_dim, 3 * attention_dim, bias=False)
        self.residual = nn.Linear(input_dim, attention_dim, bias=False)
        self.output_dim = attention_dim

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(B, F, input_dim) -> (B, F, attention_dim)."""
        b, f, _ = e.shape
        q, k, v = self.qkv(e).view(b, f, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        att = fn.scaled_dot_product_attention(q, k, v)  # (B, heads, F, head_dim), fused kernel
        att = att.transpose(1, 2).reshape(b, f, self.output_dim)
        return torch.relu(att + self.residual(e))


class SENET(nn.Module):
    """Squeeze-and-excitation over fields (FiBiNET): a learned weight per field and example.

    ``z_f = mean_k e_{f,k}`` (squeeze), ``a = act(W2 ReLU(W1 z))`` (excitation, ``W1`` of shape
    ``(max(1, F // reduction), F)``), ``out_f = a_f * e_f`` (re-weight). The paper uses ReLU for both
    activations and no biases; ``excitation="sigmoid"`` with ``bias=True`` is the released CrossAdapt
    code's variant (the image SE-Net's gate).

    Example:
        >>> SENET(num_fields=6, reduction=3)(torch.randn(2, 6, 4)).shape
        torch.Size([2, 6, 4])
    """

    def __init__(self, num_fields: int, reduction: int, excitation: str = "relu", bias: bool = False) -> None:
        super().__init__()
        if reduction < 1:
            raise ConfigError(f"model.senet_reduction: must be >= 1, got {reduction}")
        if excitation not in ("relu", "sigmoid"):
            raise ConfigError(f"SENET excitation must be 'relu' or 'sigmoid', got {excitation!r}")
        hidden = max(1, num_fields // reduction)
        self.squeeze = nn.Linear(num_fields, hidden, bias=bias)
        self.excite = nn.Linear(hidden, num_fields, bias=bias)
        self.gate = torch.relu if excitation == "relu" else torch.sigmoid

    def field_weights(self, e: torch.Tensor) -> torch.Tensor:
        """(B, F, d) -> the excitation weights ``a`` (B, F)."""
        return self.gate(self.excite(torch.relu(self.squeeze(e.mean(dim=2)))))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(B, F, d) -> (B, F, d)."""
        return e * self.field_weights(e).unsqueeze(-1)


#: Bilinear weight sharing of FiBiNET: one matrix for all fields, one per field, one per field pair.
BILINEAR_TYPES = ("field_all", "field_each", "field_interaction")


class BilinearInteraction(nn.Module):
    """FiBiNET's bilinear interaction: ``p_ij = (e_i W) ⊙ e_j`` for every field pair ``i < j``.

    ``W`` is one ``d x d`` matrix (``field_all``), ``W_i`` per left field (``field_each``; the last
    field is never on the left, so ``F - 1`` matrices: no parameter without a gradient), or
    ``W_ij`` per pair (``field_interaction``). Pairs are gathered with index tensors, not a loop.

    Example:
        >>> BilinearInteraction(4, 3, "field_each")(torch.randn(2, 4, 3)).shape  # 6 pairs
        torch.Size([2, 6, 3])
    """

    def __init__(self, num_fields: int, embed_dim: int, kind: str = "field_all") -> None:
        super().__init__()
        if kind not in BILINEAR_TYPES:
            raise ConfigError(f"model.bilinear_type: must be one of {list(BILINEAR_TYPES)}, got {kind!r}")
        if num_fields < 2:
            raise ConfigError(f"the bilinear interaction needs at least 2 fields, the feature map has {num_fields}")
        left, right = torch.triu_indices(num_fields, num_fields, offset=1)
        # Not persistent: derived from the field count, so checkpoints hold only the weights.
        self.register_buffer("left", left, persistent=False)
        self.register_buffer("right", right, persistent=False)
        self.kind = kind
        self.num_pairs = int(left.numel())
        count = {"field_all": 1, "field_each": num_fields - 1, "field_interaction": self.num_pairs}[kind]
        # std 1/sqrt(d): e W keeps the scale of e (as xavier for a square matrix).
        self.weight = nn.Parameter(torch.randn(count, embed_dim, embed_dim) * embed_dim**-0.5)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(B, F, d) -> (B, F (F - 1) / 2, d), pairs in row-major order of ``i < j``."""
        if self.kind == "field_all":
            v = (e @ self.weight[0])[:, self.left]
        elif self.kind == "field_each":
            v = torch.einsum("bfd,fdk->bfk", e[:, :-1], self.weight)[:, self.left]
        else:
            v = torch.einsum("bpd,pdk->bpk", e[:, self.left], self.weight)
        return v * e[:, self.right]


class FirstOrder(nn.Module):
    """First-order (logistic-regression) term: ``bias + sum_f w[id_f] + sum_j v_j * x_j``.

    Per-id scalar weights live in their own 1-d embedding with the same row layout (offsets) as
    :class:`~crossadapt.models.embedding.FeatureEmbedding`. All weights start at zero: the term is
    linear, so there is no symmetry to break, and the model starts from the bias alone.

    Example:
        >>> from crossadapt.featuremap import FeatureMap, FieldSpec
        >>> fm = FeatureMap("toy", (FieldSpec("u", vocab_size=10),))
        >>> FirstOrder(fm)(torch.tensor([[3], [4]])).shape
        torch.Size([2])
    """

    def __init__(self, feature_map: FeatureMap) -> None:
        super().__init__()
        vocab = feature_map.vocab_sizes
        self.num_categorical = len(vocab)
        self.num_numeric = len(feature_map.numeric_fields)
        self.weight = nn.Embedding(sum(vocab), 1)
        nn.init.zeros_(self.weight.weight)
        self.register_buffer("offsets", torch.tensor(field_offsets(vocab), dtype=torch.long))
        if self.num_numeric:
            self.numeric_weight = nn.Parameter(torch.zeros(self.num_numeric))
        else:
            self.register_parameter("numeric_weight", None)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F_cat), (B, F_num) -> (B,)."""
        out = self.weight(ids + self.offsets).sum(dim=(1, 2)) + self.bias
        if self.numeric_weight is not None:
            if dense is None:
                raise DataError(f"dense: expected shape (B, {self.num_numeric}) for the numeric fields, got None")
            out = out + dense.to(self.numeric_weight.dtype) @ self.numeric_weight
        return out
