"""The randomized path: randomized SVD (Halko, Martinsson, Tropp 2011, Alg. 4.4 with subspace iteration).

``Y = E Z`` for a seeded Gaussian ``Z``, the QR of the tall ``Y`` by TSQR across row blocks,
``W = E^T Q``, re-orthonormalised between power iterations, then a small SVD of ``W`` (``W = B^T``
with ``B = Q^T E``, so the left singular vectors of ``W`` are the right singular vectors of ``E``).

Each round is written as two halves over row blocks (:func:`sketch_blocks`, then
:func:`back_project_blocks` after :func:`tsqr_combine`), so a block owner (a projection actor)
runs the first half, the driver the combine, the owner the second half; only ``l x l`` and
``d x l`` matrices travel (``l = d_s + oversample``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from crossadapt.errors import ConfigError, DataError
from crossadapt.projection.blocks import DEFAULT_CHUNK_ROWS, F64, as_table, block_rows, split_blocks
from crossadapt.projection.orthonormal import complete_basis, fix_signs, qr_pos


def sketch_matrix(d: int, cols: int, seed: int) -> Tensor:
    """The seeded Gaussian test matrix ``Omega`` (d x cols), float64. Same seed, same matrix everywhere."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(d, cols, generator=g, dtype=F64)


def tsqr_combine(rs: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
    """Second level of TSQR: QR of the stacked R factors of the row blocks.

    Returns ``(slices, R)``: ``slices[i]`` is the rows of the small ``Q2`` that belong to block ``i``
    (its local ``Q_i`` times ``slices[i]`` is block ``i`` of the global ``Q``), ``R`` the global R
    (``diag(R) >= 0``).
    """
    if not rs:
        raise DataError("tsqr: no blocks")
    Q2, R = qr_pos(torch.cat([r.to(F64) for r in rs], dim=0))
    sizes = [int(r.shape[0]) for r in rs]
    return list(torch.split(Q2, sizes, dim=0)), R


def tsqr(blocks: Sequence[Tensor], return_q: bool = True) -> tuple[list[Tensor], Tensor] | Tensor:
    """Tall-skinny QR of the row-stacked ``blocks`` (float64): ``(Q_blocks, R)``, or ``R`` alone.

    QR of each block, QR of the stacked R's, then ``Q_i = Q_i_local @ Q2_i``. Each block is touched
    once, and only ``cols x cols`` matrices travel, which is why it is the QR used across shards.
    ``R`` has ``diag(R) >= 0`` so it equals a direct QR's R up to row signs (exactly, when the
    direct one is normalised the same way).
    """
    if not blocks:
        raise DataError("tsqr: no blocks")
    local = [qr_pos(b.to(F64)) for b in blocks]
    slices, R = tsqr_combine([r for _, r in local])
    if not return_q:
        return R
    return [q @ s for (q, _), s in zip(local, slices)], R


def sketch_blocks(blocks: Sequence[Tensor], Z: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[list[Tensor], list[Tensor]]:
    """First half of one randomized round on row blocks: ``Y_i = E_i Z`` and its local QR.

    Returns ``(local_qs, local_rs)``; the R's go to :func:`tsqr_combine`, the Q's stay with the
    block owner until :func:`back_project_blocks`.
    """
    qs, rs = [], []
    for b in blocks:
        Y = torch.empty(b.shape[0], Z.shape[1], dtype=F64)
        step = block_rows(b.shape[1], chunk_rows)
        Zb = Z.to(_gemm_dtype(b))
        for i in range(0, b.shape[0], step):
            Y[i : i + step] = b[i : i + step].to(Zb.dtype) @ Zb
        q, r = qr_pos(Y)
        qs.append(q)
        rs.append(r)
    return qs, rs


def back_project_blocks(
    blocks: Sequence[Tensor], local_qs: Sequence[Tensor], slices: Sequence[Tensor], chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Tensor:
    """Second half of a round: ``W = sum_i E_i^T (Q_i_local Q2_i)`` (d x l), this owner's share of ``E^T Q``."""
    d = blocks[0].shape[1]
    W = torch.zeros(d, slices[0].shape[1], dtype=F64)
    for b, q, s in zip(blocks, local_qs, slices):
        Q = (q @ s).to(_gemm_dtype(b))
        step = block_rows(b.shape[1], chunk_rows)
        for i in range(0, b.shape[0], step):
            W += b[i : i + step].to(Q.dtype).T @ Q[i : i + step]
    return W


def _gemm_dtype(block: Tensor) -> torch.dtype:
    """Dtype of the big ``n x d`` products of the randomized path: float32 for a float32 table
    (no float64 copy of every block, 2-3x faster; the sketch is an approximation to ~1e-7 anyway,
    and the QR's, sums over blocks and the final SVD stay float64), float64 otherwise."""
    return torch.float32 if block.dtype == torch.float32 else F64


def rsvd_sketch_cols(d_t: int, k: int, oversample: int) -> int:
    """Columns of the sketch: ``k + oversample``, capped at ``d_t`` (more would add nothing)."""
    return min(k + max(int(oversample), 0), d_t)


def next_sketch(W: Tensor) -> Tensor:
    """Re-orthonormalise ``W = E^T Q`` into the next power iteration's ``Z`` (keeps it well conditioned)."""
    return qr_pos(W)[0]


def rsvd_finish(W: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` right singular vectors of ``E`` from ``W = E^T Q``: ``(V (d x k) float64, sigma (k,))``.

    ``B = Q^T E = W^T``; the right singular vectors of ``B`` are the left ones of ``W``.
    """
    U, S, _ = torch.linalg.svd(W.to(F64), full_matrices=False)
    r = min(k, U.shape[1])
    V = complete_basis(fix_signs(U[:, :r].contiguous()), k)
    sigma = torch.cat([S[:r], torch.zeros(k - r, dtype=F64)])
    return fix_signs(V), sigma


def rsvd_right(
    E: Tensor | Sequence[Tensor],
    k: int,
    oversample: int = 10,
    power_iters: int = 2,
    seed: int = 0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[Tensor, Tensor]:
    """Randomized top-``k`` right singular vectors of ``E`` (a table or its row blocks).

    ``power_iters`` rounds of subspace iteration sharpen the spectrum's decay (error factor
    ``(sigma_{l+1}/sigma_k)^{2q+1}``); each round re-orthonormalises, so float64 keeps full accuracy.
    Exact when ``rank(E) <= k + oversample``. Returns ``(V (d x k) float64, sigma (k,))``.
    """
    blocks = split_blocks(as_table(E), chunk_rows) if isinstance(E, (Tensor, np.ndarray)) else list(E)
    d = blocks[0].shape[1]
    if not 1 <= k <= d:
        raise ConfigError(f"projection: need 1 <= d_s <= d_t for PCA, got d_s={k}, d_t={d}")
    Z = sketch_matrix(d, rsvd_sketch_cols(d, k, oversample), seed)
    for it in range(power_iters + 1):
        qs, rs = sketch_blocks(blocks, Z, chunk_rows)
        slices, _ = tsqr_combine(rs)
        W = back_project_blocks(blocks, qs, slices, chunk_rows)
        del qs
        if it < power_iters:
            Z = next_sketch(W)
    return rsvd_finish(W, k)
