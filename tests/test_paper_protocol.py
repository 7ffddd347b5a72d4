"""The released code's protocol keys, from the typed config to what trains (no Ray).

``optim.embed_lr`` / ``embed_weight_decay``, ``distill.embed_lr``, ``distill.loss_form``,
``distill.sample_mode: positive_rate`` with ``distill.positive_rate``, ``distill.fresh_sample_per_phase``,
``online.loss_form`` / ``student_embed_lr`` / ``teacher_embed_lr`` / ``weight_decay`` /
``embed_weight_decay``: each is followed to the job, the
optimiser, the loss or the saved model it must change, and the defaults are checked to leave
today's jobs as they were. The math of each piece (Adam's first step, the convex loss by hand, the
sampler's rate and the correction's calibration) is in test_optim.py, test_losses.py and
test_sampling.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from crossadapt import fingerprint as F
from crossadapt.config import ExperimentConfig, ModelConfig, load_config, to_dict
from crossadapt.data.sampling import label_mask, positive_rate_plan
from crossadapt.errors import CheckpointError, ConfigError
from crossadapt.experiment import offline
from crossadapt.experiment.preflight import check_models
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.losses import distillation_loss
from crossadapt.metrics import prediction_bias
from crossadapt.models import build_model, load_checkpoint, save_checkpoint
from crossadapt.models.checkpoint import check_model_matches
from crossadapt.online.learner import OnlineLearner, PeriodicTeacher
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob

FM = FeatureMap("toy", tuple(FieldSpec(f"f{i}", vocab_size=20) for i in range(3)))
SMALL = ModelConfig(name="dnn", embed_dim=4, hidden_units=(8,))
PAPER_KEYS = {"optim.embed_lr": 0.1, "optim.embed_weight_decay": 0.01, "distill.embed_lr": 0.05,
              "distill.loss_form": "convex", "distill.alpha": 0.7, "distill.sample_mode": "positive_rate",
              "distill.positive_rate": 0.5, "distill.fresh_sample_per_phase": True, "online.loss_form": "convex",
              "online.alpha": 0.7, "online.teacher_alpha": 0.0, "online.student_embed_lr": 0.2,
              "online.teacher_embed_lr": 0.3, "online.weight_decay": 1e-4, "online.embed_weight_decay": 1e-5}


@pytest.fixture(autouse=True)
def _held_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs built here name data that does not exist: take the held path without reading footers (the
    held/streamed choice is tests/test_streaming.py's subject)."""
    monkeypatch.setattr(offline, "stream_buffer_rows", lambda *a, **k: 0)


def _arrays(n: int, seed: int, label: np.ndarray | None = None) -> dict:
    rng = np.random.default_rng(seed)
    return {"ids": rng.integers(0, 20, (n, 3)), "dense": np.zeros((n, 0), np.float32),
            "label": rng.integers(0, 2, n).astype(np.float32) if label is None else label}


def _groups(opt: torch.optim.Optimizer) -> list[tuple]:
    return [(g.get("name"), g["lr"], g["weight_decay"]) for g in opt.param_groups]


# ---------------------------------------------------------------- config


def test_defaults_leave_todays_jobs_unchanged(tmp_path: Path) -> None:
    """Default config: one Adam group, additive loss, no shift, one sample for every phase."""
    cfg = ExperimentConfig()
    assert (cfg.optim.embed_lr, cfg.optim.embed_weight_decay, cfg.distill.embed_lr) == (None, None, None)
    assert (cfg.distill.loss_form, cfg.online.loss_form, cfg.distill.sample_mode) == ("additive", "additive", "uniform")
    assert not cfg.distill.fresh_sample_per_phase and cfg.student.logit_offset == 0.0
    jobs = [offline.history_job(cfg, FM, "teacher", tmp_path, SMALL)] + [
        offline.student_job(m, 0, cfg, FM, "t.pt", "i.pt", tmp_path, SMALL) for m in cfg.methods]
    for job in jobs:
        assert all(p.embed_lr is None for p in job.phases) and job.embed_weight_decay is None
        assert (job.loss_form, job.logit_shift, job.phase_train_keys) == ("additive", 0.0, ())
        opt = engine.make_optimizer(build_model(SMALL, FM), job.phases[-1].lr, job.weight_decay,
                                    job.phases[-1].embed_lr, job.embed_weight_decay)
        assert len(opt.param_groups) == 1 and "name" not in opt.param_groups[0]  # the optimiser of before


