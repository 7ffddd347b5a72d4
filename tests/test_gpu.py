"""The GPU path: training on CUDA (fp32 and bf16 autocast), projection math on CUDA inputs, Ray Train on a GPU.

Skipped as a whole without a CUDA device, so the CPU suite stays green; run it where a GPU is:
``pytest -q tests/test_gpu.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossadapt.config import ModelConfig, ProjectionConfig, ResourcesConfig, SyntheticConfig
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.models import build_model
from crossadapt import projection as pm
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the GPU path)"),
]

DEVICE = "cuda"
SMALL = ModelConfig(name="dcnv2", embed_dim=8, hidden_units=(32, 16), num_cross_layers=2)


def _learnable(n: int = 4096, fields: int = 4, vocab: int = 50, seed: int = 0):
    """Arrays whose label is a function of the first field's id: any working model learns it fast."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (n, fields))
    label = (ids[:, 0] % 2).astype(np.float32)
    fm = FeatureMap("gpu", tuple(FieldSpec(f"f{i}", vocab_size=vocab) for i in range(fields)))
    return fm, {"ids": ids, "dense": np.zeros((n, 0), np.float32), "label": label}


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_model_trains_on_cuda_and_loss_falls(amp):
    fm, arrays = _learnable()
    device = torch.device(DEVICE)
    data = engine.to_tensors(arrays, device)
    torch.manual_seed(0)
    model = build_model(SMALL, fm).to(device)
    opt = engine.make_optimizer(model, 1e-2)
    job = TrainJob(name="gpu", run_dir="", model=SMALL, amp=amp)
    gen = torch.Generator().manual_seed(0)
    n = data["ids"].shape[0]
    losses = [engine.train_steps(model, opt, data, engine.batches(n, 256, n // 256, gen, device), None, job)[0]
              for _ in range(5)]
    assert all(p.device.type == device.type for p in model.parameters())
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < 0.5 * losses[0], losses  # the label is a function of one id: the loss must drop
    logits = engine.predict_logits(model, data, amp=amp)
    assert logits.device.type == device.type and logits.dtype == torch.float32
    assert engine.evaluate(model, data)["auc"] > 0.9


def test_projection_on_cuda_inputs_matches_cpu():
    g = torch.Generator().manual_seed(0)
    # a decaying spectrum: distinct singular values, so the basis is unique up to the fixed signs
    E = torch.randn(20_000, 64, generator=g) * torch.arange(1, 65, dtype=torch.float32) ** -0.5
    Ed = E.to(DEVICE)
    cfg = ProjectionConfig(method="gram")
    ranges = [("a", 0, 5_000), ("b", 5_000, 20_000)]

    G_cpu = pm.gram(E)
    assert torch.allclose(pm.gram(Ed), G_cpu, rtol=1e-5, atol=1e-5)
    # the same float64 block Gram computed on the device gives the same basis
    G_dev = torch.zeros(64, 64, dtype=torch.float64, device=Ed.device)
    for b in pm.iter_row_blocks(Ed, 4096):
        b = b.double()
        G_dev.addmm_(b.T, b)
    assert torch.allclose(G_dev.cpu(), G_cpu, rtol=1e-9, atol=1e-9)
    V_cpu, s_cpu = pm.basis_from_gram(G_cpu, 32)
    V_dev, s_dev = pm.basis_from_gram(G_dev.cpu(), 32)
    assert (V_dev - V_cpu).abs().max() < 1e-5 and torch.allclose(s_dev, s_cpu, rtol=1e-6)

    ref = pm.project_embedding_state(E, ranges, 32, cfg)
    got = pm.project_embedding_state(Ed, ranges, 32, cfg)
    assert (got.table - ref.table).abs().max() < 1e-5
    for name in ("a", "b"):
        assert (got.matrices[name] - ref.matrices[name]).abs().max() < 1e-5
    Vr_cpu, _ = pm.rsvd_right(E, 16, seed=3)
    Vr_dev, _ = pm.rsvd_right(Ed, 16, seed=3)
    assert (Vr_dev.cpu() - Vr_cpu).abs().max() < 1e-5


@pytest.fixture(scope="module")
def tiny_logs(tmp_path_factory) -> Path:
    from crossadapt.data.synthetic import generate

    root = tmp_path_factory.mktemp("gpu") / "data"
    generate(SyntheticConfig(num_fields=6, vocab_size=200, rows_per_period=6000, num_periods=4, drift_periods=(3,),
                             seed=3), root)
    return root


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_ray_train_fit_runs_on_cuda(ray_session, tiny_logs, tmp_path, amp):
    pytest.importorskip("ray")
    from crossadapt.data import ray_data
    from crossadapt.ray_init import resolve_use_gpu
    from crossadapt.train.ray_train import fit

    assert resolve_use_gpu(ResourcesConfig(use_gpu="auto")), "Ray sees no GPU although torch does"
    assert resolve_use_gpu(ResourcesConfig(use_gpu="true"))
    fm = FeatureMap.load(tiny_logs)
    train, valid = ray_data.window_split(tiny_logs, [0, 1, 2], fm, valid_fraction=0.1)
    model_cfg = ModelConfig(name="dnn", embed_dim=8, hidden_units=(32, 16))
    job = TrainJob(name=f"gpu-{amp}", run_dir=str(tmp_path / "run"), model=model_cfg, feature_map=fm.to_dict(),
                   phases=(Phase(epochs=2, lr=3e-3),), batch_size=512, seed=0, amp=amp)
    out = fit(job, train, valid, ResourcesConfig(num_workers=1, use_gpu="true", amp=amp), keep_storage=True)
    assert len(out.history) == 2 and out.best_valid_auc > 0.6, out.history
    # The worker's resumable checkpoint holds the live state dict: its tensors sit where the model trained.
    states = sorted((tmp_path / "ray_storage").rglob("state.pt"))
    assert states, f"no Ray Train checkpoint under {tmp_path / 'ray_storage'}"
    saved = torch.load(states[-1], weights_only=True)
    devices = {t.device.type for t in saved["model"].values()}
    assert devices == {torch.device(DEVICE).type}, devices
