"""The online stage on Ray: the tau exchange, prequential windows, drift ground truth, resume."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from crossadapt.data import arrays as A
from crossadapt.models import load_checkpoint
from crossadapt.online.coordinator import OnlineStream, run_online
from crossadapt.train import engine


def test_teacher_weights_change_exactly_every_tau_steps(ray_session, tiny_online_world, online_cfg, tmp_path):
    root, fm, teacher, student = tiny_online_world
    cfg = online_cfg(root, tmp_path, tau=3)
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


def test_online_end_to_end(ray_session, tiny_online_world, online_cfg, tmp_path):
    root, fm, teacher, student = tiny_online_world
    cfg = online_cfg(root, tmp_path, tau=4)
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
