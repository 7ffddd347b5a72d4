"""Faults: a Ray Train worker or an online actor killed mid-run; the run resumes and loses nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray

from crossadapt.config import ModelConfig, ResourcesConfig, SyntheticConfig
from crossadapt.data import arrays as A
from crossadapt.data import ray_data
from crossadapt.data.synthetic import generate
from crossadapt.featuremap import FeatureMap
from crossadapt.models import load_checkpoint
from crossadapt.online.coordinator import OnlineStream, stream_inputs
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob
from crossadapt.train.ray_train import fit


def _kill_when(path: Path, ready, timeout: float = 120.0) -> threading.Thread:
    """A thread that SIGKILLs the pid in ``path`` (JSON with "pid") once ``ready(progress)`` holds."""
    def run() -> None:
        end = time.time() + timeout
        while time.time() < end:
            try:
                progress = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                progress = None
            if progress and ready(progress):
                os.kill(progress["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_killed_train_worker_resumes_from_its_last_checkpoint(ray_session, tmp_path):
    root = tmp_path / "data"
    generate(SyntheticConfig(num_fields=6, vocab_size=200, rows_per_period=4000, num_periods=3, drift_periods=(2,),
                             seed=1), root)
    fm = FeatureMap.load(root)
    resources = ResourcesConfig(num_workers=2, cpus_per_worker=0.5, max_failures=2, checkpoint_interval_s=0)

    def run(name: str, kill: bool):
        job = TrainJob(name=name, run_dir=str(tmp_path / name), model=ModelConfig(name="dnn", embed_dim=8,
                       hidden_units=(32,)), feature_map=fm.to_dict(), phases=(Phase(2, 3e-3, True), Phase(3, 3e-3)),
                       batch_size=256, patience=5, seed=0, checkpoint_interval_s=0)
        train, valid = ray_data.window_split(root, [0, 1], fm, valid_fraction=0.1)
        killer = None
        if kill:  # mid-run: during phase 2 (the second phase), after a checkpoint exists
            killer = _kill_when(Path(job.run_dir) / "progress.json", lambda p: p["phase"] == 1 and p["epoch"] >= 1)
        out = fit(job, train, valid, resources)
        if killer:
            killer.join(timeout=1)
        return out

    clean = run("clean", kill=False)
    faulty = run("faulty", kill=True)
    history = faulty.history
    # every epoch ran once in the end: the killed epoch was replayed from the checkpoint before it
    assert [(h["phase"], h["epoch"]) for h in history] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert faulty.samples_seen == clean.samples_seen == 5 * 7200
    test = A.read_periods(root, [2], fm)
    auc = [engine.evaluate(load_checkpoint(o.best_checkpoint).model, test)["auc"] for o in (clean, faulty)]
    assert auc[1] == pytest.approx(auc[0], abs=1e-4)  # same data order after the resume: same model
    assert auc[0] > 0.6


def test_interrupted_fit_resumes_on_rerun_and_a_changed_job_starts_afresh(ray_session, tmp_path):
    """Across commands: a run stopped by a failure (max_failures=0) resumes when the same job runs
    again; a job with another fingerprint never takes its checkpoint."""
    import torch
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    EPOCHS = 20  # tiny epochs (~0.1 s): enough of them for Ray Train's controller to register a checkpoint

    root = tmp_path / "data"
    generate(SyntheticConfig(num_fields=4, vocab_size=100, rows_per_period=3000, num_periods=2, drift_periods=(1,),
                             seed=2), root)
    fm = FeatureMap.load(root)
    resources = ResourcesConfig(num_workers=1, cpus_per_worker=1.0, max_failures=0, checkpoint_interval_s=0)
    job = TrainJob(name="job", run_dir=str(tmp_path / "run"), model=ModelConfig(name="dnn", embed_dim=8,
                   hidden_units=(16,)), feature_map=fm.to_dict(), phases=(Phase(EPOCHS, 3e-3),), batch_size=128,
                   patience=EPOCHS, seed=0, checkpoint_interval_s=0)  # no early stop: every epoch runs
    train, valid = ray_data.window_split(root, [0, 1], fm, valid_fraction=0.1)

    def registered() -> bool:  # Ray Train's controller has taken a checkpoint it would resume from
        for snap in (tmp_path / "ray_storage").glob(f"job-*/{CHECKPOINT_MANAGER_SNAPSHOT_FILENAME}"):
            try:
                return json.loads(snap.read_text()).get("latest_checkpoint_result") is not None
            except (OSError, ValueError):
                return False
        return False

    killed = []

    def after_three_epochs(progress: dict) -> bool:
        if progress["phase"] == 0 and progress["epoch"] >= 3 and registered():
            killed.append(progress["epoch"])
        return bool(killed)

    killer = _kill_when(Path(job.run_dir) / "progress.json", after_three_epochs)
    with pytest.raises(Exception):  # no retry left: the command fails
        fit(job, train, valid, resources)
    killer.join(timeout=1)
    assert killed, "the worker was never killed"
    [interrupted] = (tmp_path / "ray_storage").glob("job-*")
    # Where Ray Train will resume: the latest checkpoint its controller registered (newer ones on
    # disk may not have been registered when the kill came; epochs here take well under its poll).
    snapshot = json.loads((interrupted / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME).read_text())
    latest = snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
    saved = torch.load(interrupted / latest / "state.pt", weights_only=True)["state"]["history"]
    assert 1 <= len(saved) < EPOCHS

    other = fit(dataclasses.replace(job, run_dir=str(tmp_path / "other"), phases=(Phase(EPOCHS, 2e-3),)), train, valid,
                resources)
    assert len(other.history) == EPOCHS and other.history[0] != saved[0]  # trained from its start
    assert interrupted.is_dir()  # the interrupted run's checkpoints were left alone

    resumed = fit(job, train, valid, resources)
    assert [h["epoch"] for h in resumed.history] == list(range(EPOCHS))
    assert resumed.history[: len(saved)] == saved  # the epochs before the checkpoint were not run again (same timings)
    assert not resumed.reused and not interrupted.exists()  # finished: its resume point is gone
    again = fit(job, train, valid, resources)
    assert again.reused and again.history == resumed.history  # finished: reused, not retrained


@pytest.mark.parametrize("victim", ["student", "teacher"])
def test_killed_online_actor_replays_its_period_once(ray_session, tiny_online_world, online_cfg, tmp_path, victim):
    root, fm, teacher, student = tiny_online_world
    cfg = online_cfg(root, tmp_path, tau=4, batch_size=64)
    history, reference = stream_inputs(cfg, fm)

    def stream(out: Path) -> OnlineStream:
        return OnlineStream("crossadapt", cfg, fm, out, teacher, student, history, reference, seed=0)

    clean = stream(tmp_path / "clean").run()

    faulty = stream(tmp_path / "faulty")

    def kill_soon(window: dict) -> None:  # in the middle of the next period (47 steps of 64 rows)
        if window["period"] == 5:
            actor = faulty.student if victim == "student" else faulty.teacher
            pid = ray.get(actor.pid.remote())
            threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()

    out = faulty.run(on_window=kill_soon)
    assert out["restarts"] == 1
    # no period skipped, none trained twice: the same rows and steps per period as the unfailed run
    assert [(w["period"], w["rows"], w["steps"]) for w in out["windows"]] == \
        [(w["period"], w["rows"], w["steps"]) for w in clean["windows"]] == [(5, 3000, 47), (6, 3000, 47), (7, 3000, 47)]
    assert out["steps"] == clean["steps"] == 3 * 47
    # and the same models: the replay starts from the exact committed state (weights, optimizers,
    # reservoir, detector, random state)
    for a, b in zip(out["windows"], clean["windows"]):
        assert a["auc"] == pytest.approx(b["auc"], abs=1e-9) and a["teacher_version"] == b["teacher_version"]
