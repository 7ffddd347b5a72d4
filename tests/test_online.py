"""The online stage on Ray: the tau exchange, prequential windows, drift ground truth, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from crossadapt.config import ExperimentConfig, ModelConfig, OnlineConfig, SyntheticConfig, DataConfig
from crossadapt.data import arrays as A
from crossadapt.data.synthetic import generate
from crossadapt.featuremap import FeatureMap
from crossadapt.models import build_model, load_checkpoint, save_checkpoint
from crossadapt.online.coordinator import OnlineStream, run_online
from crossadapt.train import engine
from crossadapt.train.engine import TrainJob

SYN = SyntheticConfig(num_fields=6, vocab_size=300, rows_per_period=3000, num_periods=8, drift_periods=(6,), seed=5)
TEACHER = ModelConfig(name="dnn", embed_dim=8, hidden_units=(32, 16))
STUDENT = ModelConfig(name="dcnv2", embed_dim=8, hidden_units=(32,), num_cross_layers=2)


def _train(cfg: ModelConfig, fm: FeatureMap, data: engine.Tensors, path: Path) -> str:
    """A few epochs in-process: enough for AUCs well above 0.5, in well under a second."""
    torch.manual_seed(0)
    model = build_model(cfg, fm)
    opt = engine.make_optimizer(model, 3e-3)
    gen = torch.Generator().manual_seed(0)
    n = data["ids"].shape[0]
    for _ in range(4):
        engine.train_steps(model, opt, data, engine.batches(n, 256, n // 256, gen, "cpu"), None,
                           TrainJob(name="x", run_dir="", model=cfg))
    save_checkpoint(path, model, cfg, fm)
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny drifting logs (drift at period 6) with a trained teacher and student."""
    root = tmp_path_factory.mktemp("online") / "data"
    generate(SYN, root)
    fm = FeatureMap.load(root)
    hist = engine.to_tensors(A.read_periods(root, range(0, 4), fm))
    d = root.parent
    return root, fm, _train(TEACHER, fm, hist, d / "teacher.pt"), _train(STUDENT, fm, hist, d / "student.pt")


def _cfg(root: Path, out: Path, **online) -> ExperimentConfig:
    return ExperimentConfig(
        out_dir=str(out), seeds=(0,),
        data=DataConfig(root=str(root), teacher_periods=(0, 3), window_periods=(3, 4), test_periods=(4, 5),
                        stream_periods=(5, 8)),
        online=OnlineConfig(**{"batch_size": 256, "reservoir_size": 2000, **online}),
    )


def test_teacher_weights_change_exactly_every_tau_steps(ray_session, world, tmp_path):
    root, fm, teacher, student = world
    cfg = _cfg(root, tmp_path, tau=3)
    stream = OnlineStream("crossadapt", cfg, fm, tmp_path, teacher, student, None, None, seed=0)
    state = stream._fresh()
    stream._start_actors(state)
    try:
        digests = [ray.get(stream.teacher.weights_digest.remote())]
        for _ in range(2):  # two periods: 12 steps each (3000 rows / 256), so tau straddles the boundary
            state = stream._period(state)
            digests.append(ray.get(stream.teacher.weights_digest.remote()))
        served = ray.get(stream.teacher.served_versions.remote())
    finally:
        stream._kill_actors()
    steps = state["step"]
    assert steps == 24
    # batch i was labelled by the teacher after floor(i / 3) updates: new weights every 3 steps, never between
    assert served == [i // 3 for i in range(steps)]
    assert state["windows"][-1]["teacher_version"] == steps // 3
    assert digests[0] != digests[1] != digests[2]


def test_online_end_to_end(ray_session, world, tmp_path):
    root, fm, teacher, student = world
    cfg = _cfg(root, tmp_path, tau=4)
    out = run_online(cfg, fm, tmp_path, teacher, student)
    assert set(out) == set(cfg.online.methods)
    first = A.read_periods(root, [5], fm)
    before = engine.evaluate(load_checkpoint(student).model, first)
    for m, block in out.items():
        w = block["windows"]
        assert [x["period"] for x in w] == [5, 6, 7]
        # prequential: the first window is scored by the untouched starting student
        assert w[0]["auc"] == pytest.approx(before["auc"], abs=1e-9), m
        assert all(0.5 < x["auc"] < 1 and np.isfinite(x["logloss"]) for x in w), m
        # the detector fires at the injected drift (period 6) and nowhere else
        assert [x["drift_score"] >= cfg.online.theta_high for x in w] == [False, True, False], m
        assert [x["drift_score"] <= cfg.online.theta_low for x in w] == [True, False, True], m
        assert block["steps"] == 3 * 12 and sum(x["rows"] for x in w) == 9000
    ca = out["crossadapt"]["windows"]
    assert [x["r_enh"] for x in ca] == [cfg.online.r_enh_max, cfg.online.r_enh_min, cfg.online.r_enh_max]
    assert all(x["r_enh"] == 0 for m in ("student_only", "frozen_teacher_kd", "sync_codistill")
               for x in out[m]["windows"])
    assert out["crossadapt"]["teacher_updates"] == 36 // 4 and out["sync_codistill"]["teacher_updates"] == 36
    assert out["frozen_teacher_kd"]["teacher_updates"] == 0
    assert out["crossadapt"]["exchange_seconds"] > 0 and out["student_only"]["exchange_seconds"] == 0
    assert "teacher_auc" in ca[0] and "teacher_auc" not in out["student_only"]["windows"][0]
    # a frozen teacher's soft labels do not move: its AUC on each window is the starting teacher's
    ft = load_checkpoint(teacher).model
    for x in out["frozen_teacher_kd"]["windows"]:
        got = engine.evaluate(ft, A.read_periods(root, [x["period"]], fm))["auc"]
        assert x["teacher_auc"] == pytest.approx(got, abs=1e-9)

    # a second run with the same inputs resumes from the commits: nothing is trained again
    again = run_online(cfg, fm, tmp_path, teacher, student, methods=("crossadapt",))
    assert again["crossadapt"]["windows"] == ca  # measured seconds included: loaded, not recomputed
