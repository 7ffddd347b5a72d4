"""Online learners without Ray: when the teacher's weights change, what an update trains on, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossadapt.config import ModelConfig, OnlineConfig
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.models import build_model
from crossadapt.online.learner import OnlineLearner, PeriodicTeacher
from crossadapt.online.methods import ONLINE_METHODS, get_online_method, teacher_interval

FM = FeatureMap("t", tuple(FieldSpec(f"f{i}", vocab_size=30) for i in range(4)))
CFG = ModelConfig(name="dnn", embed_dim=4, hidden_units=(16,))


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(CFG, FM)


def _batch(seed: int, n: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"ids": rng.integers(0, 30, (n, 4)), "dense": np.zeros((n, 0), np.float32),
            "label": rng.integers(0, 2, n).astype(np.float32)}


def _digest(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_teacher_weights_change_only_in_update():
    t = PeriodicTeacher(_model(), lr=1e-2)
    w0 = _digest(t.model)
    for i in range(5):
        t.serve(_batch(i))
        assert torch.equal(_digest(t.model), w0)  # serving never moves the weights
    assert t.version == 0 and len(t.pending) == 5 and t.served_versions == [0] * 5
    assert t.update() == 1
    assert not torch.equal(_digest(t.model), w0) and t.pending == []
    # one optimizer step per served batch, one version per update
    assert all(int(s["step"]) == 5 for s in t.opt.state_dict()["state"].values())
    assert t.update() == 1  # nothing served since: nothing to learn, no new version
    t.serve(_batch(9))
    assert t.served_versions == [0] * 5 + [1]


def test_teacher_update_equals_plain_steps_on_the_served_batches():
    a, b = PeriodicTeacher(_model(), lr=1e-2), OnlineLearner(_model(), lr=1e-2)
    batches = [_batch(i) for i in range(3)]
    for x in batches:
        a.serve(x)
    a.update()
    for x in batches:
        b.step(x)
    assert torch.equal(_digest(a.model), _digest(b.model))


def test_teacher_distils_from_the_peer_it_received():
    peer = _model(seed=3)
    plain = PeriodicTeacher(_model(), lr=1e-2)
    codist = PeriodicTeacher(_model(), lr=1e-2, peer=_model(seed=4), peer_alpha=1.0)
    codist.load_peer(peer.state_dict())
    assert torch.equal(_digest(codist.peer), _digest(peer))
    for t in (plain, codist):
        t.serve(_batch(0))
        t.update()
    assert not torch.equal(_digest(plain.model), _digest(codist.model))
    with pytest.raises(RuntimeError, match="peer"):
        plain.load_peer(peer.state_dict())


def test_state_round_trip_continues_exactly():
    a = PeriodicTeacher(_model(), lr=1e-2)
    a.serve(_batch(0))
    a.update()
    a.serve(_batch(1))  # one batch pending across the save
    b = PeriodicTeacher(_model(seed=7), lr=1e-2)
    b.load_state_dict(a.state_dict())
    for t in (a, b):
        t.serve(_batch(2))
        t.update()
    assert torch.equal(_digest(a.model), _digest(b.model)) and a.version == b.version == 2
    assert a.served_versions == b.served_versions == [0, 1, 1]


def test_student_step_uses_soft_labels_only_with_alpha():
    x = _batch(0)
    z = np.full(64, 3.0, np.float32)
    s0, s1, s2 = (OnlineLearner(_model(), lr=1e-2) for _ in range(3))
    s0.step(x)
    s1.step(x, z, alpha=0.0)
    s2.step(x, z, alpha=1.0)
    assert torch.equal(_digest(s0.model), _digest(s1.model))
    assert not torch.equal(_digest(s0.model), _digest(s2.model))


def test_method_table():
    cfg = OnlineConfig(tau=7)
    assert set(ONLINE_METHODS) == {"student_only", "student_replay", "frozen_teacher_kd", "sync_codistill", "crossadapt"}
    assert set(cfg.methods) == set(ONLINE_METHODS)  # every method runs by default
    assert teacher_interval(get_online_method("crossadapt"), cfg) == 7
    assert teacher_interval(get_online_method("sync_codistill"), cfg) == 1
    assert teacher_interval(get_online_method("frozen_teacher_kd"), cfg) is None
    assert not get_online_method("student_only").kd and get_online_method("crossadapt").history
    # student_replay: CrossAdapt's history without a teacher
    replay, ca = get_online_method("student_replay"), get_online_method("crossadapt")
    assert replay.history == ca.history and not replay.kd and teacher_interval(replay, cfg) is None
    with pytest.raises(Exception, match="valid methods"):
        get_online_method("nope")
