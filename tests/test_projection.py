"""Projection math (no Ray): exactness against closed-form optima and numpy ground truth."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from crossadapt.config import ProjectionConfig, load_config
from crossadapt.errors import ConfigError, DataError
from crossadapt.projection.orthonormal import fix_signs
from crossadapt.projection import (
    NUMERIC_NAME,
    GramAccumulator,
    apply_projection,
    check_field_ranges,
    choose_method,
    expansion_matrix,
    fit_bases,
    gram,
    iter_row_blocks,
    project_embedding_state,
    project_table,
    projection_basis,
    rsvd_right,
    tsqr,
)

F64 = torch.float64
#: float32 unit roundoff: a float64 value rounded to float32 moves by at most U32 of itself.
U32 = 2.0**-24


def _table(n: int, d: int, seed: int, decay: float = 0.9, dtype=F64) -> torch.Tensor:
    """Random table with singular values decaying like ``decay**i`` (distinct, so subspaces are unique)."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    s = decay ** torch.arange(d, dtype=F64) * 10
    return ((U * s) @ V.T).to(dtype)


def _sin_max_principal_angle(A: torch.Tensor, B: torch.Tensor) -> float:
    """sin of the largest principal angle between the column spans of orthonormal A and B.

    Computed as ``||(I - A A^T) B||_2`` rather than ``sqrt(1 - cos^2)``, which cannot resolve angles
    below ~1e-8 in float64.
    """
    A, B = A.to(F64), B.to(F64)
    return float(torch.linalg.matrix_norm(B - A @ (A.T @ B), ord=2))


# ---------------------------------------------------------------- expansion / copy


def test_qr_expansion_preserves_every_inner_product():
    E = torch.randn(300, 16, dtype=F64, generator=torch.Generator().manual_seed(1))
    Q, info = projection_basis(E, 32, ProjectionConfig())
    assert info["method"] == "qr_expand" and Q.shape == (16, 32)
    assert torch.allclose(Q @ Q.T, torch.eye(16, dtype=F64), atol=1e-12)
    Es = E @ Q
    assert torch.allclose(Es @ Es.T, E @ E.T, atol=1e-10)
    # The float32 end-to-end path: inner products to 1e-5 relative to their scale.
    E32 = E.float()
    Es32, P32, rep = project_table(E32, 32, ProjectionConfig())
    G, Gs = E32.double() @ E32.double().T, Es32.double() @ Es32.double().T
    assert float((G - Gs).abs().max()) / float(G.abs().max()) < 1e-5
    assert rep["inner_product_rel_error"] < 1e-6 and abs(rep["energy_kept"] - 1) < 1e-6
    assert rep["cosine_abs_change_mean"] < 1e-6


def test_expansion_is_seeded_and_orthonormal_rows():
    assert torch.equal(expansion_matrix(8, 20, seed=3), expansion_matrix(8, 20, seed=3))
    assert not torch.equal(expansion_matrix(8, 20, seed=3), expansion_matrix(8, 20, seed=4))
    Q = expansion_matrix(8, 20, seed=3)
    assert torch.allclose(Q @ Q.T, torch.eye(8, dtype=F64), atol=1e-13)


def test_equal_dim_is_an_exact_copy():
    E = torch.randn(100, 16)
    res = project_embedding_state(E, [("a", 0, 40), ("b", 40, 100)], 16, ProjectionConfig(basis="per_field"))
    assert torch.equal(res.table, E)
    assert res.reports["a"]["method"] == "copy" and res.reports["a"]["inner_product_rel_error"] == 0.0
    assert res.reports["a"]["cross_field_rel_error"] == 0.0 and res.summary["cross_field_rel_error"] == 0.0
    assert res.reports["b"]["energy_kept"] == 1.0
    assert res.summary["basis"] == "shared"  # one matrix for all fields, whatever the config says for PCA


# ---------------------------------------------------------------- PCA exactness


