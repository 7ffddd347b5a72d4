"""The online stage on Ray: the tau exchange, prequential windows, drift ground truth, equal batches,
student_replay = CrossAdapt's batches, resume."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from crossadapt.data import arrays as A
from crossadapt.models import load_checkpoint
from crossadapt.online.coordinator import OnlineStream, run_online, stream_inputs
from crossadapt.train import engine


def test_teacher_weights_change_exactly_every_tau_steps(ray_session, tiny_online_world, online_cfg, tmp_path):
    root, fm, teacher, student = tiny_online_world
    cfg = online_cfg(root, tmp_path, tau=3)
    history, trace = stream_inputs(cfg, fm)
    stream = OnlineStream("crossadapt", cfg, fm, tmp_path, teacher, student, history, trace, seed=0)
    state = stream._fresh()
    stream._start_actors(state)
    try:
        digests = [ray.get(stream.teacher.weights_digest.remote())]
        for _ in range(2):  # two periods; tau = 3 straddles the boundary unless a period's steps divide by 3
            state = stream._period(state)
            digests.append(ray.get(stream.teacher.weights_digest.remote()))
        served = ray.get(stream.teacher.served_versions.remote())
    finally:
        stream._kill_actors()
    steps = state["step"]
    assert steps == sum(w["steps"] for w in state["windows"]) and steps > 2 * 3000 // 256  # history adds steps
    # batch i was labelled by the teacher after floor(i / 3) updates: new weights every 3 steps, never between
    assert served == [i // 3 for i in range(steps)]
    assert state["windows"][-1]["teacher_version"] == steps // 3
    assert digests[0] != digests[1] != digests[2]


def test_online_end_to_end(ray_session, tiny_online_world, online_cfg, tmp_path):
    root, fm, teacher, student = tiny_online_world
    cfg = online_cfg(root, tmp_path, tau=4)
    o = cfg.online
    out = run_online(cfg, fm, tmp_path, teacher, {0: student})
    assert set(out) == set(o.methods) and "student_replay" in out
    first = A.read_periods(root, [5], fm)
    before = engine.evaluate(load_checkpoint(student).model, first)
    for m, block in out.items():
        assert [r["seed"] for r in block["runs"]] == [0] and block["summary"]["seeds"] == [0]
        run = block["runs"][0]
        w = run["windows"]
        assert [x["period"] for x in w] == [5, 6, 7]
        # prequential: the first window is scored by the untouched starting student
        assert w[0]["auc"] == pytest.approx(before["auc"], abs=1e-9), m
        assert all(0.5 < x["auc"] < 1 and np.isfinite(x["logloss"]) for x in w), m
        # causal detector: stable going into the stream, the shift declared inside period 6 (the
        # injected drift) from its own rows, and nowhere else
        assert w[0]["drift_score"] <= o.theta_low, m
        assert [x["shifts"] for x in w] == [0, 1, 0], m
        assert [x["drift_score_max"] >= o.theta_high for x in w] == [False, True, True], m  # 7 starts held
        assert w[1]["drift_score"] <= o.theta_low  # period 6's first batch cannot know about period 6
        # equal compute: every step trains on exactly batch_size rows; all rows but the last partial batch
        assert run["steps"] * o.batch_size == run["rows_trained"] + run["history_rows"], m
        assert run["rows_trained"] + run["rows_untrained"] == sum(x["rows"] for x in w) == 9000, m
        assert 0 <= run["rows_untrained"] < o.batch_size, m
        assert run["exchange_share"] == pytest.approx(run["exchange_seconds"] / run["train_seconds"]), m
        assert run["train_seconds"] == pytest.approx(sum(x["train_seconds"] for x in w)), m
        assert block["summary"]["overall"]["auc"]["mean"] == pytest.approx(np.mean([x["auc"] for x in w]))
    for m in ("student_only", "frozen_teacher_kd", "sync_codistill"):
        run = out[m]["runs"][0]
        assert run["steps"] == 9000 // o.batch_size and run["history_rows"] == 0, m
        assert all(x["r_enh"] == 0 for x in run["windows"]), m
    ca, replay = out["crossadapt"]["runs"][0], out["student_replay"]["runs"][0]
    # CrossAdapt and student_replay: the same batches and steps; they differ only in the teacher
    for key in ("steps", "rows_trained", "history_rows"):
        assert ca[key] == replay[key], key
    assert [x["r_enh"] for x in ca["windows"]] == [x["r_enh"] for x in replay["windows"]]
    assert [x["auc"] for x in ca["windows"]] != [x["auc"] for x in replay["windows"]]
    r = [x["r_enh"] for x in ca["windows"]]
    assert r[0] == o.r_enh_max and r[1] < o.r_enh_max and ca["history_rows"] > 0
    assert ca["steps"] > out["student_only"]["runs"][0]["steps"]
    assert ca["teacher_updates"] == ca["steps"] // 4
    assert out["sync_codistill"]["runs"][0]["teacher_updates"] == out["sync_codistill"]["runs"][0]["steps"]
    assert out["frozen_teacher_kd"]["runs"][0]["teacher_updates"] == 0
    assert ca["exchange_seconds"] > 0 and out["student_only"]["runs"][0]["exchange_seconds"] == 0
    assert "teacher_auc" in ca["windows"][0] and "teacher_auc" not in replay["windows"][0]
    # a frozen teacher's soft labels do not move: its AUC on each window is the starting teacher's
    ft = load_checkpoint(teacher).model
    for x in out["frozen_teacher_kd"]["runs"][0]["windows"]:
        got = engine.evaluate(ft, A.read_periods(root, [x["period"]], fm))["auc"]
        assert x["teacher_auc"] == pytest.approx(got, abs=1e-9)

    # a second run with the same inputs resumes from the commits: nothing is trained again
    again = run_online(cfg, fm, tmp_path, teacher, {0: student}, methods=("crossadapt",))
    assert again["crossadapt"]["runs"][0]["windows"] == ca["windows"]  # measured seconds included: loaded
    assert (tmp_path / "online" / "crossadapt" / "seed0" / "stream.pt").is_file()


def test_streams_side_by_side_give_the_results_of_one_at_a_time(ray_session, tiny_online_world, online_cfg,
                                                                  tmp_path):
    """online.concurrent_streams = 2 replays two streams at once, each with its own actors: every
    window, final test and final student is the one of the streams replayed one after another."""
    root, fm, teacher, student = tiny_online_world
    runs = {}
    for at_once in (1, 2):
        cfg = online_cfg(root, tmp_path / f"x{at_once}", tau=4, concurrent_streams=at_once,
                         methods=("student_only", "crossadapt"))
        cfg.data.stream_periods, cfg.data.test_periods = (6, 7), (7, 8)
        out = run_online(cfg, fm, cfg.out_dir, teacher, {0: student})
        runs[at_once] = [r for m in cfg.online.methods for r in out[m]["runs"]]
    assert len(runs[1]) == len(runs[2]) == 2
    timing = ("wall_seconds", "train_seconds", "eval_seconds", "exchange_seconds", "exchange_share", "seconds")
    for one, two in zip(runs[1], runs[2]):
        assert [{k: v for k, v in w.items() if k not in timing} for w in one["windows"]] == \
            [{k: v for k, v in w.items() if k not in timing} for w in two["windows"]]
        assert one["final_test"] == two["final_test"] and one["steps"] == two["steps"] > 0
        a = load_checkpoint(one["final_checkpoint"], expected_feature_map=fm).model.state_dict()
        b = load_checkpoint(two["final_checkpoint"], expected_feature_map=fm).model.state_dict()
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
