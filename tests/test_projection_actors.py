"""Distributed projection on Ray actors equals the single-process math."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from crossadapt.config import ProjectionConfig
from crossadapt.errors import CheckpointError
from crossadapt.projection.actors import ProjectionActor, ProjectionShard, project_distributed
from crossadapt.projection.math import NUMERIC_NAME, ProjectionResult, project_embedding_state

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


def _assert_same(dist: ProjectionResult, ref: ProjectionResult) -> None:
    assert dist.table.shape == ref.table.shape and dist.table.dtype == torch.float32
    assert float((dist.table - ref.table).abs().max()) < 1e-5
    assert (dist.numeric is None) == (ref.numeric is None)
    if ref.numeric is not None:
        assert float((dist.numeric - ref.numeric).abs().max()) < 1e-5
    assert set(dist.reports) == set(ref.reports)
    for name, rep in ref.reports.items():
        got = dist.reports[name]
        assert set(got) == set(rep), name
        for k, v in rep.items():
            if isinstance(v, float):
                assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-6), (name, k)
            elif isinstance(v, list):
                assert np.allclose(got[k], v, rtol=1e-6, atol=1e-6), (name, k)
            else:
                assert got[k] == v, (name, k)
        assert float((dist.matrices[name] - ref.matrices[name]).abs().max()) < 1e-5, name


def test_shard_segments_without_ray():
    W, _ = _teacher()
    shard = ProjectionShard(W[40:360], 40, 360, RANGES)
    assert shard.segments == {"user": (0, 10, 40), "tiny": (10, 15, 0), "item": (15, 315, 0), "ctx": (315, 320, 0)}
    g = shard.partial_grams(["user", "ctx"])
    assert g["user"][1] == 10 and torch.allclose(g["user"][0], W[40:50].double().T @ W[40:50].double())


@pytest.mark.parametrize("method", ["gram", "rsvd"])
@pytest.mark.parametrize("num_actors", [1, 2, 3])
def test_distributed_equals_single_process(pool, num_actors, method):
    W, N = _teacher()
    cfg = ProjectionConfig(method=method, oversample=6, power_iters=2, seed=3)
    ref = project_embedding_state(W, RANGES, D_S, cfg, numeric=N, sample_rows=SAMPLE)
    dist = project_distributed(W, RANGES, D_S, cfg, num_actors, numeric=N, sample_rows=SAMPLE, actors=pool)
    assert all(r["method"] == method for r in dist.reports.values())
    assert dist.reports["item"]["sample_rows"] == SAMPLE
    _assert_same(dist, ref)


@pytest.mark.parametrize("d_s", [D_T, 40])
def test_distributed_copy_and_expansion(pool, d_s):
    W, N = _teacher(1)
    cfg = ProjectionConfig(seed=5)
    ref = project_embedding_state(W, RANGES, d_s, cfg, numeric=N, sample_rows=SAMPLE)
    dist = project_distributed(W, RANGES, d_s, cfg, num_actors=2, numeric=N, sample_rows=SAMPLE, actors=pool)
    _assert_same(dist, ref)
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
    _assert_same(dist, ref)  # numeric was read from the checkpoint too
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