def test_pca_error_equals_eckart_young_optimum():
    n, d_t, k = 400, 32, 8
    E = _table(n, d_t, seed=2, decay=0.93)
    sigma = np.linalg.svd(E.numpy(), compute_uv=False)  # float64 ground truth
    opt = float(np.sqrt(np.sum(sigma[k:] ** 4)))
    V, info = projection_basis(E, k, ProjectionConfig(method="gram"))
    Es = E @ V
    err = float(torch.linalg.norm(E @ E.T - Es @ Es.T))
    assert info["method"] == "gram"
    assert abs(err - opt) / opt < 1e-6
    assert np.allclose(info["singular_values"], sigma[:k], rtol=1e-10)

    # The reported numbers (float32 output) agree with the closed forms.
    _, _, rep = project_table(E, k, ProjectionConfig(method="gram"))
    full = float(np.sqrt(np.sum(sigma**4)))
    assert abs(rep["inner_product_rel_error"] - opt / full) / (opt / full) < 1e-5
    energy = float(np.sum(sigma[:k] ** 2) / np.sum(sigma**2))
    assert abs(rep["energy_kept"] - energy) < 1e-6
    assert rep["rows"] == n and rep["sample_rows"] == n and rep["d_t"] == d_t and rep["d_s"] == k


def test_gram_subspace_matches_numpy_svd():
    E = _table(1000, 32, seed=3, decay=0.9)
    _, _, vt = np.linalg.svd(E.numpy(), full_matrices=False)
    V, _ = projection_basis(E, 8, ProjectionConfig(method="gram"))
    assert _sin_max_principal_angle(V, torch.from_numpy(vt[:8].T)) < 1e-10
    assert torch.allclose(V.T @ V, torch.eye(8, dtype=F64), atol=1e-12)


def test_gram_streaming_equals_one_shot_and_signs_are_shard_independent():
    E = torch.randn(5000, 24)
    acc = GramAccumulator(24)
    for b in iter_row_blocks(E, 777):
        acc.add(b)
    assert acc.rows == 5000
    assert torch.allclose(acc.gram, gram(E), rtol=1e-12, atol=1e-9)
    ref = E.double().T @ E.double()
    assert torch.allclose(gram(E), ref, rtol=1e-12, atol=1e-9)
    V1, _ = projection_basis(E, 6, ProjectionConfig(method="gram"), chunk_rows=100000)
    V2, _ = projection_basis(E, 6, ProjectionConfig(method="gram"), chunk_rows=333)
    assert torch.allclose(V1, V2, atol=1e-9)  # same signs, not just the same span


def test_rsvd_recovers_exact_low_rank_subspace_and_matches_gram():
    g = torch.Generator().manual_seed(4)
    A = torch.randn(5000, 5, generator=g, dtype=F64)
    B = torch.randn(5, 64, generator=g, dtype=F64)
    E = A @ B  # rank 5
    row_space, _ = torch.linalg.qr(B.T)
    Vr, sr = rsvd_right(E, 5, oversample=10, power_iters=2, seed=0, chunk_rows=1024)
    assert _sin_max_principal_angle(Vr, row_space) < 1e-6
    Vg, info = projection_basis(E, 5, ProjectionConfig(method="gram"))
    assert _sin_max_principal_angle(Vg, row_space) < 1e-6
    assert np.allclose(sr.numpy(), info["singular_values"], rtol=1e-8)
    Pr, Pg = E @ Vr, E @ Vg
    signs = torch.sign((Pr * Pg).sum(0))  # identical signs expected; compare up to sign per spec
    scale = float(Pg.abs().max())
    assert float((Pr * signs - Pg).abs().max()) / scale < 1e-6
    assert torch.all(signs == 1)


def test_rsvd_on_full_rank_table_is_close_to_gram():
    E = _table(3000, 48, seed=5, decay=0.8)
    cfg = ProjectionConfig(method="rsvd", oversample=10, power_iters=2)
    _, _, rep_r = project_table(E, 8, cfg)
    _, _, rep_g = project_table(E, 8, ProjectionConfig(method="gram"))
    assert rep_r["method"] == "rsvd"
    assert rep_r["energy_kept"] == pytest.approx(rep_g["energy_kept"], rel=1e-6)
    assert rep_r["inner_product_rel_error"] == pytest.approx(rep_g["inner_product_rel_error"], rel=1e-4)


def test_rsvd_on_float32_table_matches_gram():
    """A float32 table takes float32 sketch products; the basis still matches the exact one."""
    E = _table(4000, 48, seed=6, decay=0.8, dtype=torch.float32)
    Vr, sr = rsvd_right(E, 8, oversample=10, power_iters=2, seed=0, chunk_rows=1000)
    Vg, info = projection_basis(E, 8, ProjectionConfig(method="gram"))
    assert _sin_max_principal_angle(Vr, Vg) < 1e-4
    assert np.allclose(sr.numpy(), info["singular_values"], rtol=1e-5)


