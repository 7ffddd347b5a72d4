"""The exact path: ``G = E^T E`` summed in float64 over row blocks, then ``eigh(G)`` in float64.

One pass over the table, memory-bandwidth bound; exact for any ``d_t`` up to a few hundred. Grams
add: the Gram of a stacked table is the sum of its parts' Grams, which is how shards (actors)
and fields (a basis shared by all fields) are combined.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossadapt.errors import ConfigError, DataError
from crossadapt.projection.blocks import DEFAULT_CHUNK_ROWS, F64, as_table, iter_f64_blocks
from crossadapt.projection.orthonormal import fix_signs


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


def energies_from_gram(G: Tensor, P: Tensor) -> tuple[float, float]:
    """``(||E||^2, ||E P||^2) = (trace(G), trace(P^T G P))`` without another pass over ``E``."""
    G, P = G.to(F64), P.to(F64)
    return float(torch.trace(G)), float(((G @ P) * P).sum())
