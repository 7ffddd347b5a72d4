"""Reruns on one out_dir are bound to what produced each result (issue 12, item 1).

One sequence of `crossadapt transfer` runs on tiny logs, each checked for what it trained, reused,
kept and dropped:

1. scratch, kd, crossadapt, seed 0;
2. the same config again: nothing trains (Ray Train is never started), the same numbers;
3. another distill.r and data.teacher_periods (the issue's rerun): the teacher and the students
   that depend on it or on r train again and their numbers differ; scratch, which depends on
   neither, is reused;
4. methods=[scratch] with seed 1: completes, trains only that student, and keeps the others;
5. back to the first teacher, methods=[scratch]: the first teacher is reused, and the kd and
   crossadapt records of run 3 (another teacher) are dropped with one message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
from pathlib import Path
from typing import Iterator

import pytest

from crossadapt import log
from crossadapt.config import (
    DataConfig,
    DistillConfig,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    ResourcesConfig,
    SyntheticConfig,
    TrackingConfig,
)
from crossadapt.experiment.run import merge_online, online_fingerprints, run_experiment
from crossadapt.train import ray_train

METHODS = ("scratch", "kd", "crossadapt")


def _no_training(*_a, **_k):
    raise AssertionError("a Ray Train run started although every stage was finished with the same fingerprint")


def _outcome_times(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("outcome.json")}


def _run(cfg: ExperimentConfig, forbid_training: bool = False) -> tuple[dict, str]:
    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf):
        if forbid_training:
            mp.setattr(ray_train, "_train", _no_training)
        run_experiment(cfg, stages=("offline",))
    return json.loads((Path(cfg.out_dir) / "results.json").read_text()), buf.getvalue()


def _auc(results: dict, method: str, seed: int = 0) -> float:
    return next(r["auc"] for r in results["offline_records"] if (r["method"], r["seed"]) == (method, seed))


@contextlib.contextmanager
def _console_lines() -> Iterator[None]:
    """crossadapt's console handler (following ``sys.stdout``) while the runs go, as the command line
    has it, whether or not an earlier test set one up; the earlier handlers and levels come back after."""
    root, ours = logging.getLogger(), logging.getLogger(log.ROOT)
    saved = list(root.handlers), root.level, ours.level
    log.setup(log.NORMAL, propagate_env=False)
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])


@pytest.fixture(scope="module")
def reruns(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rerun")
    out = tmp / "run"
    first = ExperimentConfig(
        out_dir=str(out), seeds=(0,), methods=METHODS,
        data=DataConfig(root=str(tmp / "data"), teacher_periods=(0, 3), window_periods=(3, 5), test_periods=(5, 6),
                        stream_periods=(6, 7)),
        synthetic=SyntheticConfig(num_fields=4, vocab_size=200, rows_per_period=2000, num_periods=7,
                                  drift_periods=(6,), seed=3),
        teacher=ModelConfig(name="dnn", embed_dim=8, hidden_units=(16,)),
        student=ModelConfig(name="dcnv2", embed_dim=16, hidden_units=(16,), num_cross_layers=1),
        optim=OptimConfig(lr=3e-3, epochs=2, patience=1, batch_size=256),
        # a 4-field world of 2000-row periods: its teacher is not judged here (test_teacher_check does)
        distill=DistillConfig(phase1_epochs=1, phase2_epochs=1, r=0.2, batch_size=64, allow_weak_teacher=True),
        resources=ResourcesConfig(num_workers=1, cpus_per_worker=1.0, use_gpu="false"),
        tracking=TrackingConfig(wandb="disabled"),
    )
    changed = dataclasses.replace(first, distill=dataclasses.replace(first.distill, r=0.4),
                                  data=dataclasses.replace(first.data, teacher_periods=(0, 2)))
    runs: dict = {"cfg": first, "changed": changed}
    with _console_lines():
        runs["r1"], _ = _run(first)
        runs["times1"] = _outcome_times(out)
        runs["r2"], runs["log2"] = _run(first, forbid_training=True)
        runs["times2"] = _outcome_times(out)
        runs["r3"], runs["log3"] = _run(changed)
        runs["r4"], runs["log4"] = _run(dataclasses.replace(changed, methods=("scratch",), seeds=(1,)))
        runs["r5"], runs["log5"] = _run(dataclasses.replace(first, methods=("scratch",)), forbid_training=True)
    return runs


def test_same_config_rerun_reuses_every_stage(reruns):
    r1, r2 = reruns["r1"], reruns["r2"]
    assert reruns["times2"] == reruns["times1"] and len(reruns["times1"]) == 4  # teacher + 3 students untouched
    assert r2["teacher"]["reused"] and not r1["teacher"]["reused"]
    assert all(r["reused"] for r in r2["offline_records"]) and not any(r["reused"] for r in r1["offline_records"])
    for m in METHODS:
        assert _auc(r2, m) == _auc(r1, m)
    assert r2["fingerprints"] == r1["fingerprints"]
    assert "reused, not retrained" in reruns["log2"]


def test_changed_config_retrains_what_it_determines(reruns):
    r1, r3 = reruns["r1"], reruns["r3"]
    assert r3["config"]["distill"]["r"] == 0.4 and r3["config"]["data"]["teacher_periods"] == [0, 2]
    assert not r3["teacher"]["reused"] and r3["teacher"]["fingerprint"] != r1["teacher"]["fingerprint"]
    assert r3["teacher"]["checkpoint"] != r1["teacher"]["checkpoint"]
    assert r3["teacher"]["auc"] != r1["teacher"]["auc"]
    reused = {r["method"]: r["reused"] for r in r3["offline_records"]}
    assert reused == {"scratch": True, "kd": False, "crossadapt": False}
    for m in ("kd", "crossadapt"):  # new teacher (and new r): new numbers
        assert _auc(r3, m) != _auc(r1, m), m
    assert _auc(r3, "scratch") == _auc(r1, "scratch")  # depends on neither
    # the checkpoints of what the config names, in folders named by their fingerprints
    for rec in r3["offline_records"]:
        assert Path(rec["checkpoint"]).parent.name == rec["fingerprint"][:16]


def test_fewer_methods_rerun_completes_and_keeps_the_others(reruns):
    r3, r4 = reruns["r3"], reruns["r4"]
    keys = [(r["method"], r["seed"]) for r in r4["offline_records"]]
    assert keys == [("scratch", 0), ("scratch", 1), ("kd", 0), ("crossadapt", 0)]
    assert set(r4["offline"]) == set(METHODS) and r4["offline"]["scratch"]["seed"] == [0, 1]
    for m in ("kd", "crossadapt"):
        assert _auc(r4, m) == _auc(r3, m)
    assert r4["offline_checkpoints"]["crossadapt"] == r3["offline_checkpoints"]["crossadapt"]
    assert r4["projection"] == r3["projection"]  # the kept crossadapt came from this projection
    assert "kept 3 earlier record(s)" in reruns["log4"]


def test_records_of_another_teacher_are_dropped(reruns):
    r1, r5 = reruns["r1"], reruns["r5"]
    assert r5["teacher"]["reused"] and r5["teacher"]["checkpoint"] == r1["teacher"]["checkpoint"]
    assert [(r["method"], r["seed"]) for r in r5["offline_records"]] == [("scratch", 0), ("scratch", 1)]
    assert set(r5["offline"]) == {"scratch"} and set(r5["offline_checkpoints"]) == {"scratch"}
    assert "dropped 2 earlier record(s)" in reruns["log5"] and "kd-seed0, crossadapt-seed0" in reruns["log5"]
    report = (Path(reruns["cfg"].out_dir) / "report.md").read_text()
    assert "## Provenance" in report and r5["fingerprints"]["teacher"][:16] in report


def test_online_blocks_of_other_methods_are_kept_while_they_match(tiny_online_world, online_cfg, tmp_path):
    root, fm, teacher, student = tiny_online_world
    cfg = online_cfg(root, tmp_path)
    students = {0: student}
    fps = online_fingerprints(cfg, fm, ["student_only", "crossadapt"], teacher, students)
    old = {"student_only": {"windows": [], "fingerprint": fps["student_only"]},
           "sync_codistill": {"windows": [], "fingerprint": "made-from-another-student"}}
    merged = merge_online(cfg, fm, old, {"crossadapt": {"windows": [{"auc": 0.7}]}}, teacher, students)
    assert set(merged) == {"student_only", "crossadapt"}
    assert merged["crossadapt"]["fingerprint"] == fps["crossadapt"]
    # the same blocks against another starting student: the earlier one is stale
    assert set(merge_online(cfg, fm, old, {}, teacher, {0: teacher})) == set()