def test_field_smaller_than_student_dim():
    """3 rows, 16 -> 8 dims: rank 3 <= 8, so both methods keep every inner product."""
    E = torch.randn(3, 16, dtype=F64)
    for method in ("gram", "rsvd"):
        V, _ = projection_basis(E, 8, ProjectionConfig(method=method))
        assert torch.allclose(V.T @ V, torch.eye(8, dtype=F64), atol=1e-10), method
        Es = E @ V
        assert torch.allclose(Es @ Es.T, E @ E.T, atol=1e-10), method


# ---------------------------------------------------------------- TSQR


def test_tsqr_r_matches_direct_qr_up_to_row_signs():
    A = torch.randn(1000, 12, dtype=F64, generator=torch.Generator().manual_seed(6))
    sizes = [300, 5, 0, 395, 300]  # uneven, one block shorter than the width, one empty
    blocks = list(torch.split(A, sizes))
    Qb, R = tsqr(blocks)
    _, Rd = torch.linalg.qr(A)
    s = torch.sign(torch.diagonal(Rd)) * torch.sign(torch.diagonal(R))
    assert torch.allclose(R, s[:, None] * Rd, atol=1e-10)
    Q = torch.cat(Qb)
    assert torch.allclose(Q @ R, A, atol=1e-10)
    assert torch.allclose(Q.T @ Q, torch.eye(12, dtype=F64), atol=1e-12)
    assert torch.allclose(tsqr(blocks, return_q=False), R)


# ---------------------------------------------------------------- per-field behaviour, API


def test_fields_are_projected_independently():
    g = torch.Generator().manual_seed(7)
    E = torch.randn(500, 24, generator=g)
    ranges = [("a", 0, 200), ("b", 200, 500)]
    cfg = ProjectionConfig(basis="per_field")
    r1 = project_embedding_state(E, ranges, 8, cfg)
    E2 = E.clone()
    E2[:200] = torch.randn(200, 24, generator=g) * 3
    r2 = project_embedding_state(E2, ranges, 8, cfg)
    assert torch.equal(r1.table[200:], r2.table[200:])
    # b's own figures do not move; its cross-field error is about pairs with a's rows, which did
    assert {**r1.reports["b"], "cross_field_rel_error": 0} == {**r2.reports["b"], "cross_field_rel_error": 0}
    assert torch.equal(r1.matrices["b"], r2.matrices["b"])
    assert not torch.equal(r1.table[:200], r2.table[:200])


def test_state_dict_input_numeric_and_json_reports():
    W = torch.randn(120, 16)
    N = torch.randn(3, 16)
    sd = {"state_dict": {"embedding.table.weight": W, "embedding.numeric": N}}
    res = project_embedding_state(sd, [("u", 0, 100), ("i", 100, 120)], 4, ProjectionConfig(), sample_rows=50)
    assert res.table.shape == (120, 4) and res.table.dtype == torch.float32
    assert res.numeric is not None and res.numeric.shape == (3, 4)
    assert set(res.reports) == {"u", "i", NUMERIC_NAME}
    assert res.reports["u"]["sample_rows"] == 50 and res.reports["u"]["rows"] == 100
    assert res.matrices["u"].shape == (16, 4) and res.matrices["u"].dtype == torch.float32
    # Numeric vectors are projected with their P (the shared basis by default).
    assert torch.allclose(res.numeric, apply_projection(N, res.matrices[NUMERIC_NAME].double()), atol=1e-6)
    json.dumps(res.reports, allow_nan=False)
    one = project_embedding_state(W, [("u", 0, 120)], 4, numeric=N[:1])
    assert one.reports[NUMERIC_NAME]["cosine_before_mean"] is None  # no pairs with one row


def test_auto_method_switch_is_logged(caplog):
    cfg = ProjectionConfig(rsvd_min_dim=32)
    assert choose_method(16, 8, cfg) == "gram"
    assert choose_method(32, 8, cfg) == "rsvd"
    assert choose_method(16, 16, cfg) == "copy" and choose_method(16, 20, cfg) == "qr_expand"
    assert choose_method(16, 8, ProjectionConfig(method="rsvd")) == "rsvd"
    with caplog.at_level(logging.INFO, logger="crossadapt.projection.math"):
        res = project_embedding_state(torch.randn(50, 40), [("f", 0, 50)], 8, cfg)
    assert res.reports["f"]["method"] == "rsvd"
    assert any("method=rsvd" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "ranges, msg",
    [
        ([("a", 0, 50), ("b", 40, 100)], "overlaps"),
        ([("a", 0, 50), ("b", 60, 100)], "no field"),
        ([("a", 0, 50)], "belong to no field"),
        ([("a", 0, 50), ("b", 50, 101)], "within"),
        ([("a", 0, 50), ("a", 50, 100)], "duplicate"),
        ([("__numeric__", 0, 100)], "reserved"),
        ([("__all__", 0, 100)], "reserved"),
    ],
)
def test_bad_field_ranges_are_named(ranges, msg):
    with pytest.raises(DataError, match=msg):
        check_field_ranges(ranges, 100)


