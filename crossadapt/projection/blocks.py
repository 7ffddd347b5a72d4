"""A table as row blocks: validation, block sizes, float64 streaming and squared norms.

Every pass of the projection (Gram, sketch, apply, norms) walks a table in row blocks so that
memory stays at one block whatever the table's size, and so the distributed actors run the very
same functions on their shards.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from crossadapt.errors import DataError

F64 = torch.float64
#: Rows per block when streaming over a table: 64 Ki rows x 64 dims in float64 is 32 MiB, small
#: enough to stay cache/memory friendly, large enough that BLAS runs at full speed.
DEFAULT_CHUNK_ROWS = 1 << 16
#: ...and at most this many bytes per float64 block, so wide tables (d = 1024: 512 MiB per 64 Ki
#: rows) stream in blocks of the same memory as narrow ones.
BLOCK_BYTES = 32 << 20
#: Float64 cast buffer of the Gram pass (see :func:`iter_f64_blocks`).
CAST_BYTES = 2 << 20


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