def test_new_keys_merge_and_bad_values_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim: {embed_lr: 1e-1}\ndistill: {loss_form: convex, alpha: 0.7, embed_lr: null}\n")
    cfg = load_config(path, {"online.student_embed_lr": 0.2})
    assert (cfg.optim.embed_lr, cfg.distill.embed_lr, cfg.online.student_embed_lr) == (0.1, None, 0.2)
    assert cfg.distill.loss_form == "convex" and cfg.optim.lr == ExperimentConfig().optim.lr  # merged, not replaced
    for key, value, message in (
            ("optim.embed_lr", 0, "optim.embed_lr: must be > 0"),
            ("optim.embed_weight_decay", -1, "optim.embed_weight_decay: must be >= 0"),
            ("distill.embed_lr", "fast", "distill.embed_lr: expected a number"),
            ("distill.loss_form", "mixed", "distill.loss_form: must be one of"),
            ("distill.sample_mode", "biased", "distill.sample_mode: must be one of"),
            ("distill.positive_rate", 1.0, "distill.positive_rate: must be in \\(0, 1\\)"),
            ("distill.fresh_sample_per_phase", "yes", "distill.fresh_sample_per_phase: expected true/false"),
            ("online.loss_form", "x", "online.loss_form: must be one of"),
            ("online.teacher_embed_lr", -0.1, "online.teacher_embed_lr: must be > 0"),
            ("online.embed_weight_decay", -1e-3, "online.embed_weight_decay: must be >= 0")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, {key: value})
    # alpha beyond 1 has no meaning in the convex form: (1 - alpha) would weight the labels negatively
    with pytest.raises(ConfigError, match="distill.alpha: distill.loss_form convex needs 0 <= alpha <= 1"):
        load_config(None, {"distill.loss_form": "convex", "distill.alpha": 1.5})
    with pytest.raises(ConfigError, match="online.teacher_alpha: online.loss_form convex"):
        load_config(None, {"online.loss_form": "convex", "online.alpha": 0.5, "online.teacher_alpha": 2.0})


def test_preflight_refuses_a_logit_offset_and_an_impossible_sample(tmp_path: Path) -> None:
    cfg = load_config(None, {"student.logit_offset": -1.0})
    with pytest.raises(ConfigError, match="student.logit_offset: set by training"):
        check_models(cfg, None)
    # a pool of 10 % clicks cannot give r = 0.5 at a 50 % rate: 2.5x its positives would be needed
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "data"
    labels = np.zeros(1000, np.int8)
    labels[::10] = 1
    for k in range(2):
        (root / f"period={k}").mkdir(parents=True)
        pq.write_table(pa.table({"label": labels}), root / f"period={k}" / "part-0.parquet")
    fm = FeatureMap("toy", (FieldSpec("f0", vocab_size=2),))
    cfg = load_config(None, {"data.root": str(root), "data.window_periods": [0, 2], "data.test_periods": [2, 3],
                             "data.stream_periods": [3, 4], "data.teacher_periods": [0, 2],
                             "distill.sample_mode": "positive_rate", "distill.r": 0.5})
    from crossadapt.experiment.preflight import check_sample

    with pytest.raises(ConfigError, match=r"distill.r = 0.5 at a target positive rate of 0.5 needs 2.500"):
        check_sample(cfg, fm)
    plan = offline.sample_plan(dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, r=0.1)), fm)
    assert plan.base_rate == pytest.approx(0.1)  # the pool: the window before its 10 % validation tail


# ---------------------------------------------------------------- config -> jobs


