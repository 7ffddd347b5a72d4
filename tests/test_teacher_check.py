"""A teacher that learned nothing stops the transfer before any student trains; a good one passes.

The world (written here, four fields of five ids): ``logit = -1.5 + 2.5 [a == b] + 0.8 (c - 2) +
0.8 (d - 2)``. Fields a and b carry no click rate of their own (only their match does), c and d
carry first-order effects: the per-field click-rate model ranks by c and d, a DNN also learns the
match. Teachers are built by hand (logistic regressions with set weights) or trained in-process;
nothing here starts Ray.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from crossadapt import cli
from crossadapt.config import DataConfig, DistillConfig, ExperimentConfig, ModelConfig, replace
from crossadapt.data import arrays as A
from crossadapt.errors import WeakTeacherError
from crossadapt.experiment import offline
from crossadapt.experiment.teacher_check import judge_teacher, score_history_tail
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.metrics import auc
from crossadapt.models import build_model, save_checkpoint
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob
from crossadapt.train.ray_train import TrainOutcome

FM = FeatureMap("match", tuple(FieldSpec(n, vocab_size=5) for n in "abcd"))
LR = ModelConfig(name="lr", embed_dim=1)
ROWS = 8000  # per period; the teacher's validation tail is 10 % of 2 periods: 1600 rows


def _logit(ids: np.ndarray) -> np.ndarray:
    return -1.5 + 2.5 * (ids[:, 0] == ids[:, 1]) + 0.8 * (ids[:, 2] - 2) + 0.8 * (ids[:, 3] - 2)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("match") / "data"
    FM.save(root)
    rng = np.random.default_rng(0)
    for k in range(5):
        ids = rng.integers(0, 5, (ROWS, 4))
        y = (rng.random(ROWS) < 1 / (1 + np.exp(-_logit(ids)))).astype(np.int8)
        (root / f"period={k}").mkdir()
        pq.write_table(pa.table({"label": y, **{n: ids[:, j] for j, n in enumerate("abcd")}}),
                       root / f"period={k}" / "part-0.parquet")
    return root


def _cfg(root: Path, out: Path | None = None, **distill) -> ExperimentConfig:
    return ExperimentConfig(
        out_dir=str(out or root.parent / "out"), seeds=(0,),
        data=DataConfig(root=str(root), source="parquet", teacher_periods=(0, 2), window_periods=(2, 3),
                        test_periods=(3, 4), stream_periods=(4, 5)),
        teacher=LR, distill=DistillConfig(**distill))


def _lr_teacher(path: Path, weights: dict[str, np.ndarray]) -> str:
    """A logistic regression whose per-id weights are set by hand (fields not named weigh 0)."""
    model = build_model(LR, FM)
    table = torch.zeros(sum(FM.vocab_sizes), 1)
    for j, name in enumerate("abcd"):
        if name in weights:
            table[5 * j:5 * j + 5, 0] = torch.as_tensor(weights[name], dtype=torch.float32)
    with torch.no_grad():
        model.embedding.table.weight.copy_(table)
    save_checkpoint(path, model, LR, FM)
    return str(path)


@pytest.fixture(scope="module")
def constant_teacher(world) -> str:
    return _lr_teacher(world.parent / "constant.pt", {})  # every logit 0: the dead tower's output


@pytest.fixture(scope="module")
def good_teacher(world) -> tuple[str, ModelConfig]:
    """A DNN trained in-process on the history's training rows (not its validation tail)."""
    cfg = ModelConfig(name="dnn", embed_dim=4, hidden_units=(32, 16))
    train, _ = A.split_tail(A.read_periods(world, [0, 1], FM), 0.1)
    torch.manual_seed(0)
    model = build_model(cfg, FM)
    job = TrainJob(name="good", run_dir="", model=cfg, phases=(Phase(epochs=3, lr=1e-2),), batch_size=256)
    engine.run_phases(model, job, engine.to_tensors(train), None, None)
    path = world.parent / "good.pt"
    save_checkpoint(path, model, cfg, FM)
    return str(path), cfg


def test_the_tail_is_the_split_the_teacher_validated_on(world, constant_teacher):
    s = score_history_tail(_cfg(world), FM, constant_teacher)
    train, valid = A.split_tail(A.read_periods(world, [0, 1], FM), 0.1)
    assert s["rows"] == 1600 and s["train_rows"] == A.num_rows(train) == 14400
    np.testing.assert_array_equal(s["label"], valid["label"])


