"""Distributed projection on Ray actors equals the single-process math."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from crossadapt.config import ProjectionConfig
from crossadapt.errors import CheckpointError
from crossadapt.projection.actors import ProjectionActor, ProjectionShard, project_distributed
from crossadapt.projection import ALL_FIELDS, NUMERIC_NAME, ProjectionResult, project_embedding_state

# Uneven fields: one smaller than d_s, one sampled (> SAMPLE rows), several crossing actor bounds.
RANGES = [("user", 0, 50), ("tiny", 50, 55), ("item", 55, 355), ("ctx", 355, 498)]
N_ROWS, D_T, D_S, SAMPLE = 498, 24, 8, 120


@pytest.fixture(scope="module")
def pool(ray_session):
    """Three actors reused by the tests below: starting a Python+torch worker costs seconds on 2 cores."""
    actors = [ProjectionActor.remote() for _ in range(3)]
    yield actors
    for a in actors:
        ray_session.kill(a)


def _teacher(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N_ROWS, D_T, generator=g) * torch.linspace(2.0, 0.1, D_T)  # decaying spectrum
    return W, torch.randn(3, D_T, generator=g)


#: float32 unit roundoff.
U32 = 2.0**-24


def _tolerances(W: torch.Tensor, N: torch.Tensor | None, d_s: int, method: str, basis: str) -> dict[str, float]:
    """Per table, the largest coordinate difference (relative to the row's norm) that float rounding
    allows between two runs that cut the table at other rows. Derived from the data's scale:

    - output: both runs compute ``x P`` in float32 from a float32 ``P``: each coordinate lies within
      ``gamma_{d_t+1} ||x|| ~ (d_t + 1) U32 ||x||`` of the exact value (Cauchy-Schwarz, ``P``'s columns
      have unit norm), so two runs differ by at most twice that;
    - basis: the Gram path sums float64 products (its ``V`` moves ~1e-13, below the output term);
      the randomized path multiplies float32 blocks, ``E^T Q`` summed over other blocks in each run,
      an error of about ``sqrt(n) U32 sigma_1`` (probabilistic rounding bound, Higham & Mary 2019),
      which turns each basis vector by at most that over the smallest gap between the singular
      values it separates (Wedin), in each of the two runs; directions beyond the table's rank
      carry no energy (``E v = 0``).
    """
    d_t = W.shape[1]
    tables = {name: W[a:b] for name, a, b in RANGES}
    if N is not None:
        tables[NUMERIC_NAME] = N
    groups = {"all": list(tables)} if basis == "shared" else {n: [n] for n in tables}
    out = {}
    for members in groups.values():
        t = 2 * (d_t + 1) * U32
        if method == "rsvd" and d_s < d_t:
            T = torch.cat([tables[m] for m in members]).double()
            s = torch.cat([torch.linalg.svdvals(T), torch.zeros(d_s + 1, dtype=torch.float64)])
            r = min(d_s, int((s > s[0] * 1e-6).sum()))
            t += 2 * T.shape[0] ** 0.5 * float(s[0] / (s[:r] - s[1 : r + 1]).min()) * U32
        out.update({m: t for m in members})
    return out


def _assert_same(dist: ProjectionResult, ref: ProjectionResult, W: torch.Tensor, N: torch.Tensor | None,
                 method: str, basis: str) -> None:
    """``dist`` equals ``ref`` within :func:`_tolerances` (rows, matrices) and the report figures
    within ``2 sqrt(d_s d_t) t``: an inner product of two rows moves by at most ``2 sqrt(d_s) t``
    times their norms, and the Frobenius ratios sum at most ``rank <= d_t`` such directions."""
    d_s = ref.table.shape[1]
    tol = _tolerances(W, N, d_s, method, basis)
    assert dist.table.shape == ref.table.shape and dist.table.dtype == torch.float32
    for name, a, b in RANGES:
        diff = (dist.table[a:b] - ref.table[a:b]).abs().max(dim=1).values
        assert bool((diff <= tol[name] * W[a:b].norm(dim=1)).all()), (name, float(diff.max()))
    assert (dist.numeric is None) == (ref.numeric is None)
    if ref.numeric is not None:
        diff = (dist.numeric - ref.numeric).abs().max(dim=1).values
        assert bool((diff <= tol[NUMERIC_NAME] * N.norm(dim=1)).all())
    rep_tol = 2 * (d_s * W.shape[1]) ** 0.5 * max(tol.values())
    assert set(dist.reports) == set(ref.reports)
    for name, rep in [*ref.reports.items(), ("summary", ref.summary)]:
        got = dist.summary if name == "summary" else dist.reports[name]
        assert set(got) == set(rep), name
        for k, v in rep.items():
            if isinstance(v, float):
                assert got[k] == pytest.approx(v, rel=rep_tol, abs=rep_tol), (name, k)
            elif isinstance(v, list):
                assert np.allclose(got[k], v, rtol=rep_tol, atol=rep_tol * max(v)), (name, k)
            else:
                assert got[k] == v, (name, k)
        if name != "summary":
            assert float((dist.matrices[name] - ref.matrices[name]).abs().max()) <= tol[name], name


def test_shard_segments_without_ray():
    W, _ = _teacher()
    shard = ProjectionShard(W[40:360], 40, 360, RANGES)
    assert shard.segments == {"user": (0, 10, 40), "tiny": (10, 15, 0), "item": (15, 315, 0), "ctx": (315, 320, 0)}
    g = shard.partial_grams(["user", "ctx"])
    assert g["user"][1] == 10 and torch.allclose(g["user"][0], W[40:50].double().T @ W[40:50].double())
    # A shared basis sketches every row the shard holds, across field boundaries.
    Z = torch.randn(D_T, 5, dtype=torch.float64)
    rs = shard.sketch({ALL_FIELDS: Z})[ALL_FIELDS]
    assert sum(r.shape[0] for r in rs) == 5 and len(rs) >= 1
    _, R = torch.linalg.qr(W[40:360].double() @ Z)
    R_all = torch.linalg.qr(torch.cat(rs))[1]
    assert torch.allclose(R_all.abs(), R.abs(), rtol=1e-5, atol=1e-4)
    assert ProjectionShard(W[:0], 0, 0, RANGES).sketch({ALL_FIELDS: Z}) == {}  # an empty shard owns nothing


@pytest.mark.parametrize("basis", ["shared", "per_field"])
@pytest.mark.parametrize("method", ["gram", "rsvd"])
@pytest.mark.parametrize("num_actors", [1, 2, 3])
def test_distributed_equals_single_process(pool, num_actors, method, basis):
    W, N = _teacher()
    cfg = ProjectionConfig(method=method, basis=basis, oversample=6, power_iters=2, seed=3)
    ref = project_embedding_state(W, RANGES, D_S, cfg, numeric=N, sample_rows=SAMPLE)
    dist = project_distributed(W, RANGES, D_S, cfg, num_actors, numeric=N, sample_rows=SAMPLE, actors=pool)
    assert all(r["method"] == method and r["basis"] == basis for r in dist.reports.values())
    assert dist.reports["item"]["sample_rows"] == SAMPLE
    _assert_same(dist, ref, W, N, method, basis)
    shared = len({id(P) for P in dist.matrices.values()}) == 1
    assert shared == (basis == "shared")


@pytest.mark.parametrize("basis", ["shared", "per_field"])
@pytest.mark.parametrize("method", ["gram", "rsvd"])
def test_distributed_equals_single_process_on_float64(pool, method, basis):
    """float64 tables: every sum is float64, so the protocol (shards, TSQR slices, groups, the
    driver's numeric shard) must reproduce the single-process bases to ~1e-12; the float32
    outputs then differ by at most one rounding (``U32 ||x||``)."""
    W, N = (t.double() for t in _teacher(4))
    cfg = ProjectionConfig(method=method, basis=basis, oversample=6, power_iters=2, seed=3)
    ref = project_embedding_state(W, RANGES, D_S, cfg, numeric=N, sample_rows=SAMPLE)
    dist = project_distributed(W, RANGES, D_S, cfg, 3, numeric=N, sample_rows=SAMPLE, actors=pool)
    for name, P in ref.matrices.items():
        assert torch.equal(dist.matrices[name], P) or float((dist.matrices[name] - P).abs().max()) <= U32, name
    bound = 1.001 * U32 * torch.cat([W, N]).norm(dim=1)
    got, want = torch.cat([dist.table, dist.numeric]), torch.cat([ref.table, ref.numeric])
    assert bool(((got - want).abs().max(dim=1).values <= bound).all())
    for name, rep in ref.reports.items():
        for k in ("inner_product_rel_error", "cross_field_rel_error", "energy_kept"):
            assert dist.reports[name][k] == pytest.approx(rep[k], rel=1e-6, abs=1e-9), (name, k)
    assert dist.summary["cross_field_rel_error"] == pytest.approx(ref.summary["cross_field_rel_error"], rel=1e-6)


@pytest.mark.parametrize("d_s", [D_T, 40])
def test_distributed_copy_and_expansion(pool, d_s):
    W, N = _teacher(1)
    cfg = ProjectionConfig(seed=5)
    ref = project_embedding_state(W, RANGES, d_s, cfg, numeric=N, sample_rows=SAMPLE)
    dist = project_distributed(W, RANGES, d_s, cfg, num_actors=2, numeric=N, sample_rows=SAMPLE, actors=pool)
    _assert_same(dist, ref, W, N, "copy" if d_s == D_T else "qr_expand", "shared")
    if d_s == D_T:
        assert torch.equal(dist.table, W)


def test_reads_rows_from_checkpoint_and_writes_npy(ray_session, tmp_path):
    """Actors started (and killed) by project_distributed itself, each reading its own rows."""
    W, N = _teacher(2)
    ckpt = tmp_path / "teacher.pt"
    torch.save({"state_dict": {"embedding.table.weight": W, "embedding.numeric": N}, "extra": {"k": 1}}, ckpt)
    cfg = ProjectionConfig(method="gram")
    ref = project_embedding_state(W, RANGES, D_S, cfg, numeric=N, sample_rows=SAMPLE)
    out = tmp_path / "proj" / "table.npy"
    dist = project_distributed(str(ckpt), RANGES, D_S, cfg, num_actors=3, out_path=out, sample_rows=SAMPLE)
    _assert_same(dist, ref, W, N, "gram", cfg.basis)  # numeric was read from the checkpoint too
    assert NUMERIC_NAME in dist.reports
    assert np.array_equal(np.load(out), dist.table.numpy())
    assert os.listdir(out.parent) == ["table.npy"]  # no temp file left behind


def test_checkpoint_errors_are_named(pool, tmp_path):
    ckpt = tmp_path / "bad.pt"
    torch.save({"state_dict": {"other": torch.zeros(2, 2)}}, ckpt)
    with pytest.raises(CheckpointError, match="embedding.table.weight"):
        project_distributed(ckpt, [("a", 0, 2)], 1, ProjectionConfig(), 1, actors=pool)
    with pytest.raises(CheckpointError, match="not found"):
        project_distributed(tmp_path / "missing.pt", [("a", 0, 2)], 1, ProjectionConfig(), 1, actors=pool)