# ---------------------------------------------------------------- shared vs per-field basis


def _rounding_bound(X: torch.Tensor, rows_a: torch.Tensor, rows_b: torch.Tensor) -> float:
    """Largest relative inner-product error that rounding the exact ``X P`` to float32 can cause on
    the pairs ``rows_a x rows_b`` of ``X`` (float64).

    Each output row is within ``U32 ||y|| <= U32 ||x||`` of the exact one (``P`` has orthonormal
    columns; the float64 product's own error is ~1e-16), so an inner product moves by at most
    ``(2 U32 + U32^2) ||x_i|| ||x_j||``; over the pairs, in Frobenius norm, relative to ``||X_a X_b^T||_F``.
    A 1e-6 relative margin covers the float64 arithmetic of the report itself.
    """
    na, nb = X[rows_a].norm(dim=1), X[rows_b].norm(dim=1)
    ref = float(torch.linalg.norm(X[rows_a] @ X[rows_b].T))
    return (2 * U32 + U32**2) * float(na.norm() * nb.norm()) / ref * (1 + 1e-6)


def test_shared_basis_is_top_right_singular_vectors_of_the_stacked_table():
    """float64: the shared V equals the SVD's of all fields and the numeric vectors stacked."""
    E = _table(600, 24, seed=11, decay=0.85)  # distinct, well separated singular values
    N = torch.randn(3, 24, dtype=F64, generator=torch.Generator().manual_seed(12)) * 0.5
    ranges = [("a", 0, 100), ("b", 100, 350), ("c", 350, 600)]
    k = 8
    _, S, Vh = torch.linalg.svd(torch.cat([E, N]), full_matrices=False)
    V_ref = fix_signs(Vh[:k].T)  # the library's sign rule, so the vectors compare, not only spans
    tables = {n: E[a:b] for n, a, b in ranges} | {NUMERIC_NAME: N}
    for method in ("gram", "rsvd"):
        # rsvd with a sketch as wide as the table (oversample 16: 8 + 16 = 24 columns) is exact too
        fb = fit_bases(tables, k, ProjectionConfig(method=method, basis="shared", oversample=16, power_iters=1))
        assert fb.basis == "shared" and len({id(P) for P in fb.matrices.values()}) == 1, method
        assert torch.allclose(fb.matrices["a"], V_ref, atol=1e-10), method
        assert torch.allclose(fb.sigmas["__all__"], S[:k], rtol=1e-10), method
    # The same through the public entry (float32 output): one P, the stacked spectrum in the summary.
    res = project_embedding_state(E, ranges, k, ProjectionConfig(method="gram", basis="shared"), numeric=N)
    assert all(torch.equal(P, res.matrices["a"]) for P in res.matrices.values())
    assert torch.allclose(res.matrices["a"].double(), V_ref, atol=U32)
    assert np.allclose(res.summary["singular_values"], S[:k].numpy(), rtol=1e-10)
    assert "singular_values" not in res.reports["a"]  # the shared spectrum is not the field's
    exact = E @ V_ref
    assert float(((res.table.double() - exact).abs().max(1).values / E.norm(dim=1)).max()) <= U32 * (1 + 1e-6)
    # Energy kept overall is the stacked table's top-k share.
    assert res.summary["energy_kept"] == pytest.approx(float((S[:k] ** 2).sum() / (S**2).sum()), rel=1e-6)


def _one_geometry(sizes: list[int], d_t: int, rank: int, seed: int) -> torch.Tensor:
    """Fields drawn from one rank-``rank`` geometry: every row is ``a B`` with one shared ``B``."""
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(rank, d_t, generator=g, dtype=F64)
    return torch.randn(sum(sizes), rank, generator=g, dtype=F64) @ B


