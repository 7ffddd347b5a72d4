"""Concurrent jobs (``resources.concurrent_jobs``): how jobs are dealt to lanes, and that a job's
result does not depend on the lane it trained in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crossadapt.config import ModelConfig, ResourcesConfig, SyntheticConfig
from crossadapt.data import ray_data
from crossadapt.data.synthetic import generate
from crossadapt.featuremap import FeatureMap
from crossadapt.models import load_checkpoint
from crossadapt.train.engine import Phase, TrainJob
from crossadapt.train.ray_train import epochs_cost, fit_many, job_lanes

SMALL = ModelConfig(name="dnn", embed_dim=8, hidden_units=(16,))


def _job(name: str, epochs: int, run_dir: str = "", seed: int = 0, fm: dict | None = None) -> TrainJob:
    return TrainJob(name=name, run_dir=run_dir or name, model=SMALL, feature_map=fm or {},
                    phases=(Phase(epochs=epochs, lr=3e-3),), batch_size=256, seed=seed, checkpoint_interval_s=600.0)


def test_lanes_take_the_costliest_job_first_into_the_lightest_lane():
    jobs = [_job(n, e) for n, e in (("a", 1), ("b", 5), ("c", 3), ("d", 3), ("e", 2))]
    lanes = job_lanes(jobs, 2, epochs_cost)
    # b(5) -> lane 0; c(3) -> lane 1; d(3) -> lane 1 (3 < 5); e(2) -> lane 0 (5 < 6); a(1) -> lane 1 (6 < 7)
    assert [[j.name for j in lane] for lane in lanes] == [["b", "e"], ["a", "c", "d"]]
    assert sum(epochs_cost(j) for j in lanes[0]) == 7 and sum(epochs_cost(j) for j in lanes[1]) == 7
    assert job_lanes(jobs, 2, epochs_cost) == lanes  # the same jobs, the same lanes (resume finds its run)
    assert job_lanes(jobs, 1, epochs_cost) == [jobs]
    assert [len(lane) for lane in job_lanes(jobs[:2], 8, epochs_cost)] == [1, 1]  # never an empty lane
    # a cost function overrides epochs: the job named "a" now costs most
    lanes = job_lanes(jobs, 2, lambda j: 100.0 if j.name == "a" else epochs_cost(j))
    assert [[j.name for j in lane] for lane in lanes] == [["a"], ["b", "c", "d", "e"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lanes") / "data"
    generate(SyntheticConfig(num_fields=4, vocab_size=100, rows_per_period=3000, num_periods=2, drift_periods=(),
                             seed=3), root)
    return root


def test_a_job_trains_to_the_same_bits_in_two_lanes_as_in_one(ray_session, world, tmp_path):
    """Three jobs in one worker group, then the same three in two groups at once (kept storage shows
    two Ray Train runs): every best checkpoint holds the same parameters, bit for bit."""
    fm = FeatureMap.load(world)
    train, valid = ray_data.window_split(world, [0, 1], fm, valid_fraction=0.1)
    states, runs = {}, {}
    for lanes in (1, 2):
        jobs = [_job(f"job{s}", 1 + s % 2, str(tmp_path / f"lanes{lanes}" / f"job{s}"), s, fm.to_dict())
                for s in range(3)]
        storage = tmp_path / f"lanes{lanes}"
        outcomes = fit_many(jobs, {"train": train, "valid": valid},
                            ResourcesConfig(num_workers=1, cpus_per_worker=1.0, concurrent_jobs=lanes),
                            name="lanes", storage_dir=storage, keep_storage=True)
        runs[lanes] = sorted(p.name for p in (storage / "ray_storage").iterdir())
        states[lanes] = [load_checkpoint(o.best_checkpoint, expected_feature_map=fm).model.state_dict()
                         for o in outcomes]
        for job, out in zip(jobs, outcomes):
            assert len(out.history) == job.phases[0].epochs and not out.reused
            assert json.loads((Path(job.run_dir) / "outcome.json").read_text())["wall_seconds"] > 0
    # every job finished: nothing trains, so nothing asks for the GPU that use_gpu=true requires
    # (on this CPU-only Ray that question is an error)
    again = fit_many(jobs, {"train": train, "valid": valid},
                     ResourcesConfig(num_workers=1, use_gpu="true", concurrent_jobs=2), name="lanes", storage_dir=storage)
    assert all(o.reused for o in again) and [o.best_checkpoint for o in again] == [o.best_checkpoint for o in outcomes]
    assert len(runs[1]) == 1 and len(runs[2]) == 2, runs
    for one, two in zip(states[1], states[2]):
        assert one.keys() == two.keys()
        assert all(torch.equal(one[k], two[k]) for k in one)
