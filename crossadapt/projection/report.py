"""What a projection did to the geometry: inner-product errors within and across fields, cosines, energy.

Interaction networks (FM, bilinear, attention, cross) consume inner products between the rows of
one field and between rows of *different* fields, so both are measured, on seeded row samples that
every process (single or distributed) picks the same way:

- within a field: ``inner_product_rel_error`` ``||S S^T - S_s S_s^T||_F / ||S S^T||_F`` over the
  field's sampled rows ``S`` (before) and ``S_s`` (after), with the cosine figures;
- across fields: ``cross_field_rel_error``, the same ratio over the pairs (row of this field, row
  of any other field) of a pooled sample that takes about ``cross_rows / tables`` rows from every
  table (one row per field is what one example feeds the interactions, so fields weigh equally);
- the share of energy kept, ``||E_s||^2 / ||E||^2``.

All products and sums are float64 on the float32 rows actually written.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from crossadapt.projection.blocks import F64

#: Rows sampled per field for the within-field report (all pairs among them are compared).
DEFAULT_SAMPLE_ROWS = 2000
#: Rows pooled over all tables for the cross-field report (about this many / tables from each).
DEFAULT_CROSS_ROWS = 4000
#: Rows of the pooled sample multiplied against all of it at once (512 x 4000 float64: 16 MiB).
_CROSS_BLOCK = 512


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


def _ratio(err_sq: float, ref_sq: float) -> float:
    """``sqrt(err / ref)``; 0 for an all-zero reference (nothing there to distort)."""
    return math.sqrt(err_sq / ref_sq) if ref_sq > 0 else 0.0


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


def cross_field_errors(
    samples: Mapping[str, tuple[Tensor, Tensor]], seed: int, cross_rows: int = DEFAULT_CROSS_ROWS
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Inner-product errors on a pooled sample of all tables, split into same-table and cross-table pairs.

    ``samples[name] = (rows before, rows after)`` (each table's report sample). From each table
    about ``cross_rows / len(samples)`` of them are drawn (seeded by ``(seed, name)``), stacked to
    ``X`` (before) and ``Y`` (after), and ``D = X X^T - Y Y^T`` is formed block by block (no
    ``M x M`` matrix is held, no difference of large sums is taken).

    Returns ``(per_table, pooled)``: ``per_table[name]`` is the relative error over the pairs
    (row of ``name``, row of another table), ``None`` when there is no other table; ``pooled`` has
    ``within_field_rel_error`` (same-table pairs, the diagonal included),
    ``cross_field_rel_error`` (all cross-table pairs, ``None`` with one table) and
    ``cross_sample_rows``.
    """
    names = [n for n, (b, _) in samples.items() if b.shape[0] > 0]
    per_table = max(1, int(cross_rows) // max(len(names), 1))
    xs, ys, bounds, pos = [], [], [], 0
    for name in names:
        before, after = samples[name]
        idx = sample_indices(before.shape[0], f"{name}/cross", seed, per_table)
        xs.append(before[idx].to(F64))
        ys.append(after[idx].to(F64))
        bounds.append((pos, pos + len(idx)))
        pos += len(idx)
    per: dict[str, float | None] = {n: None for n in samples}
    pooled: dict[str, Any] = {"within_field_rel_error": 0.0, "cross_field_rel_error": None, "cross_sample_rows": pos}
    if not names:
        return per, pooled
    X, Y = torch.cat(xs), torch.cat(ys)
    # per table: [within err^2, within ref^2, cross err^2, cross ref^2]
    sq = torch.zeros(len(names), 4, dtype=F64)
    for i, (a, b) in enumerate(bounds):
        for r in range(a, b, _CROSS_BLOCK):
            G = X[r : min(r + _CROSS_BLOCK, b)] @ X.T
            D2 = (G - Y[r : min(r + _CROSS_BLOCK, b)] @ Y.T).square()
            G2 = G.square()
            sq[i, 0] += D2[:, a:b].sum()
            sq[i, 1] += G2[:, a:b].sum()
            sq[i, 2] += D2[:, :a].sum() + D2[:, b:].sum()
            sq[i, 3] += G2[:, :a].sum() + G2[:, b:].sum()
    tot = sq.sum(0).tolist()
    pooled["within_field_rel_error"] = _ratio(tot[0], tot[1])
    if len(names) > 1:
        pooled["cross_field_rel_error"] = _ratio(tot[2], tot[3])
        for i, name in enumerate(names):
            per[name] = _ratio(float(sq[i, 2]), float(sq[i, 3]))
    return per, pooled


def make_report(
    info: Mapping[str, Any], before: Tensor, after: Tensor, energy_before: float, energy_after: float,
    cross_field_rel_error: float | None = None,
) -> dict[str, Any]:
    """The per-table report: ``info`` (method, d_t, d_s, rows[, basis]) + :func:`distortion_report`
    + ``cross_field_rel_error`` + ``energy_kept = ||E_s||^2 / ||E||^2`` (1.0 for an all-zero
    table: nothing to lose) [+ ``singular_values``]. JSON-safe (plain floats, ints, strings, None)."""
    rep = {k: info[k] for k in ("method", "basis", "d_t", "d_s", "rows") if k in info}
    within = distortion_report(before, after)
    rep.update(sample_rows=within.pop("sample_rows"), inner_product_rel_error=within.pop("inner_product_rel_error"),
               cross_field_rel_error=cross_field_rel_error, **within)
    rep["energy_kept"] = energy_after / energy_before if energy_before > 0 else 1.0
    if "singular_values" in info:
        rep["singular_values"] = list(info["singular_values"])
    return rep


def build_reports(
    infos: Mapping[str, Mapping[str, Any]],
    samples: Mapping[str, tuple[Tensor, Tensor]],
    energies: Mapping[str, tuple[float, float]],
    summary_info: Mapping[str, Any],
    *,
    seed: int,
    cross_rows: int = DEFAULT_CROSS_ROWS,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every table's report and the summary of the whole projection.

    ``infos``, ``samples`` (rows before, rows after) and ``energies`` (``||E||^2``, ``||E_s||^2``)
    per table name. The summary is ``summary_info`` (method, basis, d_t, d_s[, singular_values])
    plus ``tables``, ``rows``, the pooled ``within_field_rel_error`` and ``cross_field_rel_error``
    (see :func:`cross_field_errors`), ``cross_sample_rows`` and the overall ``energy_kept``.
    """
    cross, pooled = cross_field_errors(samples, seed, cross_rows)
    reports = {
        name: make_report(info, *samples[name], *energies[name], cross_field_rel_error=cross.get(name))
        for name, info in infos.items()
    }
    e_before = sum(e[0] for e in energies.values())
    e_after = sum(e[1] for e in energies.values())
    summary = dict(summary_info)
    summary.update(tables=len(infos), rows=sum(int(i["rows"]) for i in infos.values()), **pooled,
                   energy_kept=e_after / e_before if e_before > 0 else 1.0)
    return reports, summary