def test_shared_basis_keeps_cross_field_inner_products_when_the_rank_fits():
    """Stacked rank 5 <= d_s 8: the shared basis keeps every inner product (within and across
    fields); per-field bases keep each field's own exactly but scramble the cross-field ones."""
    d_t, k = 24, 8
    E = _one_geometry([120, 80, 100, 2], d_t, rank=5, seed=13)
    W, N = E[:300], E[300:]
    ranges = [("a", 0, 120), ("b", 120, 200), ("c", 200, 300)]
    tables = {n: W[a:b] for n, a, b in ranges} | {NUMERIC_NAME: N}
    starts = {"a": 0, "b": 120, "c": 200, NUMERIC_NAME: 300}
    G = E @ E.T
    scale = float(G.abs().max())
    shared = fit_bases(tables, k, ProjectionConfig(method="gram", basis="shared"))
    Y = torch.cat([t @ shared.matrices[n] for n, t in tables.items()])
    assert float((Y @ Y.T - G).abs().max()) / scale < 1e-12  # every pair, float64

    per = fit_bases(tables, k, ProjectionConfig(method="gram", basis="per_field"))
    Yp = torch.cat([t @ per.matrices[n] for n, t in tables.items()])
    Gp = Yp @ Yp.T
    for n, t in tables.items():  # within each field: exact (its rank is <= 5 too)
        i = slice(starts[n], starts[n] + t.shape[0])
        assert float((Gp[i, i] - G[i, i]).abs().max()) / scale < 1e-12, n
    cross = torch.ones_like(G, dtype=torch.bool)
    for n, t in tables.items():
        cross[starts[n] : starts[n] + t.shape[0], starts[n] : starts[n] + t.shape[0]] = False
    assert float(torch.linalg.norm((Gp - G)[cross]) / torch.linalg.norm(G[cross])) > 0.3  # scrambled

    # End to end (float32 output): the reports measure exactly that, within float32 rounding.
    rows = torch.arange(E.shape[0])
    field_of = torch.cat([torch.full((t.shape[0],), i) for i, t in enumerate(tables.values())])
    res = project_embedding_state(W, ranges, k, ProjectionConfig(method="gram", basis="shared"), numeric=N)
    for i, n in enumerate(tables):
        mine, others = rows[field_of == i], rows[field_of != i]
        assert res.reports[n]["inner_product_rel_error"] <= _rounding_bound(E, mine, mine), n
        assert res.reports[n]["cross_field_rel_error"] <= _rounding_bound(E, mine, others), n
    cross_bound = max(_rounding_bound(E, rows[field_of == i], rows[field_of != i]) for i in range(len(tables)))
    assert res.summary["cross_field_rel_error"] <= cross_bound
    assert res.summary["cross_sample_rows"] == E.shape[0]  # small tables: every row is in the pooled sample
    res_p = project_embedding_state(W, ranges, k, ProjectionConfig(method="gram", basis="per_field"), numeric=N)
    assert res_p.summary["cross_field_rel_error"] > 0.3
    assert res_p.summary["within_field_rel_error"] <= max(
        _rounding_bound(E, rows[field_of == i], rows[field_of == i]) for i in range(len(tables)))


def test_per_field_basis_is_each_field_on_its_own():
    """per_field is the behaviour before the shared basis existed: every field (and the numeric
    vectors) projected as a table of its own, bit for bit, for both methods."""
    g = torch.Generator().manual_seed(14)
    W = torch.randn(700, 20, generator=g) * torch.linspace(2, 0.2, 20)
    N = torch.randn(4, 20, generator=g)
    ranges = [("u", 0, 300), ("tiny", 300, 303), ("i", 303, 700)]
    for method in ("gram", "rsvd"):
        cfg = ProjectionConfig(method=method, basis="per_field", oversample=4)
        res = project_embedding_state(W, ranges, 6, cfg, numeric=N, sample_rows=150)
        for name, a, b in ranges + [(NUMERIC_NAME, 0, 4)]:
            src, got = (N, res.numeric) if name == NUMERIC_NAME else (W[a:b], res.table[a:b])
            Es, P, rep = project_table(src, 6, cfg, name=name, sample_rows=150)
            assert torch.equal(got, Es) and torch.equal(res.matrices[name], P), (method, name)
            assert {**res.reports[name], "cross_field_rel_error": None} == rep, (method, name)
            assert res.reports[name]["cross_field_rel_error"] > 0.1  # unrelated bases across fields
        assert len({id(P) for P in res.matrices.values()}) == len(ranges) + 1


def test_basis_is_checked_and_named():
    with pytest.raises(ConfigError, match="projection.basis"):
        project_embedding_state(torch.randn(20, 8), [("a", 0, 20)], 4, ProjectionConfig(basis="global"))
    with pytest.raises(ConfigError, match="projection.basis"):
        load_config(None, {"projection.basis": "global"})
    assert load_config(None, {"projection.basis": "per_field"}).projection.basis == "per_field"
