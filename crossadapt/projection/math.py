"""Projection of teacher embeddings to the student's dimension: the pure math (no Ray here).

A teacher table ``E`` (``n x d_t``) becomes ``E_s = E P`` with ``P`` of shape ``d_t x d_s``:

- ``d_s < d_t``: uncentred PCA. ``P = V``, the top ``d_s`` right singular vectors of ``E``. Then
  ``E_s E_s^T`` is the best rank-``d_s`` approximation of ``E E^T`` (Eckart-Young), which is what
  interaction networks (FM, cross, attention) consume. No centring, on purpose: centring would
  preserve covariances, not the raw inner products the student's interactions see.
- ``d_s > d_t``: orthonormal expansion. ``P = Q`` with orthonormal rows (``Q Q^T = I``), so every
  inner product is kept exactly.
- ``d_s == d_t``: a copy.

``V`` is computed one of two ways, both written over *row blocks* so the distributed actors
(:mod:`crossadapt.projection.actors`) run the very same functions on their shards:

- ``gram``: ``G = E^T E`` summed in float64 over row blocks, ``eigh(G)`` in float64. One pass over
  the table, memory-bandwidth bound; exact for any ``d_t`` up to a few hundred.
- ``rsvd``: randomized SVD (Halko, Martinsson, Tropp 2011, Alg. 4.4 with subspace iteration):
  ``Y = E Z`` for a seeded Gaussian ``Z``, the QR of the tall ``Y`` by TSQR across row blocks,
  ``W = E^T Q``, re-orthonormalised between power iterations, then a small SVD of ``W``
  (``W = B^T`` with ``B = Q^T E``, so the left singular vectors of ``W`` are the right singular
  vectors of ``E``).

Signs are fixed deterministically (each basis vector has its largest-magnitude component
positive) so results do not depend on how the rows were sharded.

Public entry: :func:`project_embedding_state` (single process). Its distributed twin with the
same result is :func:`crossadapt.projection.actors.project_distributed`.

Example:
    >>> import torch
    >>> from crossadapt.config import ProjectionConfig
    >>> W = torch.randn(30, 16)
    >>> res = project_embedding_state(W, [("a", 0, 10), ("b", 10, 30)], 8, ProjectionConfig())
    >>> res.table.shape, res.reports["a"]["method"]
    (torch.Size([30, 8]), 'gram')
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from crossadapt.config import ProjectionConfig
from crossadapt.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger(__name__)

#: State-dict keys of the teacher's embedding (see crossadapt/models/embedding.py).
TABLE_KEY = "embedding.table.weight"
NUMERIC_KEY = "embedding.numeric"
#: Name under which the numeric vectors (F_num x d_t) are projected and reported.
NUMERIC_NAME = "__numeric__"
#: Rows per block when streaming over a table: 64 Ki rows x 64 dims in float64 is 32 MiB, small
#: enough to stay cache/memory friendly, large enough that BLAS runs at full speed.
DEFAULT_CHUNK_ROWS = 1 << 16
#: ...and at most this many bytes per float64 block, so wide tables (d = 1024: 512 MiB per 64 Ki
#: rows) stream in blocks of the same memory as narrow ones.
BLOCK_BYTES = 32 << 20
#: Float64 cast buffer of the Gram pass (see :meth:`GramAccumulator.add`).
CAST_BYTES = 2 << 20
#: Rows sampled per field for the distortion report (all pairs among them are compared).
DEFAULT_SAMPLE_ROWS = 2000

FieldRange = tuple[str, int, int]
F64 = torch.float64


# ---------------------------------------------------------------- small helpers


def as_table(x: Any, what: str = "table") -> Tensor:
    """``x`` (tensor or numpy array) as a 2-D CPU tensor; ``DataError`` naming ``what`` otherwise."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise DataError(f"{what}: expected a tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise DataError(f"{what}: expected a 2-D (rows, dim) table, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"{what}: expected floating point values, got {x.dtype}")
    return x.detach().cpu()


def block_rows(dim: int, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Rows per block for a table of width ``dim``: ``chunk_rows``, fewer when a float64 block of
    that many rows would exceed :data:`BLOCK_BYTES` (at least 1024)."""
    return max(1, min(chunk_rows, max(1024, BLOCK_BYTES // (8 * max(dim, 1)))))


def iter_row_blocks(E: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Tensor]:
    """Contiguous row views of ``E`` of at most ``block_rows(E.shape[1], chunk_rows)`` rows (no copies)."""
    step = block_rows(E.shape[1] if E.dim() == 2 else 1, chunk_rows)
    for i in range(0, E.shape[0], step):
        yield E[i : i + step]


def split_blocks(E: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> list[Tensor]:
    """``list(iter_row_blocks(E, chunk_rows))``, at least one (possibly empty) block."""
    blocks = list(iter_row_blocks(E, chunk_rows))
    return blocks or [E]


def iter_f64_blocks(E: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Tensor]:
    """Row blocks of the 2-D ``E`` as float64: views when ``E`` is float64 already, else casts through
    one small reused buffer (a block is valid until the next one is asked for).

    A fresh 32 MiB float64 copy per block cost as much as the products on it (page faults, memory
    traffic); a 2 MiB buffer (:data:`CAST_BYTES`) stays in cache and doubled the Gram pass.
    """
    if E.dtype == F64:
        yield from iter_row_blocks(E, chunk_rows)
        return
    n, d = E.shape
    step = min(block_rows(d, chunk_rows), max(256, CAST_BYTES // (8 * max(d, 1))))
    buf = torch.empty(min(step, n), d, dtype=F64)
    for i in range(0, n, step):
        src = E[i : i + step]
        b = buf[: src.shape[0]]
        b.copy_(src)
        yield b


def squared_norm(E: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> float:
    """``||E||_F^2`` summed in float64 (chunked, so a float32 table is never copied whole)."""
    E = E if E.dim() == 2 else E.reshape(-1, 1)
    return sum(float(torch.dot(b.reshape(-1), b.reshape(-1))) for b in iter_f64_blocks(E, chunk_rows))


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


def _qr_pos(A: Tensor) -> tuple[Tensor, Tensor]:
    """Reduced QR with ``diag(R) >= 0``: unique for full-rank ``A``, whatever LAPACK's convention."""
    Q, R = torch.linalg.qr(A, mode="reduced")
    m = min(R.shape)
    d = torch.sign(torch.diagonal(R)[:m])
    d[d == 0] = 1
    return Q * d, R * d[:, None]


def _complete_basis(U: Tensor, k: int) -> Tensor:
    """Extend orthonormal columns ``U`` (d x r, r < k <= d) to ``k`` orthonormal columns.

    Needed when a field has fewer rows than ``d_s``: the extra directions carry no energy
    (``E v = 0``), any orthonormal completion is correct; QR of ``[U, I]`` gives a deterministic one.
    """
    d, r = U.shape
    if r >= k:
        return U[:, :k]
    Q, _ = _qr_pos(torch.cat([U, torch.eye(d, dtype=U.dtype)], dim=1))
    # Q[:, :r] equals U (positive diagonal of R, U orthonormal); keep U itself to avoid rounding.
    return torch.cat([U, Q[:, r:k]], dim=1)


# ---------------------------------------------------------------- exact path: Gram + eigh


class GramAccumulator:
    """Streaming ``G = sum_blocks B^T B`` in float64 over row blocks (or over shards' partial Grams).

    Example:
        >>> acc = GramAccumulator(16)
        >>> for block in iter_row_blocks(E, 4096):
        ...     acc.add(block)
        >>> acc.gram.shape, acc.rows
        (torch.Size([16, 16]), E.shape[0])
    """

    def __init__(self, dim: int, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self.gram = torch.zeros(dim, dim, dtype=F64)
        self.rows = 0
        self.chunk_rows = chunk_rows

    def add(self, block: Tensor) -> "GramAccumulator":
        """Add ``block^T block`` (float64 products, so a float32 table loses nothing)."""
        if block.dim() != 2 or block.shape[1] != self.gram.shape[0]:
            raise DataError(f"gram: expected blocks of shape (rows, {self.gram.shape[0]}), got {tuple(block.shape)}")
        for b in iter_f64_blocks(block, self.chunk_rows):
            self.gram.addmm_(b.T, b)
        self.rows += int(block.shape[0])
        return self

    def merge(self, gram: Tensor, rows: int) -> "GramAccumulator":
        """Add a partial Gram computed elsewhere (e.g. by a projection actor) over ``rows`` rows."""
        self.gram += gram.to(F64)
        self.rows += int(rows)
        return self


def gram(E: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Tensor:
    """``E^T E`` (d x d) accumulated in float64 over row blocks of ``chunk_rows``."""
    E = as_table(E, "gram input")
    return GramAccumulator(E.shape[1], chunk_rows).add(E).gram


def basis_from_gram(G: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` eigenvectors of the Gram ``G = E^T E`` and the matching singular values of ``E``.

    Returns ``(V, sigma)``: ``V`` (d x k) float64, orthonormal, sign-fixed; ``sigma`` (k,) descending,
    ``sigma_i = sqrt(max(lambda_i, 0))`` (tiny negative eigenvalues are rounding noise).
    """
    d = G.shape[0]
    if not 1 <= k <= d:
        raise ConfigError(f"projection: need 1 <= d_s <= d_t for PCA, got d_s={k}, d_t={d}")
    G = G.to(F64)
    G = (G + G.T) / 2  # the two triangles of a gemm result may differ in the last bit
    w, U = torch.linalg.eigh(G)  # ascending
    w, U = w.flip(0), U.flip(1)
    return fix_signs(U[:, :k].contiguous()), w[:k].clamp_min(0).sqrt()


# ---------------------------------------------------------------- expansion


def expansion_matrix(d_t: int, d_s: int, seed: int) -> Tensor:
    """``Q`` (d_t x d_s) float64 with orthonormal rows (``Q Q^T = I_{d_t}``) from a seeded Gaussian.

    ``A`` (d_s x d_t) ~ N(0, 1) seeded, ``A = q r`` (q: d_s x d_t, orthonormal columns), ``Q = q^T``.
    ``diag(r) > 0`` makes ``q`` unique (and Haar distributed), independent of the LAPACK build.
    """
    if d_s < d_t:
        raise ConfigError(f"projection: expansion needs d_s >= d_t, got d_s={d_s}, d_t={d_t}")
    g = torch.Generator().manual_seed(int(seed))
    A = torch.randn(d_s, d_t, generator=g, dtype=F64)
    q, _ = _qr_pos(A)
    return q.T.contiguous()


# ---------------------------------------------------------------- randomized path: sketch + TSQR


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
    Q2, R = _qr_pos(torch.cat([r.to(F64) for r in rs], dim=0))
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
    local = [_qr_pos(b.to(F64)) for b in blocks]
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
        q, r = _qr_pos(Y)
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
    return _qr_pos(W)[0]


def rsvd_finish(W: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` right singular vectors of ``E`` from ``W = E^T Q``: ``(V (d x k) float64, sigma (k,))``.

    ``B = Q^T E = W^T``; the right singular vectors of ``B`` are the left ones of ``W``.
    """
    U, S, _ = torch.linalg.svd(W.to(F64), full_matrices=False)
    r = min(k, U.shape[1])
    V = _complete_basis(fix_signs(U[:, :r].contiguous()), k)
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


# ---------------------------------------------------------------- choosing and applying P


def choose_method(d_t: int, d_s: int, cfg: ProjectionConfig) -> str:
    """``"copy"``, ``"qr_expand"``, ``"gram"`` or ``"rsvd"`` for a ``d_t -> d_s`` projection.

    ``cfg.method == "auto"`` takes ``gram`` below ``cfg.rsvd_min_dim`` (the d x d eigh is cheap and
    exact there) and ``rsvd`` from it on.
    """
    if d_s < 1:
        raise ConfigError(f"projection: student dimension d_s must be >= 1, got {d_s}")
    if d_s == d_t:
        return "copy"
    if d_s > d_t:
        return "qr_expand"
    if cfg.method == "auto":
        return "gram" if d_t < cfg.rsvd_min_dim else "rsvd"
    if cfg.method not in ("gram", "rsvd"):
        raise ConfigError(f"projection.method: must be one of ['auto', 'gram', 'rsvd'], got {cfg.method!r}")
    return cfg.method


def projection_basis(
    E: Tensor, d_s: int, cfg: ProjectionConfig | None = None, *, name: str = "table", chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[Tensor, dict[str, Any]]:
    """``P`` (d_t x d_s) in float64 for table ``E`` and ``info`` (method, d_t, d_s, rows, sigma).

    The float64 form is what :func:`apply_projection` uses; :func:`projection_matrix` is its float32 copy.
    """
    cfg = cfg or ProjectionConfig()
    E = as_table(E, name)
    n, d_t = E.shape
    method = choose_method(d_t, d_s, cfg)
    log.info("projection %s: method=%s d_t=%d -> d_s=%d rows=%d", name, method, d_t, d_s, n)
    info: dict[str, Any] = {"method": method, "d_t": d_t, "d_s": d_s, "rows": n}
    if method == "copy":
        return torch.eye(d_t, dtype=F64), info
    if method == "qr_expand":
        return expansion_matrix(d_t, d_s, cfg.seed), info
    if method == "gram":
        G = gram(E, chunk_rows)
        V, sigma = basis_from_gram(G, d_s)
        info["gram_trace"] = float(torch.trace(G))  # ||E||^2, so the report needs no extra pass
    else:
        V, sigma = rsvd_right(split_blocks(E, chunk_rows), d_s, cfg.oversample, cfg.power_iters, cfg.seed, chunk_rows)
    info["singular_values"] = [float(s) for s in sigma]
    return V, info


def projection_matrix(
    E: Tensor, d_s: int, cfg: ProjectionConfig | None = None, *, name: str = "table", chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[Tensor, dict[str, Any]]:
    """``P`` (d_t x d_s) float32 with ``E_s = E P``, and ``info`` (method, d_t, d_s, rows[, singular_values]).

    Example:
        >>> P, info = projection_matrix(torch.randn(1000, 32), 8)
        >>> P.shape, info["method"]
        (torch.Size([32, 8]), 'gram')
    """
    P, info = projection_basis(E, d_s, cfg, name=name, chunk_rows=chunk_rows)
    return P.to(torch.float32), info


def iter_projected_blocks(E: Tensor, P: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[tuple[int, Tensor]]:
    """``(first row, float32 block of E P)`` over row blocks of ``E``, through one reused buffer
    (a block is valid until the next one is asked for), so streaming a table to a file or a
    network needs memory for one block only.

    A float32 table is multiplied in float32 (``P`` is orthonormal, so the rounding is that of the
    float32 result itself, ~1e-7 relative); other dtypes go through float64. An identity ``P``
    yields the rows themselves, so ``d_s == d_t`` is bit-exact.
    """
    n, d_t = E.shape
    if P.shape[0] != d_t:
        raise DataError(f"projection: P has {P.shape[0]} rows, table has dim {d_t}")
    step = block_rows(d_t, chunk_rows)
    if P.shape[1] == d_t and torch.equal(P, torch.eye(d_t, dtype=P.dtype)):
        for i in range(0, n, step):
            yield i, E[i : i + step].to(torch.float32)
        return
    f32 = E.dtype == torch.float32
    P = P.to(torch.float32 if f32 else F64)
    buf = torch.empty(min(step, n), P.shape[1], dtype=torch.float32)
    for i in range(0, n, step):
        blk, o = E[i : i + step], buf[: min(step, n - i)]
        if f32:
            torch.mm(blk, P, out=o)
        else:
            o.copy_(blk.to(F64) @ P)
        yield i, o


def apply_projection(E: Tensor, P: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS, out: Tensor | None = None) -> Tensor:
    """``E P`` as float32, returned (or written into ``out``); see :func:`iter_projected_blocks`."""
    if out is None:
        out = torch.empty(E.shape[0], P.shape[1], dtype=torch.float32)
    for i, blk in iter_projected_blocks(E, P, chunk_rows):
        out[i : i + blk.shape[0]] = blk
    return out


# ---------------------------------------------------------------- reports


def sample_indices(rows: int, name: str, seed: int, max_rows: int = DEFAULT_SAMPLE_ROWS) -> Tensor:
    """Sorted row indices (within a field) used for its report: all rows when ``rows <= max_rows``,
    else a seeded sample without replacement. Seeded by ``(seed, crc32(name))`` so every process
    (single or distributed) picks the same rows."""
    if rows <= max_rows:
        return torch.arange(rows)
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])
    return torch.from_numpy(np.sort(rng.choice(rows, size=max_rows, replace=False)).astype(np.int64))


def _mean_offdiag(C: Tensor) -> float:
    m = C.shape[0]
    return float((C.sum() - torch.diagonal(C).sum()) / (m * (m - 1)))


def distortion_report(before: Tensor, after: Tensor) -> dict[str, Any]:
    """Inner-product and cosine distortion between sampled rows before (m x d_t) and after (m x d_s).

    - ``inner_product_rel_error``: ``||S S^T - S_s S_s^T||_F / ||S S^T||_F`` (0 for an all-zero sample);
    - ``cosine_before_mean`` / ``cosine_after_mean``: mean cosine over the pairs ``i < j``
      (a zero row has cosine 0 with everything); ``None`` with fewer than 2 rows;
    - ``cosine_abs_change_mean``: mean ``|cos_before - cos_after|`` over the same pairs (the two
      means can agree while single pairs move, this cannot hide that).
    """
    S, Ss = before.to(F64), after.to(F64)
    G, Gs = S @ S.T, Ss @ Ss.T
    denom = float(torch.linalg.norm(G))
    err = float(torch.linalg.norm(G - Gs)) / denom if denom > 0 else 0.0
    out: dict[str, Any] = {"sample_rows": int(S.shape[0]), "inner_product_rel_error": err}
    if S.shape[0] < 2:
        out.update(cosine_before_mean=None, cosine_after_mean=None, cosine_abs_change_mean=None)
        return out

    def cos(M: Tensor) -> Tensor:
        nrm = torch.sqrt(torch.diagonal(M)).clamp_min(1e-300)
        return M / nrm[:, None] / nrm[None, :]

    C, Cs = cos(G), cos(Gs)
    out["cosine_before_mean"] = _mean_offdiag(C)
    out["cosine_after_mean"] = _mean_offdiag(Cs)
    out["cosine_abs_change_mean"] = _mean_offdiag((C - Cs).abs())
    return out


def make_report(
    info: Mapping[str, Any], before: Tensor, after: Tensor, energy_before: float, energy_after: float
) -> dict[str, Any]:
    """The per-table report: ``info`` + :func:`distortion_report` + ``energy_kept = ||E_s||^2 / ||E||^2``
    (1.0 for an all-zero table: nothing to lose). JSON-safe (plain floats, ints, strings, None)."""
    rep = {k: info[k] for k in ("method", "d_t", "d_s", "rows")}
    rep.update(distortion_report(before, after))
    rep["energy_kept"] = energy_after / energy_before if energy_before > 0 else 1.0
    if "singular_values" in info:
        rep["singular_values"] = list(info["singular_values"])
    return rep


# ---------------------------------------------------------------- whole tables


@dataclass
class ProjectionResult:
    """Projected teacher embedding.

    Attributes:
        table: (n, d_s) float32, the projected ``embedding.table.weight`` (fields at the same rows).
        numeric: (F_num, d_s) float32 projected ``embedding.numeric``, or ``None``.
        reports: per field name (and ``"__numeric__"``) a JSON-safe dict: method, d_t, d_s, rows,
            sample_rows, inner_product_rel_error, cosine_before_mean, cosine_after_mean,
            cosine_abs_change_mean, energy_kept[, singular_values].
        matrices: per name the float32 ``P`` (d_t x d_s) used.
    """

    table: Tensor
    numeric: Tensor | None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    matrices: dict[str, Tensor] = field(default_factory=dict)


def check_field_ranges(field_ranges: Sequence[Sequence[Any]], n_rows: int, what: str = TABLE_KEY) -> list[FieldRange]:
    """Validate ``[(name, start, end)]``: non-empty, in bounds, disjoint, covering all ``n_rows`` rows.

    Full cover is required because rows outside every field would be left undefined in the output.
    Returns the ranges as ``(str, int, int)`` in the given order.
    """
    out: list[FieldRange] = []
    for i, fr in enumerate(field_ranges):
        try:
            name, start, end = fr
        except (TypeError, ValueError):
            raise DataError(f"{what}: field range #{i} must be (name, start, end), got {fr!r}") from None
        name, start, end = str(name), int(start), int(end)
        if name == NUMERIC_NAME:
            raise DataError(f"{what}: field name {NUMERIC_NAME!r} is reserved for the numeric vectors")
        if not 0 <= start < end <= n_rows:
            raise DataError(f"{what}: field {name!r} rows [{start}, {end}) must be non-empty and within [0, {n_rows})")
        out.append((name, start, end))
    names = [n for n, _, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{what}: duplicate field names {dup}")
    pos = 0
    for name, start, end in sorted(out, key=lambda r: r[1]):
        if start != pos:
            kind = "overlaps the previous field" if start < pos else f"leaves rows [{pos}, {start}) in no field"
            raise DataError(f"{what}: field {name!r} starting at row {start} {kind}")
        pos = end
    if pos != n_rows:
        raise DataError(f"{what}: rows [{pos}, {n_rows}) belong to no field")
    return out


def project_table(
    E: Tensor,
    d_s: int,
    cfg: ProjectionConfig | None = None,
    *,
    name: str = "table",
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Project one table: ``(E_s (n x d_s) float32, P (d_t x d_s) float32, report)``."""
    cfg = cfg or ProjectionConfig()
    E = as_table(E, name)
    P, info = projection_basis(E, d_s, cfg, name=name, chunk_rows=chunk_rows)
    Es = apply_projection(E, P, chunk_rows, out=out)
    idx = sample_indices(E.shape[0], name, cfg.seed, sample_rows)
    before, after = table_energies(info, lambda: squared_norm(E, chunk_rows), lambda: squared_norm(Es, chunk_rows))
    rep = make_report(info, E[idx], Es[idx], before, after)
    return Es, P.to(torch.float32), rep


def table_energies(info: Mapping[str, Any], norm_before, norm_after) -> tuple[float, float]:
    """``(||E||^2, ||E_s||^2)`` with as few passes over the table as the method allows.

    Gram path: ``trace(G)`` and ``sum(sigma_k^2) = trace(V^T G V)``, no pass at all. Copy and
    orthonormal expansion keep every norm (``Q Q^T = I``): one pass. Randomized SVD: two passes.
    ``norm_before`` / ``norm_after`` are the callables that make those passes when needed.
    """
    if info["method"] == "gram":
        return float(info["gram_trace"]), float(sum(s * s for s in info["singular_values"]))
    before = float(norm_before())
    return (before, before) if info["method"] in ("copy", "qr_expand") else (before, float(norm_after()))


def _unpack_state(table: Any, numeric: Any) -> tuple[Tensor, Tensor | None]:
    """Accept a table tensor, or a state dict / checkpoint dict holding ``embedding.table.weight``."""
    if isinstance(table, Mapping):
        sd = table["state_dict"] if isinstance(table.get("state_dict"), Mapping) else table
        if TABLE_KEY not in sd:
            raise CheckpointError(f"state dict has no {TABLE_KEY!r} (keys: {sorted(sd)[:10]}...)")
        if numeric is None:
            numeric = sd.get(NUMERIC_KEY)
        table = sd[TABLE_KEY]
    return as_table(table, TABLE_KEY), (None if numeric is None else as_table(numeric, NUMERIC_KEY))


def project_embedding_state(
    table: Tensor | np.ndarray | Mapping[str, Any],
    field_ranges: Sequence[Sequence[Any]],
    d_s: int,
    cfg: ProjectionConfig | None = None,
    numeric: Tensor | np.ndarray | None = None,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ProjectionResult:
    """Project the teacher's embedding to dimension ``d_s`` in this process, one ``P`` per field.

    Args:
        table: ``embedding.table.weight`` (n x d_t), or a state dict / ``{"state_dict": ...}``
            checkpoint dict holding it (then ``embedding.numeric`` is taken from it too).
        field_ranges: ``[(name, start, end)]`` rows of each field (``FeatureEmbedding.field_ranges()``).
        d_s: the student's embedding dimension.
        cfg: method, oversampling, power iterations, ``rsvd_min_dim``, seed.
        numeric: ``embedding.numeric`` (F_num x d_t) or ``None``; projected as ``"__numeric__"``.
        sample_rows: rows per field compared pairwise in the report.

    Why one ``P`` per field: each field's vocabulary has its own spectrum; a shared basis would
    spend the ``d_s`` directions on the fields with the largest norms. Expansion (``d_s > d_t``)
    uses the same seeded ``Q`` for every field, so cross-field inner products are kept exactly too.

    Example:
        >>> res = project_embedding_state(model.state_dict(), model.embedding.field_ranges(), 32, cfg.projection)
        >>> student.embedding.table.weight.data.copy_(res.table)
    """
    cfg = cfg or ProjectionConfig()
    E, num = _unpack_state(table, numeric)
    n, d_t = E.shape
    ranges = check_field_ranges(field_ranges, n)
    out = torch.empty(n, d_s, dtype=torch.float32)
    res = ProjectionResult(table=out, numeric=None)
    for name, start, end in ranges:
        _, P, rep = project_table(
            E[start:end], d_s, cfg, name=name, sample_rows=sample_rows, chunk_rows=chunk_rows, out=out[start:end]
        )
        res.reports[name], res.matrices[name] = rep, P
    res.numeric = project_numeric(num, d_t, d_s, cfg, res, sample_rows=sample_rows)
    return res


def project_numeric(
    num: Tensor | None, d_t: int, d_s: int, cfg: ProjectionConfig, res: ProjectionResult, *, sample_rows: int = DEFAULT_SAMPLE_ROWS
) -> Tensor | None:
    """Project ``embedding.numeric`` as one more table named ``"__numeric__"`` (report and P into ``res``).

    An empty (0 x d_t) table gives an empty (0 x d_s) one and no report.
    """
    if num is None:
        return None
    num = as_table(num, NUMERIC_KEY)
    if num.shape[1] != d_t:
        raise DataError(f"{NUMERIC_KEY}: dim {num.shape[1]} differs from {TABLE_KEY} dim {d_t}")
    if num.shape[0] == 0:
        return torch.empty(0, d_s, dtype=torch.float32)
    Ns, P, rep = project_table(num, d_s, cfg, name=NUMERIC_NAME, sample_rows=sample_rows)
    res.reports[NUMERIC_NAME], res.matrices[NUMERIC_NAME] = rep, P
    return Ns