def test_keys_reach_every_offline_job(tmp_path: Path) -> None:
    cfg = load_config(None, PAPER_KEYS)
    teacher = offline.history_job(cfg, FM, "teacher", tmp_path, SMALL)
    assert [p.embed_lr for p in teacher.phases] == [0.1] and teacher.embed_weight_decay == 0.01

    def job(m: str) -> TrainJob:
        return offline.student_job(m, 3, cfg, FM, "t.pt", "i.pt", tmp_path, SMALL, logit_shift=1.25)

    assert [p.embed_lr for p in job("scratch").phases] == [0.1]  # baselines train like the teacher
    ca = job("crossadapt")
    assert [(p.freeze_embeddings, p.embed_lr) for p in ca.phases] == [(True, None), (False, 0.05)]
    assert ca.phase_train_keys == ("sample3", "sample3-phase1") and engine.phase_keys(ca) == list(ca.phase_train_keys)
    assert (ca.loss_form, ca.logit_shift, ca.embed_weight_decay, ca.alpha) == ("convex", 1.25, 0.01, 0.7)
    joint = job("crossadapt_no_phases")  # one phase: one sample, embeddings at distill.embed_lr
    assert [p.embed_lr for p in joint.phases] == [0.05] and joint.phase_train_keys == ()
    for m in ("scratch", "kd", "crossadapt_full_window"):  # the whole window: no sample, no shift
        assert (job(m).logit_shift, job(m).phase_train_keys, job(m).train_key) == (0.0, (), "window")
    assert job("kd").loss_form == "convex"
    assert {offline.sample_seed(s, p) for s in range(3) for p in range(2)} == {0, 1, 2, 1_000_003, 1_000_004,
                                                                                1_000_005}


def test_tune_trial_draws_a_positive_rate_sample_per_phase(tmp_path: Path) -> None:
    """An offline Tune trial samples as the offline stage does: with fresh_sample_per_phase one
    positive-rate sample per phase (its own seed, the job's dataset names), at the target rate."""
    from crossadapt.tune.trials import trial_samples

    rng = np.random.default_rng(0)
    n = 40_000
    pool = _arrays(n, 1, label=(rng.random(n) < 0.2).astype(np.float32))  # pool click rate ~0.2
    cfg = load_config(None, {**PAPER_KEYS, "distill.r": 0.1})
    plan = positive_rate_plan(float(pool["label"].mean()), 0.1, 0.5)
    job = offline.student_job("crossadapt", 2, cfg, FM, "t.pt", "i.pt", tmp_path, SMALL, logit_shift=plan.logit_shift)
    samples = trial_samples(pool, job, 2, cfg.distill.r, plan)
    assert sorted(samples) == sorted(engine.phase_keys(job)) == ["sample2", "sample2-phase1"]
    for s in samples.values():
        # ~4,000 rows at rate 0.5: binomial sd of the rate 0.008, of the size ~60 rows; 4 sd
        assert abs(s["label"].mean() - 0.5) < 0.032 and abs(len(s["label"]) - 0.1 * n) < 240
    a, b = (samples[k]["ids"] for k in ("sample2", "sample2-phase1"))
    assert a.shape != b.shape or not np.array_equal(a, b)  # two draws, not one reused
    # phase 0 is drawn with the seed the offline stage gives it (sample_seed(seed, 0)), row by row
    expected = np.flatnonzero(label_mask(pool["label"], plan, np.random.default_rng(offline.sample_seed(2, 0))))
    np.testing.assert_array_equal(samples["sample2"]["ids"], pool["ids"][expected])
    # uniform mode, one sample for every phase: exactly round(r n) rows
    uniform = offline.student_job("crossadapt", 2, load_config(None, {"distill.r": 0.1}), FM, "t.pt", "i.pt",
                                  tmp_path, SMALL)
    one = trial_samples(pool, uniform, 2, 0.1, None)
    assert list(one) == ["sample2"] and len(one["sample2"]["label"]) == round(0.1 * n)


