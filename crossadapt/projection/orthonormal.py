"""Orthonormal bases made unique: sign rules, QR with a positive diagonal, completion, expansion ``Q``.

Singular vectors and QR factors are defined up to signs only; these rules make every basis a
deterministic function of its input, so two shardings of one table (whose sums differ in the last
bits) return the same basis and not its mirror image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossadapt.errors import ConfigError
from crossadapt.projection.blocks import F64


def fix_signs(V: Tensor) -> Tensor:
    """Flip each column of ``V`` so its largest-magnitude component is positive.

    Singular vectors are defined up to sign only; without this rule two shardings of the same
    table (whose Grams differ in the last bits) could return opposite signs.
    """
    if V.numel() == 0:
        return V
    idx = V.abs().argmax(dim=0)  # first maximum on ties (documented torch behaviour)
    s = torch.sign(V[idx, torch.arange(V.shape[1])])
    s[s == 0] = 1
    return V * s


def qr_pos(A: Tensor) -> tuple[Tensor, Tensor]:
    """Reduced QR with ``diag(R) >= 0``: unique for full-rank ``A``, whatever LAPACK's convention."""
    Q, R = torch.linalg.qr(A, mode="reduced")
    m = min(R.shape)
    d = torch.sign(torch.diagonal(R)[:m])
    d[d == 0] = 1
    return Q * d, R * d[:, None]


def complete_basis(U: Tensor, k: int) -> Tensor:
    """Extend orthonormal columns ``U`` (d x r, r < k <= d) to ``k`` orthonormal columns.

    Needed when a table has fewer rows than ``d_s``: the extra directions carry no energy
    (``E v = 0``), any orthonormal completion is correct; QR of ``[U, I]`` gives a deterministic one.
    """
    d, r = U.shape
    if r >= k:
        return U[:, :k]
    Q, _ = qr_pos(torch.cat([U, torch.eye(d, dtype=U.dtype)], dim=1))
    # Q[:, :r] equals U (positive diagonal of R, U orthonormal); keep U itself to avoid rounding.
    return torch.cat([U, Q[:, r:k]], dim=1)


def expansion_matrix(d_t: int, d_s: int, seed: int) -> Tensor:
    """``Q`` (d_t x d_s) float64 with orthonormal rows (``Q Q^T = I_{d_t}``) from a seeded Gaussian.

    ``A`` (d_s x d_t) ~ N(0, 1) seeded, ``A = q r`` (q: d_s x d_t, orthonormal columns), ``Q = q^T``.
    ``diag(r) > 0`` makes ``q`` unique (and Haar distributed), independent of the LAPACK build.
    """
    if d_s < d_t:
        raise ConfigError(f"projection: expansion needs d_s >= d_t, got d_s={d_s}, d_t={d_t}")
    g = torch.Generator().manual_seed(int(seed))
    A = torch.randn(d_s, d_t, generator=g, dtype=F64)
    q, _ = qr_pos(A)
    return q.T.contiguous()
