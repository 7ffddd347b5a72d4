"""Projection math (no Ray): exactness against closed-form optima and numpy ground truth."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from crossadapt.config import ProjectionConfig
from crossadapt.errors import DataError
from crossadapt.projection import (
    NUMERIC_NAME,
    GramAccumulator,
    apply_projection,
    check_field_ranges,
    choose_method,
    expansion_matrix,
    gram,
    iter_row_blocks,
    project_embedding_state,
    project_table,
    projection_basis,
    rsvd_right,
    tsqr,
)

F64 = torch.float64


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
    res = project_embedding_state(E, [("a", 0, 40), ("b", 40, 100)], 16, ProjectionConfig())
    assert torch.equal(res.table, E)
    assert res.reports["a"]["method"] == "copy" and res.reports["a"]["inner_product_rel_error"] == 0.0
    assert res.reports["b"]["energy_kept"] == 1.0


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
    # Numeric vectors use their own P.
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
    ],
)
def test_bad_field_ranges_are_named(ranges, msg):
    with pytest.raises(DataError, match=msg):
        check_field_ranges(ranges, 100)