def test_fingerprint_binds_every_new_key(tmp_path: Path) -> None:
    """A student's fingerprint changes with each key that changes what it learns or the rows it sees."""
    teacher = TrainJob(name="teacher", run_dir="", model=SMALL, fingerprint="t" * 64)

    def fp(overrides: dict, positive=None) -> str:
        cfg = load_config(None, overrides)
        plan = offline.OfflinePlan(cfg, FM, tmp_path, "c" * 64, {"window": "w", "teacher": "h", "test": "x"}, teacher,
                                   "p" * 64, positive=positive)
        return plan.student("crossadapt", 0).fingerprint

    base = fp({})
    changed = [fp({"distill.loss_form": "convex", "distill.alpha": 0.7}), fp({"distill.embed_lr": 0.1}),
               fp({"optim.embed_weight_decay": 0.1}), fp({"distill.fresh_sample_per_phase": True}),
               fp({"distill.sample_mode": "positive_rate"}, positive_rate_plan(0.2, 0.1, 0.5)),
               fp({"distill.sample_mode": "positive_rate", "distill.positive_rate": 0.4},
                  positive_rate_plan(0.2, 0.1, 0.4))]
    assert len({base, *changed}) == 1 + len(changed)
    assert fp({"optim.embed_lr": 0.1}) == base  # the offline student's phases do not use optim.embed_lr
    scratch = offline.OfflinePlan(load_config(None, {"optim.embed_lr": 0.1}), FM, tmp_path, "c" * 64,
                                  {"window": "w"}, teacher, "p" * 64).student("scratch", 0).fingerprint
    assert scratch != offline.OfflinePlan(ExperimentConfig(), FM, tmp_path, "c" * 64, {"window": "w"}, teacher,
                                          "p" * 64).student("scratch", 0).fingerprint


# ---------------------------------------------------------------- jobs -> training


def test_run_phases_uses_each_phases_data_rates_and_the_jobs_loss_form() -> None:
    """Phase 1 frozen on one set, phase 2 with two Adam groups on another; the loss of each epoch is
    the convex form's. The recorded loss is the mean over the epoch's steps of the loss before each
    step, so a one-step epoch with lr tiny enough gives the loss of the initial model exactly."""
    a, b = engine.to_tensors(_arrays(96, 0)), engine.to_tensors(_arrays(160, 1))
    za, zb = torch.linspace(-2, 2, 96), torch.linspace(3, -1, 160)
    job = TrainJob(name="t", run_dir="", model=SMALL, feature_map=FM.to_dict(), batch_size=1024, patience=5,
                   phases=(Phase(1, 1e-3, freeze_embeddings=True), Phase(1, 1e-3, embed_lr=0.1)),
                   alpha=0.7, temperature=4.0, kd_kind="bce", loss_form="convex", embed_weight_decay=0.5)
    torch.manual_seed(0)
    model = build_model(SMALL, FM)
    seen: list[tuple] = []
    z0 = engine.predict_logits(model, a)
    expected_first = distillation_loss(z0, a["label"], za, 0.7, "bce", 4.0, "convex").item()
    additive = distillation_loss(z0, a["label"], za, 0.7, "bce", 4.0).item()
    engine.run_phases(model, job, [a, b], None, [za, zb],
                      on_epoch=lambda r, s, m, opt, *_: seen.append((r["samples"], r["loss"], _groups(opt))))
    assert [s[0] for s in seen] == [96, 160]  # each phase on its own rows
    assert seen[0][1] == pytest.approx(expected_first, rel=1e-6)  # float32 forward, one batch
    assert abs(seen[0][1] - additive) > 0.1  # the form made the difference
    assert seen[0][2] == [("dense", 1e-3, 0.0)]  # embeddings frozen: their group is left out
    assert seen[1][2] == [("dense", 1e-3, 0.0), ("embedding", 0.1, 0.5)]