def test_constant_teacher_stops_naming_both_aucs(world, constant_teacher):
    with pytest.raises(WeakTeacherError) as err:
        judge_teacher(_cfg(world), FM, constant_teacher)
    msg = str(err.value)
    s = score_history_tail(_cfg(world), FM, constant_teacher)
    baseline = auc(s["label"], s["baseline"])
    assert baseline > 0.65  # c and d carry real first-order signal
    assert "validation AUC 0.5000 is no better than chance" in msg and f"reaches {baseline:.4f}" in msg
    assert "1600 validation rows" in msg and "distill.allow_weak_teacher" in msg


def test_teacher_above_chance_but_below_click_rates_stops(world):
    """Knows c's effect only: well above chance on 1600 rows, below the model that counts c and d."""
    path = _lr_teacher(world.parent / "c_only.pt", {"c": 0.8 * (np.arange(5) - 2)})
    s = score_history_tail(_cfg(world), FM, path)
    t, b = auc(s["label"], s["teacher"]), auc(s["label"], s["baseline"])
    assert 0.6 < t < b
    with pytest.raises(WeakTeacherError, match=rf"AUC {t:.4f} is no better than the per-field click-rate model's "
                                               rf"{b:.4f} on the same rows"):
        judge_teacher(_cfg(world), FM, path)


def test_good_teacher_passes(world, good_teacher):
    path, model_cfg = good_teacher
    figures = judge_teacher(replace(_cfg(world), teacher=model_cfg), FM, path)
    assert figures["weak"] is False and figures["teacher_valid_auc"] > figures["click_rate_valid_auc"]
    # above what any first-order ranking reaches on these rows (the true c and d effects; Bayes ~0.84,
    # this ~0.79): the teacher learned the match of a and b, which no per-field rate can see
    _, valid = A.split_tail(A.read_periods(world, [0, 1], FM), 0.1)
    first_order = auc(valid["label"], valid["ids"][:, 2] + valid["ids"][:, 3])
    assert figures["teacher_valid_auc"] > first_order, (figures, first_order)


def test_allow_weak_teacher_goes_on_with_the_figures(world, constant_teacher):
    figures = judge_teacher(_cfg(world, allow_weak_teacher=True), FM, constant_teacher)
    assert figures["weak"] is True and figures["teacher_valid_auc"] == 0.5
    assert figures["valid_rows"] == 1600 and figures["chance_margin"] > 0


def test_without_validation_rows_the_check_is_skipped(world, constant_teacher):
    cfg = _cfg(world)
    assert judge_teacher(replace(cfg, data=replace(cfg.data, valid_fraction=0.0)), FM, constant_teacher) == {
        "checked": False}


def test_one_class_validation_rows_cannot_judge_the_teacher(tmp_path, constant_teacher):
    root = tmp_path / "data"
    FM.save(root)
    for k in range(5):
        (root / f"period={k}").mkdir()
        y = np.r_[np.tile([0, 1], 45), np.zeros(10)].astype(np.int8)  # the last 10 % without a click
        pq.write_table(pa.table({"label": y, **{n: np.arange(100) % 5 for n in "abcd"}}),
                       root / f"period={k}" / "part-0.parquet")
    cfg = replace(_cfg(root), data=replace(_cfg(root).data, teacher_periods=(0, 1)))
    with pytest.raises(WeakTeacherError, match="cannot be judged: its 10 validation rows .* hold one class"):
        judge_teacher(cfg, FM, constant_teacher)


def test_transfer_stops_before_any_student_trains(world, constant_teacher, tmp_path, monkeypatch, capsys):
    """Through the CLI: exit 2, one line naming both AUCs, no projection, no student, no results."""
    import crossadapt.experiment.run as run

    trained = []
    monkeypatch.setattr(run, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(offline, "train_teacher", lambda cfg, fm, out, **k: (
        trained.append("teacher"),
        TrainOutcome(best_checkpoint=constant_teacher, best_valid_auc=0.5, history=[], train_seconds=0.0,
                     wall_seconds=0.0, samples_seen=0))[1])
    monkeypatch.setattr(offline, "project_teacher", lambda *a, **k: pytest.fail("projection ran"))
    monkeypatch.setattr(offline, "run_students", lambda *a, **k: pytest.fail("a student trained"))
    out = tmp_path / "out"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "out_dir": str(out), "seeds": [0], "tracking": {"wandb": "disabled"}, "teacher": {"name": "lr", "embed_dim": 1},
        "data": {"root": str(world), "source": "parquet", "teacher_periods": [0, 2], "window_periods": [2, 3],
                 "test_periods": [3, 4], "stream_periods": [4, 5]}}))
    assert cli.main(["transfer", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert trained == ["teacher"] and err.count("\n") == 1, err
    assert "validation AUC 0.5000 is no better than chance" in err and "click-rate model reaches 0." in err
    assert not (out / "students").exists() and not (out / "results.json").exists()
