"""Ray Tune: search-space validation, and an end-to-end ASHA search of 4 trials with its results table,
resumed with the same config and started afresh with another."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

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
from crossadapt.data.synthetic import generate
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.tune.space import apply_params, load_space

REPO = Path(__file__).resolve().parents[1]


def _space(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["offline", "online", "smoke"])
def test_shipped_spaces_are_valid(name):
    space = load_space(REPO / "tune_spaces" / f"{name}.yaml")
    assert space.keys and space.metric in ("valid_auc", "online_auc")


@pytest.mark.parametrize(
    "text,match",
    [
        ("params:\n  distill.rr: {type: uniform, low: 0.1, high: 0.2}\n", r"distill\.rr"),
        ("params:\n  distill.r: {type: normal, low: 0.1, high: 0.2}\n", r"params\.distill\.r\.type"),
        ("params:\n  distill.r: {type: uniform, low: 0.3, high: 0.2}\n", "low < high"),
        ("params:\n  distill.r: {type: uniform, low: 0.1, high: 1.5}\n", r"distill\.r"),  # r must stay in (0, 1]
        ("params:\n  online.tau: {type: choice, values: [0, 5]}\n", r"online\.tau"),
        ("params:\n  distill.phase1_lr: {type: loguniform, low: 0, high: 0.1}\n", "low > 0"),
        ("params:\n  online.tau: {type: choice, values: []}\n", "non-empty"),
        ("params:\n  distill.r: {type: uniform, low: 0.1}\n", "missing"),
        ("params:\n  online.theta_low: {type: uniform, low: 0.01, high: 0.2}\n"
         "  online.theta_high: {type: uniform, low: 0.1, high: 0.3}\n", "theta_low must stay below"),
        ("params:\n  teacher.embed_dim: {type: choice, values: [8, 16]}\n", "cannot be searched"),
        ("stage: both\nparams:\n  distill.r: {type: uniform, low: 0.1, high: 0.2}\n", "stage"),
        ("searchers: 3\nparams:\n  distill.r: {type: uniform, low: 0.1, high: 0.2}\n", "unknown key"),
        ("stage: offline\n", "params"),
    ],
)
def test_bad_spaces_name_the_problem(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_space(_space(tmp_path, text))


def test_apply_params_validates_like_a_config():
    cfg = apply_params(ExperimentConfig(), {"distill.r": 0.25, "online.tau": 4})
    assert cfg.distill.r == 0.25 and cfg.online.tau == 4 and cfg.teacher == ExperimentConfig().teacher
    with pytest.raises(ConfigError, match="theta_low"):
        apply_params(ExperimentConfig(), {"online.theta_low": 0.5})


def _no_training(*_a, **_k):
    raise AssertionError("a Ray Train run started although the teacher was finished with the same fingerprint")


def test_asha_search_end_to_end_resume_and_fresh(ray_session, tmp_path, monkeypatch):
    from crossadapt.train import ray_train
    from crossadapt.tune.search import run_tune

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "data"
    generate(SyntheticConfig(num_fields=6, vocab_size=300, rows_per_period=3000, num_periods=6, drift_periods=(5,),
                             seed=2), root)
    fm = FeatureMap.load(root)
    out = tmp_path / "out"
    out.mkdir()
    # a teacher some earlier run recorded without a fingerprint is never taken as this config's
    (out / "results.json").write_text(json.dumps({"teacher": {"checkpoint": str(tmp_path / "other.pt")}}))
    cfg = ExperimentConfig(
        out_dir=str(out), seeds=(0,),
        data=DataConfig(root=str(root), teacher_periods=(0, 3), window_periods=(3, 4), test_periods=(4, 5),
                        stream_periods=(5, 6)),
        teacher=ModelConfig(name="dnn", embed_dim=8, hidden_units=(32,)),
        student=ModelConfig(name="dcnv2", embed_dim=16, hidden_units=(32,), num_cross_layers=2),
        optim=OptimConfig(lr=3e-3, epochs=3, patience=1, batch_size=256),
        distill=DistillConfig(phase1_epochs=3, phase2_epochs=3),
        resources=ResourcesConfig(num_workers=1, use_gpu="false"),
        tracking=TrackingConfig(wandb="disabled"),
    )
    space = load_space(REPO / "tune_spaces" / "smoke.yaml")
    rows = run_tune(cfg, fm, space)  # trains the teacher it shares, in <out>/teacher/<fingerprint>
    assert len(rows) == 4
    [folder] = (out / "tune").glob("smoke-*")
    with (folder / "results.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 4 and set(space.keys) <= set(csv_rows[0]) and "valid_auc" in csv_rows[0]
    for r in rows:
        assert r["status"] == "ok" and 0.1 <= r["distill.r"] <= 0.5 and 1e-3 <= r["distill.phase1_lr"] <= 5e-3
        assert 1 <= r["reports"] <= 6  # ASHA may stop a trial before its 6 epochs
    aucs = [r["valid_auc"] for r in rows]
    assert aucs == sorted(aucs, reverse=True) and aucs[0] > 0.6  # best first, and it learned
    assert (folder / "results.md").read_text().count("\n| ") == 5  # header + 4 trials

    monkeypatch.setattr(ray_train, "_train", _no_training)  # from here on the teacher is reused
    # an interrupted or finished search of the same config and space resumes from its folder
    again = run_tune(cfg, fm, space)
    assert [r["trial"] for r in again] == [r["trial"] for r in rows]
    # another base config: a fresh search in its own folder (the earlier one kept), never its trials
    changed = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, temperature=2.0))
    fresh = run_tune(changed, fm, space)
    folders = sorted((out / "tune").glob("smoke-*"))
    assert len(folders) == 2 and folder in folders and (folder / "results.csv").is_file()
    assert len(fresh) == 4 and not {r["trial"] for r in fresh} & {r["trial"] for r in rows}
    # an online search starts only from this config's offline students: none here, so a clear error
    with pytest.raises(ConfigError, match="crossadapt seed 0 student"):
        run_tune(cfg, fm, load_space(REPO / "tune_spaces" / "online.yaml"))


def test_online_search_runs_the_actor_pair_inside_trials(ray_session, tiny_online_world, online_cfg, tmp_path,
                                                          monkeypatch):
    """Online trials start a StudentActor/TeacherActor pair inside the trial's placement group and report
    the prequential AUC after every period (the pair used to be unschedulable there)."""
    from crossadapt.tune.search import run_tune

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root, fm, teacher, student = tiny_online_world
    out = tmp_path / "out"
    base = online_cfg(root, out)
    cfg = ExperimentConfig(out_dir=str(out), seeds=(0,), data=DataConfig(**{**vars(base.data), "stream_periods": (5, 7)}),
                           teacher=ModelConfig(name="dnn", embed_dim=8, hidden_units=(32, 16)),
                           student=ModelConfig(name="dcnv2", embed_dim=8, hidden_units=(32,), num_cross_layers=2),
                           online=base.online, tracking=TrackingConfig(wandb="disabled"))
    space = load_space(_space(tmp_path, "stage: online\nnum_samples: 2\ntrial_cpus: 0.5\n"
                                        "asha: {grace_period: 2}\nparams:\n  online.tau: {type: choice, values: [2, 4]}\n"))
    _finished_offline_run(cfg, fm, teacher, student)
    rows = run_tune(cfg, fm, space)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), rows
    assert all(r["reports"] == 2 and r["online_auc"] > 0.55 for r in rows), rows  # one report per period


def _finished_offline_run(cfg, fm, teacher: str, student: str) -> None:
    """Lay ``teacher`` and ``student`` out as the finished teacher and crossadapt seed-0 student of
    ``cfg`` (their fingerprinted folders and outcomes), as `crossadapt transfer` would leave them."""
    from crossadapt.experiment.offline import plan_offline
    from crossadapt.train.ray_train import OUTCOME_FILE

    plan = plan_offline(cfg, fm, Path(cfg.out_dir))
    for job, ckpt in ((plan.teacher, teacher), (plan.student("crossadapt", cfg.seeds[0]), student)):
        folder = Path(job.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(ckpt, folder / "best.pt")
        (folder / OUTCOME_FILE).write_text(json.dumps({
            "fingerprint": job.fingerprint, "best_checkpoint": str(folder / "best.pt"), "best_valid_auc": None,
            "history": [], "train_seconds": 0.0, "samples_seen": 0}))
