"""The whole experiment (what `crossadapt demo` runs) end to end on tiny synthetic logs.

One run, checked for the results.json contract, the report and its plots, one W&B offline run per
method and seed, numbers that a broken pipeline would miss (AUC above chance everywhere, an
exact projection, the injected drift detected), and its console output (what `crossadapt demo`
prints: progress, and no Ray warning or error on a run that succeeds).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
from wandb_offline import offline_runs

from crossadapt.config import (
    DataConfig,
    DistillConfig,
    ExperimentConfig,
    ModelConfig,
    OnlineConfig,
    OptimConfig,
    ProjectionConfig,
    ResourcesConfig,
    SyntheticConfig,
    TrackingConfig,
)
from crossadapt import log
from crossadapt.experiment.run import run_experiment

SEEDS = (0, 1)
OFFLINE = ("scratch", "kd", "crossadapt", "crossadapt_no_projection", "crossadapt_no_phases", "crossadapt_full_window")
ONLINE = ("student_only", "student_replay", "frozen_teacher_kd", "sync_codistill", "crossadapt")


@pytest.fixture(scope="module")
def experiment(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    cfg = ExperimentConfig(
        out_dir=str(out / "run"),
        seeds=SEEDS,
        data=DataConfig(root=str(out / "data"), teacher_periods=(0, 3), window_periods=(3, 5), test_periods=(5, 6),
                        stream_periods=(6, 8)),
        synthetic=SyntheticConfig(num_fields=6, vocab_size=300, rows_per_period=3000, num_periods=8,
                                  drift_periods=(7,), seed=5),
        teacher=ModelConfig(name="dnn", embed_dim=8, hidden_units=(32, 16)),
        student=ModelConfig(name="dcnv2", embed_dim=16, hidden_units=(32,), num_cross_layers=2),
        optim=OptimConfig(lr=3e-3, epochs=4, patience=2, batch_size=256),
        distill=DistillConfig(phase1_epochs=2, phase2_epochs=2, r=0.3, batch_size=64),
        # two students and two streams at once, as in the quick demo
        resources=ResourcesConfig(num_workers=1, cpus_per_worker=1.0, use_gpu="false", checkpoint_interval_s=0,
                                  concurrent_jobs=2),
        projection=ProjectionConfig(actor_min_rows=0, num_actors=2),  # the actor path, as on big tables
        online=OnlineConfig(batch_size=256, reservoir_size=2000, concurrent_streams=2),
        tracking=TrackingConfig(wandb="offline", experiment="e2e"),
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    printed: list[str] = []
    try:
        with _console(printed):
            results = run_experiment(cfg)
    finally:
        mp.undo()
    return cfg, results, printed


@contextlib.contextmanager
def _console(lines: list[str]) -> Iterator[None]:
    """Everything this process prints meanwhile into ``lines``, as the command line shows it: crossadapt's
    log handler at its default level, what Ray forwards from its processes (to ``sys.stdout``/``stderr``)
    and whatever is written to the file descriptors 1 and 2."""
    buf = io.StringIO()
    old, saved = (sys.stdout, sys.stderr), [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile("w+") as raw:
        for fd in (1, 2):
            os.dup2(raw.fileno(), fd)
        sys.stdout = sys.stderr = buf
        handler = log.setup(log.NORMAL, stream=buf, propagate_env=False)
        try:
            yield
        finally:
            time.sleep(3.0)  # Ray forwards its processes' lines asynchronously, about once a second
            logging.getLogger().removeHandler(handler)
            logging.getLogger(log.ROOT).setLevel(logging.NOTSET)
            sys.stdout, sys.stderr = old
            for fd, s in zip((1, 2), saved):
                os.dup2(s, fd)
                os.close(s)
            raw.seek(0)
            lines.extend((buf.getvalue() + raw.read()).splitlines())


# What Ray prints when something is wrong (or noisy): Python log levels, glog's E/W/F lines, tracebacks,
# Python warnings, and the three lines that filled the demo's output before.
RAY_TROUBLE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|\[\d{4}-\d\d-\d\d [\d:,.]+ [EWF] \d+ |Traceback|"
                         r"\w+Warning\b|PlacementGroupCleaner|Failed to (kill actor|query)|metrics=\{")


def test_results_json_follows_the_contract(experiment):
    cfg, results, _ = experiment
    on_disk = json.loads((Path(cfg.out_dir) / "results.json").read_text())
    assert on_disk["offline"].keys() == results["offline"].keys() == set(OFFLINE)
    for method, block in on_disk["offline"].items():
        for key in ("auc", "logloss", "bias", "train_seconds"):
            assert len(block[key]) == len(SEEDS), (method, key)
        # 6 fields of a learnable click model: chance (0.5) means a broken feature or label path
        assert min(block["auc"]) > 0.55, (method, block["auc"])
    assert on_disk["teacher"]["auc"] > 0.55
    # d 8 -> 16 is an orthonormal expansion: every inner product kept
    # written by the actors, in the projection's folder (named by its fingerprint)
    proj_dir = Path(on_disk["projection_init"]).parent
    assert (proj_dir / "student_table.npy").is_file() and proj_dir.name == on_disk["fingerprints"]["projection"][:16]
    assert len(on_disk["projection"]) == 6
    for name, rep in on_disk["projection"].items():
        assert rep["inner_product_rel_error"] < 1e-5 and rep["energy_kept"] == pytest.approx(1.0, abs=1e-6), name
    assert on_disk["online"].keys() == set(ONLINE)
    for method, block in on_disk["online"].items():
        # one run per seed, each from that seed's offline CrossAdapt student
        assert [r["seed"] for r in block["runs"]] == list(SEEDS), method
        offline_students = dict(zip(on_disk["offline"]["crossadapt"]["seed"], on_disk["offline_checkpoints"]["crossadapt"]))
        assert [r["student_checkpoint"] for r in block["runs"]] == [offline_students[s] for s in SEEDS]
        for run in block["runs"]:
            windows = run["windows"]
            assert [w["period"] for w in windows] == [6, 7], method
            for w in windows:
                assert {"auc", "logloss", "bias", "drift_score", "drift_score_max", "shifts", "r_enh"} <= w.keys()
            # ~0.62 before the shift and ~0.57 on it: chance would be 0.5 +- 0.01 on 3000 rows
            assert sum(w["auc"] for w in windows) / len(windows) > 0.55, (method, windows)
            assert run["steps"] * cfg.online.batch_size == run["rows_trained"] + run["history_rows"]
        s = block["summary"]
        assert s["seeds"] == list(SEEDS) and s["periods"] == [6, 7]
        assert len(s["per_period"]["auc"]["mean"]) == 2 and s["overall"]["auc"]["std"] is not None
    drift = on_disk["online"]["crossadapt"]["runs"][0]["windows"][1]  # period 7: the injected shift
    assert drift["shifts"] == 1 and drift["drift_score_max"] >= cfg.online.theta_high
    assert drift["r_enh"] < cfg.online.r_enh_max  # history mixing cut back after the shift
    assert on_disk["online_meta"]["drift_trace"]["shift_ends"]


def test_report_and_plots(experiment):
    cfg, _, _ = experiment
    out = Path(cfg.out_dir)
    report = (out / "report.md").read_text()
    for method in OFFLINE + ONLINE:
        assert method in report
    assert "Per period: AUC" in report and "exceeds spread" in report
    for png in ("offline_auc.png", "offline_time.png", "online_auc.png", "online_drift.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"({png})" in report


def test_one_wandb_offline_run_per_method_and_seed(experiment):
    cfg, _, _ = experiment
    runs = {r["name"]: r for r in offline_runs(cfg.out_dir)}
    expected = ({"teacher"} | {f"{m}-seed{s}" for m in OFFLINE for s in SEEDS}
                | {f"online-{m}-seed{s}" for m in ONLINE for s in SEEDS})
    assert expected <= set(runs)
    assert {r["group"] for r in runs.values()} == {"e2e"}
    assert runs["crossadapt-seed1"]["job_type"] == "crossadapt"
    assert runs["crossadapt-seed1"]["summary"]["auc"] > 0.55


def test_paired_tests_against_crossadapt_on_the_saved_test_scores(experiment):
    import numpy as np

    from crossadapt.experiment.tables import tables_markdown

    cfg, _, _ = experiment
    on_disk = json.loads((Path(cfg.out_dir) / "results.json").read_text())
    block = on_disk["paired_tests"]
    assert block["reference"] == "crossadapt" and block["rows"] == 3000 and block["test_periods"] == [5]
    assert set(block["methods"]) == set(OFFLINE) - {"crossadapt"}
    for method, b in block["methods"].items():
        by_seed = dict(zip(on_disk["offline"][method]["seed"], on_disk["offline"][method]["auc"]))
        ref = dict(zip(on_disk["offline"]["crossadapt"]["seed"], on_disk["offline"]["crossadapt"]["auc"]))
        assert [x["seed"] for x in b["per_seed"]] == list(SEEDS)
        for x in b["per_seed"]:
            # the saved float32 scores are the ones the test metrics came from: the same AUCs exactly
            assert (x["auc"], x["reference_auc"]) == (by_seed[x["seed"]], ref[x["seed"]]), method
            assert 0 <= x["p"] <= 1
        assert b["verdict"] in ("real", "within noise")
    for r in on_disk["offline_records"]:
        scores = np.load(Path(r["checkpoint"]).with_name("test_scores.npy"))
        assert scores.dtype == np.float32 and scores.shape == (3000,)
    text = tables_markdown(on_disk)
    assert "### Paired tests against CrossAdapt" in text and "exceeds spread?" in text


def test_console_shows_progress_and_no_ray_warning_or_error(experiment):
    """The run succeeded: its console has crossadapt's lines, "job k of N" with an ETA in each of the
    two lanes of students and "stream k of N" for the online stage, and not one Ray warning or error line."""
    _, _, printed = experiment
    text = "\n".join(printed)
    trouble = [line for line in printed if RAY_TROUBLE.search(line)]
    assert not trouble, "\n".join(trouble)
    n_jobs, n_streams = len(OFFLINE) * len(SEEDS), len(ONLINE) * len(SEEDS)
    per_lane = {int(a): int(n) for a, n in re.findall(r"students lane (\d) of 2: job \d+ of (\d+) done", text)}
    assert sorted(per_lane) == [1, 2] and sum(per_lane.values()) == n_jobs, (per_lane, text)
    for lane, n in per_lane.items():
        for k in range(1, n):
            assert re.search(rf"\[crossadapt\] students lane {lane} of 2: job {k} of {n} done \(\S+-seed\d: \d+ "
                             rf"epochs, best valid auc 0\.\d+\), \S+ elapsed, ETA \S+", text), (lane, k, text)
        assert f"students lane {lane} of 2: job {n} of {n} done" in text
    assert "all done in" in text
    for k in range(1, n_streams + 1):
        assert f"[crossadapt] online: stream {k} of {n_streams} done" in text, (k, text)
    assert "[crossadapt] wrote " in text
