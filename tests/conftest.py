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
