"""W&B tracking: offline runs grouped by experiment, never a failure, never a secret; compare tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from wandb_offline import offline_runs

from crossadapt.config import ExperimentConfig, TrackingConfig
from crossadapt.errors import DataError
from crossadapt.experiment.compare import compare_table
from crossadapt.experiment.track import track_offline, track_online
from crossadapt.online.summary import summarize_runs
from crossadapt.tracking import INDEX_FILE, Tracker

SECRET = "ca-test-secret-0123456789"


def _results() -> dict:
    rec = lambda m, s, auc: {"method": m, "seed": s, "auc": auc, "logloss": 0.4, "bias": 0.01,  # noqa: E731
                             "train_seconds": 1.5, "samples": 100,
                             "history": [{"epoch": 0, "loss": 0.5, "valid_auc": 0.6},
                                         {"epoch": 1, "loss": 0.4, "valid_auc": 0.7}]}
    records = [rec(m, s, 0.7 + 0.01 * s) for s in (0, 1) for m in ("kd", "crossadapt")]
    runs = [{"seed": s, "steps": 10, "windows": [{"period": 9, "auc": 0.7 + 0.02 * s, "bias": 0.1, "logloss": 0.3},
                                                 {"period": 10, "auc": 0.72 + 0.02 * s, "bias": -0.1, "logloss": 0.3}]}
            for s in (0, 1)]
    return {
        "teacher": {"auc": 0.7, "logloss": 0.4, "bias": 0.0, "train_seconds": 3.0, "history": [{"loss": 0.5}]},
        "offline_records": records,
        "offline": {m: {k: [r[k] for r in records if r["method"] == m] for k in ("seed", "auc", "train_seconds")}
                    for m in ("kd", "crossadapt")},
        "online": {"crossadapt": {"runs": runs, "summary": summarize_runs(runs)}},
    }


def test_offline_runs_one_per_method_and_seed_grouped(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    cfg = ExperimentConfig(out_dir=str(tmp_path), tracking=TrackingConfig(experiment="exp-1"))
    tracker = Tracker(cfg.tracking, tmp_path)
    track_offline(tracker, cfg, _results())
    track_online(tracker, cfg, _results())
    runs = {r["name"]: r for r in offline_runs(tmp_path)}
    assert set(runs) == {"teacher", "kd-seed0", "kd-seed1", "crossadapt-seed0", "crossadapt-seed1",
                         "online-crossadapt-seed0", "online-crossadapt-seed1"}
    assert {r["group"] for r in runs.values()} == {"exp-1"}
    assert runs["kd-seed1"]["job_type"] == "kd" and runs["online-crossadapt-seed0"]["job_type"] == "online-crossadapt"
    kd1 = runs["kd-seed1"]
    assert kd1["config"]["method"] == "kd" and kd1["config"]["seed"] == 1 and kd1["config"]["distill"]["r"] == 0.1
    assert [h["valid_auc"] for h in kd1["history"]] == [0.6, 0.7]  # metrics per epoch
    assert kd1["summary"]["auc"] == pytest.approx(0.71)
    assert [h["auc"] for h in runs["online-crossadapt-seed0"]["history"]] == [0.7, 0.72]  # per period
    assert [h["auc"] for h in runs["online-crossadapt-seed1"]["history"]] == pytest.approx([0.72, 0.74])
    assert runs["online-crossadapt-seed1"]["config"]["seed"] == 1
    assert len(tracker.index) == 7 and (tmp_path / INDEX_FILE).is_file()
    # the API key is in the environment, and in no file the runs wrote
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_without_wandb_nothing_fails(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setitem(sys.modules, "wandb", None)  # "import wandb" now raises ImportError
    with pytest.warns(UserWarning, match="tracking off"):
        tracker = Tracker(TrackingConfig(), tmp_path)
    assert not tracker.enabled
    cfg = ExperimentConfig(out_dir=str(tmp_path))
    track_offline(tracker, cfg, _results())
    assert not (tmp_path / "wandb").exists()


def test_wandb_errors_turn_tracking_off(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb, "init", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no disk")))
    tracker = Tracker(TrackingConfig(), tmp_path)
    with pytest.warns(UserWarning, match="no disk"):
        run = tracker.run("x", "kd", {})
    run.log({"a": 1.0})
    run.finish()
    assert not tracker.enabled


def test_disabled_by_config_or_env(tmp_path, monkeypatch):
    assert not Tracker(TrackingConfig(wandb="disabled"), tmp_path).enabled
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert not Tracker(TrackingConfig(wandb="offline"), tmp_path).enabled


def test_compare_table(tmp_path):
    import json

    a, b = tmp_path / "a", tmp_path / "b"
    for d, auc in ((a, 0.7), (b, 0.8)):
        d.mkdir()
        r = _results()
        r["offline"]["kd"]["auc"] = [auc, auc]
        if d == b:
            del r["offline"]["crossadapt"]
        (d / "results.json").write_text(json.dumps(r))
    table = compare_table([a, b])
    kd = next(line for line in table.splitlines() if line.startswith("| kd |"))
    assert "0.7000 ± 0.0000" in kd and "0.8000 ± 0.0000" in kd
    ca = next(line for line in table.splitlines() if line.startswith("| crossadapt |"))
    assert ca.rstrip().endswith("| - |")  # b has no crossadapt offline
    assert "0.7200 ± 0.0141 / 0.1000" in table  # online mean AUC ± std over seeds / mean |bias|
    with pytest.raises(DataError, match="no results.json"):
        compare_table([tmp_path / "missing"])


def test_run_index_is_merged_across_commands(tmp_path):
    """Each command adds its runs to ``wandb_runs.json``; a rerun never drops the runs of earlier ones."""
    import json

    first = Tracker(TrackingConfig(wandb="disabled"), tmp_path)
    first._add_to_index({"name": "kd-seed0", "id": "a"})
    second = Tracker(TrackingConfig(wandb="disabled"), tmp_path)  # a later command on the same folder
    assert [r["id"] for r in second.index] == ["a"]
    second._add_to_index({"name": "scratch-seed0", "id": "b"})
    first._add_to_index({"name": "kd-seed1", "id": "c"})  # written while the other held its own list
    assert [r["id"] for r in json.loads((tmp_path / INDEX_FILE).read_text())] == ["a", "b", "c"]


def test_live_epochs_and_windows_then_the_stage_figures_make_one_run_each(tmp_path, monkeypatch):
    """Epochs and periods go to W&B as they finish; the stage's end adds its figures to the same runs,
    without logging the live steps twice."""
    from crossadapt.experiment.track import live_epochs, live_windows
    from crossadapt.train.engine import TrainJob

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = ExperimentConfig(out_dir=str(tmp_path), tracking=TrackingConfig(experiment="live"))
    tracker = Tracker(cfg.tracking, tmp_path)
    results = _results()
    on_epoch, on_window = live_epochs(tracker, cfg), live_windows(tracker, cfg)
    kd1 = next(r for r in results["offline_records"] if (r["method"], r["seed"]) == ("kd", 1))
    job = TrainJob(name="kd-seed1", run_dir=str(tmp_path / "kd"), model=cfg.student, seed=1, fingerprint="f" * 64)
    on_epoch(job, 0, kd1["history"][0])  # epoch 0 seen live, epoch 1 only in the final history
    on_window("crossadapt", 0, results["online"]["crossadapt"]["runs"][0]["windows"][0])
    on_window("crossadapt", 0, results["online"]["crossadapt"]["runs"][0]["windows"][1])
    assert {r["name"] for r in tracker.index} == {"kd-seed1", "online-crossadapt-seed0"}  # opened while running
    track_offline(tracker, cfg, results, records=[kd1], with_teacher=False)
    track_online(tracker, cfg, results)
    runs = offline_runs(tmp_path)
    assert sorted(r["name"] for r in runs) == ["kd-seed1", "online-crossadapt-seed0", "online-crossadapt-seed1"]
    by = {r["name"]: r for r in runs}
    assert [h["valid_auc"] for h in by["kd-seed1"]["history"]] == [0.6, 0.7]
    assert by["kd-seed1"]["summary"]["auc"] == pytest.approx(0.71) and by["kd-seed1"]["config"]["method"] == "kd"
    assert [h["auc"] for h in by["online-crossadapt-seed0"]["history"]] == [0.7, 0.72]


def test_tune_trial_runs_are_written_by_the_driver_callback(tmp_path, monkeypatch):
    """Every trial's run holds all its reports and its best metric, a stopped or failed trial's too."""
    from types import SimpleNamespace

    from crossadapt.config import to_dict
    from crossadapt.tune.track import TrialTracking

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = ExperimentConfig(out_dir=str(tmp_path), tracking=TrackingConfig(experiment="tune"))
    cb = TrialTracking(cfg.tracking, cfg.out_dir, "offline", "valid_auc")
    trials = [SimpleNamespace(trial_id=i, config={"base": to_dict(cfg), "params": {"distill.r": r}})
              for i, r in (("a", 0.1), ("b", 0.2))]
    for it, auc in enumerate((0.6, 0.7, 0.65)):
        cb.on_trial_result(it, trials, trials[0], {"valid_auc": auc, "loss": 0.5, "training_iteration": it + 1,
                                                   "time_this_iter_s": 1.0, "config": {}})
    cb.on_trial_result(3, trials, trials[1], {"valid_auc": 0.55, "training_iteration": 1})
    cb.on_trial_complete(4, trials, trials[0])  # ran out, or stopped by ASHA
    cb.on_trial_error(4, trials, trials[1])
    import pickle

    assert pickle.loads(pickle.dumps(cb)).metric == "valid_auc"  # Tune saves its callbacks with the search
    by = {r["name"]: r for r in offline_runs(tmp_path)}
    assert set(by) == {"tune-trial_a", "tune-trial_b"} and by["tune-trial_a"]["job_type"] == "tune-offline"
    assert [h["valid_auc"] for h in by["tune-trial_a"]["history"]] == [0.6, 0.7, 0.65]
    assert "time_this_iter_s" not in by["tune-trial_a"]["history"][0]
    assert by["tune-trial_a"]["summary"]["best_valid_auc"] == 0.7 and by["tune-trial_a"]["summary"]["status"] == "ok"
    assert by["tune-trial_a"]["config"]["params"] == {"distill.r": 0.1}
    assert by["tune-trial_a"]["config"]["distill"]["r"] == pytest.approx(0.1)  # the sampled value applied
    assert by["tune-trial_b"]["summary"]["status"] == "error" and by["tune-trial_b"]["summary"]["reports"] == 1