def test_a_positive_rate_student_is_calibrated_by_its_saved_offset(tmp_path: Path) -> None:
    """End to end without Ray: a ~12 % world, a 50 % sample, KD targets moved by the shift while
    training, the model saved as Ray Train saves it (``logit_offset = -shift``) and reloaded.

    The uncorrected student over-predicts clicks as a model of the sample's prior does (+140 %);
    the reloaded one is within a few percent: the offset has the right sign and reaches the model
    wherever its checkpoint is loaded. Its AUC is the uncorrected one (a constant shift)."""
    rng = np.random.default_rng(0)
    effects = rng.normal(0, 1.0, (3, 20))

    def world(n: int, seed: int) -> dict:
        r = np.random.default_rng(seed)
        ids = r.integers(0, 20, (n, 3))
        z = effects[np.arange(3), ids].sum(1) - 2.5
        return {"ids": ids, "dense": np.zeros((n, 0), np.float32),
                "label": (r.random(n) < 1 / (1 + np.exp(-z))).astype(np.float32), "z": z}

    pool, test = world(60_000, 1), world(60_000, 2)
    plan = positive_rate_plan(float(pool["label"].mean()), 0.2, 0.5)
    keep = label_mask(pool["label"], plan, np.random.default_rng(3))
    sample = {k: pool[k][keep] for k in ("ids", "dense", "label")}
    assert abs(sample["label"].mean() - 0.5) < 0.02
    lr_cfg = ModelConfig(name="lr", embed_dim=1)
    job = TrainJob(name="s", run_dir="", model=lr_cfg, feature_map=FM.to_dict(), batch_size=256,
                   phases=(Phase(4, 0.05),), alpha=0.5, kd_kind="mse", logit_shift=plan.logit_shift)
    teacher_z = torch.tensor(pool["z"][keep], dtype=torch.float32) + job.logit_shift  # what job_teacher_logits gives
    torch.manual_seed(0)
    model = build_model(lr_cfg, FM)
    engine.run_phases(model, job, engine.to_tensors(sample), None, teacher_z)
    path = save_checkpoint(tmp_path / "best.pt", model, dataclasses.replace(lr_cfg, logit_offset=-job.logit_shift), FM)
    loaded = load_checkpoint(path).model
    test_a = {k: test[k] for k in ("ids", "dense", "label")}
    raw = prediction_bias(test["label"], engine.predict_proba(model, test_a))
    corrected = prediction_bias(test["label"], engine.predict_proba(loaded, test_a))
    # what a perfectly fitted model of the sample's prior would over-predict by (1.4 here)
    expected_raw = prediction_bias(test["label"], 1 / (1 + np.exp(-(test["z"] + plan.logit_shift))))
    assert raw == pytest.approx(expected_raw, abs=0.15) and expected_raw > 1.0, (raw, expected_raw)
    assert abs(corrected) < 0.05 and abs(corrected) <= abs(raw), (raw, corrected)
    assert engine.evaluate(loaded, test_a)["auc"] == pytest.approx(engine.evaluate(model, test_a)["auc"], abs=1e-6)
    # the offset is part of the checkpoint's model, not of the config it must match
    check_model_matches(path, load_checkpoint(path).model_cfg, "student", lr_cfg)
    with pytest.raises(CheckpointError, match="student.embed_dim"):
        check_model_matches(path, load_checkpoint(path).model_cfg, "student", dataclasses.replace(lr_cfg, embed_dim=2))


