"""Shared fixtures: the repo on sys.path, one Ray session per test run, real-sample paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tracking never needs the network in tests.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# One intra-op thread per process: on 2 cores, Ray workers and the test process otherwise fight
# over threads and small models run several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once for the whole test session (2 CPUs, small object store, no dashboard)."""
    import ray

    from crossadapt.ray_init import init_ray

    init_ray(num_cpus=2, object_store_memory=400 * 1024**2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip with a message when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CTR samples not found at {SHARED_DATA} (see shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_online_world(tmp_path_factory):
    """Tiny drifting logs (6 fields, 3000 rows per period, drift at period 6 of 8) with a DNN teacher
    and a DCNv2 student trained in-process on periods 0-3: ``(root, feature map, teacher, student)``."""
    from crossadapt.config import ModelConfig, SyntheticConfig
    from crossadapt.data import arrays as A
    from crossadapt.data.synthetic import generate
    from crossadapt.featuremap import FeatureMap
    from crossadapt.models import build_model, save_checkpoint
    from crossadapt.train import engine
    from crossadapt.train.engine import TrainJob

    root = tmp_path_factory.mktemp("online") / "data"
    generate(SyntheticConfig(num_fields=6, vocab_size=300, rows_per_period=3000, num_periods=8, drift_periods=(6,),
                             seed=5), root)
    fm = FeatureMap.load(root)
    hist = engine.to_tensors(A.read_periods(root, range(0, 4), fm))
    n = hist["ids"].shape[0]
    paths = []
    for name, cfg in (("teacher", ModelConfig(name="dnn", embed_dim=8, hidden_units=(32, 16))),
                      ("student", ModelConfig(name="dcnv2", embed_dim=8, hidden_units=(32,), num_cross_layers=2))):
        torch.manual_seed(0)
        model = build_model(cfg, fm)
        opt = engine.make_optimizer(model, 3e-3)
        gen = torch.Generator().manual_seed(0)
        for _ in range(4):  # enough for AUCs well above 0.5, in well under a second
            engine.train_steps(model, opt, hist, engine.batches(n, 256, n // 256, gen, "cpu"), None,
                               TrainJob(name=name, run_dir="", model=cfg))
        save_checkpoint(root.parent / f"{name}.pt", model, cfg, fm)
        paths.append(str(root.parent / f"{name}.pt"))
    return root, fm, paths[0], paths[1]


@pytest.fixture(scope="session")
def online_cfg():
    """``online_cfg(root, out, **online)``: an experiment config streaming periods 5-7 of the tiny world."""
    from crossadapt.config import DataConfig, ExperimentConfig, OnlineConfig

    def make(root, out, **online):
        return ExperimentConfig(
            out_dir=str(out), seeds=(0,),
            data=DataConfig(root=str(root), teacher_periods=(0, 3), window_periods=(3, 4), test_periods=(4, 5),
                            stream_periods=(5, 8)),
            online=OnlineConfig(**{"batch_size": 256, "reservoir_size": 2000, **online}),
        )

    return make
