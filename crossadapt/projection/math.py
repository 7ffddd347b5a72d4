"""Projection of teacher embeddings to the student's dimension, in this process (no Ray here).

A teacher table ``E`` (``n x d_t``) becomes ``E_s = E P`` with ``P`` of shape ``d_t x d_s``:

- ``d_s < d_t``: uncentred PCA. ``P = V``, the top ``d_s`` right singular vectors, of each field
  (``projection.basis: per_field``) or of all fields stacked (``shared``, one ``V`` for all; see
  :mod:`crossadapt.projection.bases`). ``E_s E_s^T`` is then the best rank-``d_s`` approximation
  of ``E E^T`` (Eckart-Young), which is what interaction networks (FM, cross, attention) consume.
  No centring, on purpose: centring would preserve covariances, not the raw inner products the
  student's interactions see.
- ``d_s > d_t``: orthonormal expansion. ``P = Q`` with orthonormal rows (``Q Q^T = I``), one ``Q``
  for all fields, so every inner product is kept exactly.
- ``d_s == d_t``: a copy.

``V`` comes from the exact path (:mod:`~crossadapt.projection.gram`: Gram summed in float64,
``eigh``) or the randomized one (:mod:`~crossadapt.projection.rsvd`: sketch, TSQR, small SVD),
both written over row blocks so the distributed actors (:mod:`crossadapt.projection.actors`) run
the very same functions on their shards. Signs are fixed deterministically (each basis vector has
its largest-magnitude component positive) so results do not depend on how the rows were sharded.
Every projection is reported (:mod:`~crossadapt.projection.report`): inner-product errors within
and across fields, cosines, energy kept.

Public entry: :func:`project_embedding_state` (single process). Its distributed twin with the
same result is :func:`crossadapt.projection.actors.project_distributed`.

Example:
    >>> import torch
    >>> from crossadapt.config import ProjectionConfig
    >>> W = torch.randn(30, 16)
    >>> res = project_embedding_state(W, [("a", 0, 10), ("b", 10, 30)], 8, ProjectionConfig())
    >>> res.table.shape, res.reports["a"]["method"], res.summary["basis"]
    (torch.Size([30, 8]), 'gram', 'shared')
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from crossadapt.config import ProjectionConfig
from crossadapt.errors import CheckpointError, DataError
from crossadapt.projection.bases import (
    ALL_FIELDS,
    FittedBases,
    basis_groups,
    bases_from_grams,
    bases_from_groups,
    check_basis,
    choose_method,
    fixed_bases,
)
from crossadapt.projection.blocks import DEFAULT_CHUNK_ROWS, F64, as_table, block_rows, split_blocks, squared_norm
from crossadapt.projection.gram import gram
from crossadapt.projection.report import DEFAULT_CROSS_ROWS, DEFAULT_SAMPLE_ROWS, build_reports, sample_indices
from crossadapt.projection.rsvd import rsvd_right

log = logging.getLogger(__name__)

#: State-dict keys of the teacher's embedding (see crossadapt/models/embedding.py).
TABLE_KEY = "embedding.table.weight"
NUMERIC_KEY = "embedding.numeric"
#: Name under which the numeric vectors (F_num x d_t) are projected and reported.
NUMERIC_NAME = "__numeric__"

FieldRange = tuple[str, int, int]


# ---------------------------------------------------------------- bases


def fit_bases(tables: Mapping[str, Tensor], d_s: int, cfg: ProjectionConfig | None = None,
              chunk_rows: int = DEFAULT_CHUNK_ROWS) -> FittedBases:
    """The ``P`` of every (non-empty, same-width) table in ``tables`` for ``d_t -> d_s``.

    Gram path: one Gram per table (a shared basis sums them); randomized path: one randomized SVD
    per group, over the row blocks of all its tables.
    """
    cfg = cfg or ProjectionConfig()
    names = list(tables)
    d_t = int(next(iter(tables.values())).shape[1])
    method, basis = choose_method(d_t, d_s, cfg), check_basis(cfg)
    log.info("projection: method=%s basis=%s d_t=%d -> d_s=%d, %d tables, %d rows", method,
             basis if method in ("gram", "rsvd") else "shared", d_t, d_s, len(names),
             sum(int(t.shape[0]) for t in tables.values()))
    if method in ("copy", "qr_expand"):
        return fixed_bases(method, names, d_t, d_s, cfg.seed)
    if method == "gram":
        return bases_from_grams({n: gram(t, chunk_rows) for n, t in tables.items()}, d_s, basis)
    groups = basis_groups(names, basis)
    found = {
        g: rsvd_right([b for m in members for b in split_blocks(tables[m], chunk_rows)], d_s, cfg.oversample,
                      cfg.power_iters, cfg.seed, chunk_rows)
        for g, members in groups.items()
    }
    return bases_from_groups(method, basis, groups, found, d_t, d_s)


def projection_basis(
    E: Tensor, d_s: int, cfg: ProjectionConfig | None = None, *, name: str = "table", chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[Tensor, dict[str, Any]]:
    """``P`` (d_t x d_s) in float64 for one table ``E`` and ``info`` (method, basis, d_t, d_s, rows[, singular_values]).

    The float64 form is what :func:`apply_projection` uses; :func:`projection_matrix` is its float32 copy.
    """
    E = as_table(E, name)
    fb = fit_bases({name: E}, d_s, cfg, chunk_rows)
    return fb.matrices[name], fb.info(name, E.shape[0])


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


# ---------------------------------------------------------------- applying P


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


# ---------------------------------------------------------------- whole tables


@dataclass
class ProjectionResult:
    """Projected teacher embedding.

    Attributes:
        table: (n, d_s) float32, the projected ``embedding.table.weight`` (fields at the same rows).
        numeric: (F_num, d_s) float32 projected ``embedding.numeric``, or ``None``.
        reports: per field name (and ``"__numeric__"``) a JSON-safe dict: method, basis, d_t, d_s,
            rows, sample_rows, inner_product_rel_error (within the field), cross_field_rel_error
            (pairs of this field's rows with other fields' rows; ``None`` with one table),
            cosine_before_mean, cosine_after_mean, cosine_abs_change_mean, energy_kept
            [, singular_values when the field has its own basis].
        matrices: per name the float32 ``P`` (d_t x d_s) used (one tensor for all with a shared basis).
        summary: the whole projection: method, basis, d_t, d_s, tables, rows, within_field_rel_error
            and cross_field_rel_error on one pooled sample, cross_sample_rows, energy_kept
            [, singular_values of the stacked table for a shared basis].
    """

    table: Tensor
    numeric: Tensor | None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    matrices: dict[str, Tensor] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


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
        if name in (NUMERIC_NAME, ALL_FIELDS):
            raise DataError(f"{what}: field name {name!r} is reserved (numeric vectors, shared basis)")
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


def check_numeric(num: Any, d_t: int) -> Tensor | None:
    """``embedding.numeric`` as a table of width ``d_t`` (or ``None``); ``DataError`` otherwise."""
    if num is None:
        return None
    num = as_table(num, NUMERIC_KEY)
    if num.shape[1] != d_t:
        raise DataError(f"{NUMERIC_KEY}: dim {num.shape[1]} differs from {TABLE_KEY} dim {d_t}")
    return num


def project_tables(
    tables: Mapping[str, Tensor],
    d_s: int,
    cfg: ProjectionConfig | None = None,
    *,
    outs: Mapping[str, Tensor] | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    cross_rows: int = DEFAULT_CROSS_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[dict[str, Tensor], FittedBases, dict[str, dict[str, Any]], dict[str, Any]]:
    """Project every (non-empty) table in ``tables`` with the bases of ``cfg`` (shared or per table).

    Returns ``(projected tables (float32; written into ``outs[name]`` when given), bases, reports,
    summary)``; see :class:`ProjectionResult` for the reports.
    """
    cfg = cfg or ProjectionConfig()
    fb = fit_bases(tables, d_s, cfg, chunk_rows)
    projected, samples, energies = {}, {}, {}
    for name, E in tables.items():
        Es = apply_projection(E, fb.matrices[name], chunk_rows, out=None if outs is None else outs[name])
        projected[name] = Es
        idx = sample_indices(E.shape[0], name, cfg.seed, sample_rows)
        samples[name] = (E[idx], Es[idx])
        energies[name] = fb.energy(name, lambda: squared_norm(E, chunk_rows), lambda: squared_norm(Es, chunk_rows))
    infos = {name: fb.info(name, E.shape[0]) for name, E in tables.items()}
    reports, summary = build_reports(infos, samples, energies, fb.summary_info(), seed=cfg.seed, cross_rows=cross_rows)
    return projected, fb, reports, summary


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
    """Project one table on its own basis: ``(E_s (n x d_s) float32, P (d_t x d_s) float32, report)``
    (``cross_field_rel_error`` is ``None``: there is no other field)."""
    E = as_table(E, name)
    projected, fb, reports, _ = project_tables({name: E}, d_s, cfg, outs=None if out is None else {name: out},
                                               sample_rows=sample_rows, chunk_rows=chunk_rows)
    return projected[name], fb.matrices[name].to(torch.float32), reports[name]


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
    cross_rows: int = DEFAULT_CROSS_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ProjectionResult:
    """Project the teacher's embedding to dimension ``d_s`` in this process.

    Args:
        table: ``embedding.table.weight`` (n x d_t), or a state dict / ``{"state_dict": ...}``
            checkpoint dict holding it (then ``embedding.numeric`` is taken from it too).
        field_ranges: ``[(name, start, end)]`` rows of each field (``FeatureEmbedding.field_ranges()``).
        d_s: the student's embedding dimension.
        cfg: method, basis (shared or per field), oversampling, power iterations, ``rsvd_min_dim``, seed.
        numeric: ``embedding.numeric`` (F_num x d_t) or ``None``; projected as one more table named
            ``"__numeric__"`` (numeric fields interact with the categorical ones like any field).
        sample_rows: rows per field compared pairwise in the within-field report.
        cross_rows: rows pooled over all tables for the cross-field report.

    Example:
        >>> res = project_embedding_state(model.state_dict(), model.embedding.field_ranges(), 32, cfg.projection)
        >>> student.embedding.table.weight.data.copy_(res.table)
    """
    cfg = cfg or ProjectionConfig()
    E, num = _unpack_state(table, numeric)
    n, d_t = E.shape
    ranges = check_field_ranges(field_ranges, n)
    num = check_numeric(num, d_t)
    out = torch.empty(n, d_s, dtype=torch.float32)
    tables = {name: E[start:end] for name, start, end in ranges}
    outs = {name: out[start:end] for name, start, end in ranges}
    numeric_out = None if num is None else torch.empty(num.shape[0], d_s, dtype=torch.float32)
    if num is not None and num.shape[0] > 0:  # an empty (0 x d_t) table gives an empty one, no report
        tables[NUMERIC_NAME], outs[NUMERIC_NAME] = num, numeric_out
    _, fb, reports, summary = project_tables(tables, d_s, cfg, outs=outs, sample_rows=sample_rows,
                                             cross_rows=cross_rows, chunk_rows=chunk_rows)
    return ProjectionResult(table=out, numeric=numeric_out, reports=reports, summary=summary,
                            matrices=float32_matrices(fb))


def float32_matrices(fb: FittedBases) -> dict[str, Tensor]:
    """``{table: float32 P}``, one float32 tensor per distinct ``P`` (a shared basis is converted once)."""
    cache: dict[int, Tensor] = {}
    return {name: cache.setdefault(id(P), P.to(torch.float32)) for name, P in fb.matrices.items()}
