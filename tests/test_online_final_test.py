"""The online stage's final test (issue 16, the paper's protocol): with ``data.test_periods`` after the
stream, every method and seed scores its final student (and teacher) once on those rows; the figures
are exactly those of the checkpoints it writes, and the tables and report show them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossadapt.config import DataConfig, check_periods
from crossadapt.data import arrays as A
from crossadapt.experiment import tables
from crossadapt.experiment.report import write_report
from crossadapt.models import load_checkpoint, read_checkpoint
from crossadapt.models.teacher_import import load_teacher_model
from crossadapt.online.coordinator import run_online, has_final_test
from crossadapt.train import engine


def test_the_paper_layout_passes_the_time_check() -> None:
    """Teacher 4 / window 4 / stream 1 / test 1 periods, the test after the stream (and the teacher
    having seen the window) is allowed; a test inside the stream is not."""
    paper = DataConfig(teacher_periods=(0, 4), window_periods=(4, 8), stream_periods=(8, 9), test_periods=(9, 10))
    check_periods(paper)
    inside = DataConfig(teacher_periods=(0, 4), window_periods=(4, 8), stream_periods=(8, 10), test_periods=(9, 10))
    with pytest.raises(Exception, match="overlaps"):
        check_periods(inside)


def test_final_test_after_the_stream(ray_session, tiny_online_world, online_cfg, tmp_path: Path) -> None:
    root, fm, teacher, student = tiny_online_world
    cfg = online_cfg(root, tmp_path, tau=4)
    cfg.seeds = (0, 1)
    # one method of each kind (no teacher, a frozen teacher, a co-distilled teacher), one stream period
    cfg.online.methods = ("student_only", "frozen_teacher_kd", "crossadapt")
    cfg.data.stream_periods, cfg.data.test_periods = (6, 7), (7, 8)
    assert has_final_test(cfg)
    out = run_online(cfg, fm, tmp_path, teacher, {0: student, 1: student})
    assert set(out) == set(cfg.online.methods)
    test = A.read_periods(root, [7], fm)
    start = engine.evaluate(load_checkpoint(student).model, test)
    for m, block in out.items():
        assert [r["seed"] for r in block["runs"]] == [0, 1], m
        for run in block["runs"]:
            ft = run["final_test"]
            assert ft["periods"] == [7, 8] and ft["rows"] == A.num_rows(test) == 3000, m
            assert all(np.isfinite(ft[k]) for k in ("auc", "logloss", "bias")) and 0.5 < ft["auc"] < 1, (m, ft)
            # the figures are those of the final student's checkpoint, not of the starting student
            final = engine.evaluate(load_checkpoint(run["final_checkpoint"], expected_feature_map=fm).model, test)
            assert {k: ft[k] for k in ("auc", "logloss", "bias")} == pytest.approx(
                {k: final[k] for k in ("auc", "logloss", "bias")}, abs=1e-9), m
            assert ft["auc"] != start["auc"], m
            if m in ("student_only", "student_replay"):  # no teacher at all
                assert ft["teacher"] is None and run["final_teacher_checkpoint"] is None
            else:
                t = engine.evaluate(load_teacher_model(run["final_teacher_checkpoint"], fm), test)
                assert ft["teacher"]["auc"] == pytest.approx(t["auc"], abs=1e-9), m
                assert read_checkpoint(run["final_teacher_checkpoint"])["extra"]["version"] == \
                    run["teacher_updates"], m
        s = block["summary"]["final_test"]
        assert s["auc"]["values"] == [r["final_test"]["auc"] for r in block["runs"]], m
        assert s["abs_bias"]["mean"] == pytest.approx(np.mean([abs(r["final_test"]["bias"]) for r in block["runs"]]))
    # the frozen teacher ends where it started; the co-distilled one has moved
    t0 = engine.evaluate(load_teacher_model(teacher, fm), test)["auc"]
    assert out["frozen_teacher_kd"]["runs"][0]["final_test"]["teacher"]["auc"] == pytest.approx(t0, abs=1e-9)
    assert out["crossadapt"]["runs"][0]["final_test"]["teacher"]["auc"] != pytest.approx(t0, abs=1e-9)

    # what `crossadapt tables` and report.md show
    results = json.loads(json.dumps({"online": out}))  # as read back from results.json
    online = tables.online_table(results)
    assert "final test AUC" in online[0]
    ca = out["crossadapt"]["runs"]
    cell = tables._pm([r["final_test"]["auc"] for r in ca])
    assert any(line.startswith("| crossadapt |") and f"| {cell} |" in line for line in online)
    final = tables.final_test_table(results)
    assert len(final) == 2 + len(out) and any(line.startswith("| crossadapt |") for line in final)
    assert "final models on the test periods after the stream" in tables.tables_markdown(results)
    report = write_report({"config": {}, "online": out, "online_meta": {}}, tmp_path / "report").read_text()
    assert "final test AUC" in report and cell in report


def test_no_final_test_when_the_test_periods_precede_the_stream() -> None:
    run = {"seed": 0, "windows": [{"period": 5, "auc": 0.7, "logloss": 0.5, "bias": 0.0}], "final_test": None}
    results = {"online": {"crossadapt": {"runs": [run]}}}
    assert tables.final_test_table(results) == []
    assert tables.online_table(results)[2].split("|")[-3].strip() == "-"


def test_paper_preset_is_the_protocol_and_validates() -> None:
    """configs/paper.yaml: periods cut 4/4/1/1 with the test after the stream (so the online stage
    scores its final models), the released code's teacher and student, and `crossadapt validate` passes."""
    from crossadapt import cli
    from crossadapt.config import load_config

    path = cli.CONFIG_DIR / "paper.yaml"
    cfg = load_config(path)
    d = cfg.data
    assert (d.teacher_periods, d.window_periods, d.stream_periods, d.test_periods) == ((0, 8), (4, 8), (8, 9), (9, 10))
    assert cfg.synthetic.num_periods == 10 and has_final_test(cfg)
    t, s = cfg.teacher, cfg.student
    assert (t.name, t.embed_dim, t.hidden_units, t.layer_norm) == ("dnn", 8, (64, 32, 4), True)
    assert (s.name, s.embed_dim, s.hidden_units, s.senet_reduction, s.fibinet_variant) == (
        "fibinet", 16, (256, 128, 16), 3, "released")
    assert (cfg.distill.alpha, cfg.distill.temperature, cfg.distill.kind, cfg.distill.r) == (0.7, 4.0, "bce", 0.1)
    assert cli.main(["validate", "--config", str(path), "--quiet"]) == 0