def test_logit_offset_adds_exactly_and_teacher_targets_move_by_the_shift(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = build_model(SMALL, FM)
    torch.manual_seed(0)
    shifted = build_model(dataclasses.replace(SMALL, logit_offset=-1.5), FM)
    data = engine.to_tensors(_arrays(64, 5))
    assert torch.equal(engine.predict_logits(shifted, data), engine.predict_logits(plain, data) - 1.5)
    teacher = save_checkpoint(tmp_path / "teacher.pt", plain, SMALL, FM)
    job = TrainJob(name="s", run_dir="", model=SMALL, feature_map=FM.to_dict(), teacher_checkpoint=str(teacher),
                   alpha=0.7, logit_shift=1.1)
    assert torch.equal(engine.job_teacher_logits(job, FM, data), engine.predict_logits(plain, data) + 1.1)


def test_online_learners_take_their_embed_lr_and_loss_form() -> None:
    torch.manual_seed(0)
    student = OnlineLearner(build_model(SMALL, FM), lr=1e-3, kd_kind="bce", temperature=4.0, embed_lr=0.2,
                            loss_form="convex")
    assert _groups(student.opt) == [("dense", 1e-3, 0.0), ("embedding", 0.2, 0.0)]
    batch = _arrays(32, 7)
    peer = np.linspace(-1, 1, 32).astype(np.float32)
    z = engine.predict_logits(student.model, engine.to_tensors(batch))
    expected = distillation_loss(z, torch.from_numpy(batch["label"]), torch.from_numpy(peer), 0.7, "bce", 4.0,
                                 "convex").item()
    assert student.step(batch, peer, alpha=0.7) == pytest.approx(expected, rel=1e-6)
    teacher = PeriodicTeacher(build_model(SMALL, FM), lr=2e-3, embed_lr=0.3, loss_form="convex")
    assert _groups(teacher.opt) == [("dense", 2e-3, 0.0), ("embedding", 0.3, 0.0)]
    assert len(OnlineLearner(build_model(SMALL, FM), lr=1e-3).opt.param_groups) == 1  # default: as before


def test_online_config_keys_reach_the_actors_learners(tmp_path: Path) -> None:
    """The actor classes (plain classes; Ray wraps them in crossadapt.online.actors) build their
    learners from the typed ``online`` section; the online fingerprint binds the new keys."""
    from crossadapt.online.actors import StudentWorker, TeacherWorker

    cfg = load_config(None, PAPER_KEYS)
    ckpt = str(save_checkpoint(tmp_path / "m.pt", build_model(SMALL, FM), SMALL, FM))
    student = StudentWorker(ckpt, FM.to_dict(), to_dict(cfg.online), device="cpu").learner
    teacher = TeacherWorker(ckpt, FM.to_dict(), to_dict(cfg.online), device="cpu").learner
    assert _groups(student.opt) == [("dense", cfg.online.student_lr, 1e-4), ("embedding", 0.2, 1e-5)]
    assert _groups(teacher.opt) == [("dense", cfg.online.teacher_lr, 1e-4), ("embedding", 0.3, 1e-5)]
    assert student.loss_form == teacher.loss_form == "convex"
    names = set(to_dict(cfg.online)) - set(F.ONLINE_EXCLUDED)
    assert {"loss_form", "student_embed_lr", "teacher_embed_lr", "weight_decay", "embed_weight_decay"} <= names
    # weight decay alone (no embed_* key) keeps one Adam group, as offline
    plain = load_config(None, {"online.weight_decay": 1e-4})
    alone = StudentWorker(ckpt, FM.to_dict(), to_dict(plain.online), device="cpu").learner
    assert _groups(alone.opt) == [(None, plain.online.student_lr, 1e-4)]


def test_tables_note_both_biases_of_corrected_students() -> None:
    from crossadapt.experiment.tables import correction_note

    recs = [{"method": "crossadapt", "bias": 0.01, "bias_uncorrected": 1.2, "logloss": 0.4, "logloss_uncorrected": 0.9},
            {"method": "crossadapt", "bias": -0.03, "bias_uncorrected": 1.4, "logloss": 0.42,
             "logloss_uncorrected": 0.95},
            {"method": "scratch", "bias": 0.1, "bias_uncorrected": None, "logloss": 0.5, "logloss_uncorrected": None}]
    note = correction_note({"offline_records": recs})
    # mean ± sample std: (0.01, -0.03) -> -0.010 ± 0.028; (1.2, 1.4) -> 1.300 ± 0.141
    assert len(note) == 1 and "crossadapt bias -0.010 ± 0.028 (without: +1.300 ± 0.141)" in note[0]
    assert "scratch" not in note[0]
    assert correction_note({"offline_records": recs[2:]}) == []


def test_an_exported_student_keeps_its_logit_offset(tmp_path: Path) -> None:
    """``crossadapt export`` traces the offset's forward hook: the program predicts corrected logits."""
    from crossadapt.models.export import check_program, export_program, probe_batch

    fm = FeatureMap("t", tuple(FieldSpec(f"f{i}", vocab_size=20) for i in range(3)))
    cfg = ModelConfig(name="dnn", embed_dim=4, hidden_units=(8,), logit_offset=-2.0)
    torch.manual_seed(0)
    corrected = build_model(cfg, fm).eval()
    torch.manual_seed(0)
    raw = build_model(dataclasses.replace(cfg, logit_offset=0.0), fm).eval()
    ids, dense = probe_batch(fm, 16)
    path = tmp_path / "model.pt2"
    export_program(corrected, fm, path)
    assert check_program(path, corrected, fm) == 0.0
    program = torch.export.load(path).module()
    with torch.no_grad():  # float32 logits of the same weights: the shift is exact up to rounding
        assert torch.allclose(program(ids, dense), raw(ids, dense) - 2.0, atol=1e-6)
