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

from crossadapt import faults
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


def _wait_gone(pid: int, timeout: float = 60.0) -> bool:
    """True once ``pid`` no longer exists (a SIGKILLed process is reaped by its parent, the raylet)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _kill_at_pause(directory: Path, killed: dict, ready=lambda: True, timeout: float = 600.0) -> threading.Thread:
    """A thread that waits for the process paused in ``directory`` (``faults.PAUSED_FILE``) and for
    ``ready()``, SIGKILLs it and records ``{"pid", "at", "gone"}`` in ``killed``. The process waits at
    its pause point, so the kill lands exactly there."""
    def run() -> None:
        paused = directory / faults.PAUSED_FILE
        end = time.monotonic() + timeout
        while not (paused.exists() and ready()) and time.monotonic() < end:
            time.sleep(0.05)
        if paused.exists():
            info = json.loads(paused.read_text())
            os.kill(info["pid"], signal.SIGKILL)
            killed.update(info, gone=_wait_gone(info["pid"]))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _registered_epochs(storage: Path, run_prefix: str) -> int:
    """Epochs in the latest checkpoint Ray Train's controller registered under ``storage/<run_prefix>-*``
    (what it would resume from); 0 before any."""
    import torch
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    for snap in storage.glob(f"{run_prefix}-*/{CHECKPOINT_MANAGER_SNAPSHOT_FILENAME}"):
        try:
            latest = json.loads(snap.read_text()).get("latest_checkpoint_result")
            if latest:
                state = torch.load(snap.parent / latest["checkpoint_dir_name"] / "state.pt", weights_only=True)
                return len(state["state"]["history"])
        except (OSError, ValueError, RuntimeError, KeyError):
            return 0  # written at this moment: look again
    return 0


def test_pause_point_waits_once_where_asked_and_nowhere_else(tmp_path):
    faults.pause_point(tmp_path, phase=1, epoch=0)  # nothing asked: no wait, no file
    assert not (tmp_path / faults.PAUSED_FILE).exists()
    faults.request_pause(tmp_path, timeout_s=0.2, phase=1, epoch=0)
    faults.pause_point(tmp_path, phase=0, epoch=1)  # another point
    assert not (tmp_path / faults.PAUSED_FILE).exists()
    t0 = time.monotonic()
    faults.pause_point(tmp_path, rank=0, phase=1, epoch=0)  # extra keys do not matter
    assert time.monotonic() - t0 >= 0.2  # it waited (nobody killed it here)
    assert json.loads((tmp_path / faults.PAUSED_FILE).read_text()) == {"pid": os.getpid(),
                                                                      "at": {"rank": 0, "phase": 1, "epoch": 0}}
    t0 = time.monotonic()
    faults.pause_point(tmp_path, rank=0, phase=1, epoch=0)  # the replay after a kill runs through
    assert time.monotonic() - t0 < 0.2


@pytest.mark.parametrize("buffer_rows", [0, 1024], ids=["resident", "streamed"])
def test_killed_train_worker_resumes_from_its_last_checkpoint(ray_session, tmp_path, buffer_rows):
    """Resident shard: the resumed run is the unfailed one, bit for bit. Streamed shard
    (``stream_buffer_rows``): the same epochs and rows, each epoch once; its batch order after the
    resume is another (blocks reach ranks in another order), so only the outcome's shape is equal."""
    root = tmp_path / "data"
    generate(SyntheticConfig(num_fields=6, vocab_size=200, rows_per_period=4000, num_periods=3, drift_periods=(2,),
                             seed=1), root)
    fm = FeatureMap.load(root)
    resources = ResourcesConfig(num_workers=2, cpus_per_worker=0.5, max_failures=2, checkpoint_interval_s=0)
    killed: dict = {}

    def run(name: str, kill: bool):
        job = TrainJob(name=name, run_dir=str(tmp_path / name), model=ModelConfig(name="dnn", embed_dim=8,
                       hidden_units=(32,)), feature_map=fm.to_dict(), phases=(Phase(2, 3e-3, True), Phase(3, 3e-3)),
                       batch_size=256, patience=5, seed=0, checkpoint_interval_s=0, stream_buffer_rows=buffer_rows)
        train, valid = ray_data.window_split(root, [0, 1], fm, valid_fraction=0.1)
        killer = None
        if kill:  # rank 0 after the first epoch of phase 2 and its checkpoint report, once the
            # controller registered that checkpoint (it polls the workers' reports on its own clock)
            faults.request_pause(job.run_dir, rank=0, phase=1, epoch=0)
            killer = _kill_at_pause(Path(job.run_dir), killed,
                                    ready=lambda: _registered_epochs(tmp_path / "ray_storage", name) >= 3)
        out = fit(job, train, valid, resources)
        if killer:
            killer.join(timeout=5)
        return out, json.loads((Path(job.run_dir) / "progress.json").read_text())

    clean, clean_progress = run("clean", kill=False)
    faulty, progress = run("faulty", kill=True)
    # the kill happened where asked, and the process is gone
    assert killed.get("at") == {"rank": 0, "phase": 1, "epoch": 0} and killed["gone"]
    # Ray Train started a new worker group from the checkpoint of (1, 0), the last one it registered
    assert clean_progress["resumed_from"] is None
    assert progress["resumed_from"] == {"phase": 1, "epoch": 1}
    assert progress["pid"] != killed["pid"] and progress["done"]
    # every epoch ran once in the end: an epoch whose checkpoint was lost was replayed from the one before
    assert [(h["phase"], h["epoch"]) for h in faulty.history] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert faulty.samples_seen == clean.samples_seen == 5 * 7200
    test = A.read_periods(root, [2], fm)
    auc = [engine.evaluate(load_checkpoint(o.best_checkpoint).model, test)["auc"] for o in (clean, faulty)]
    if buffer_rows:  # a streamed run resumed: it still learned (an untrained model sits at 0.5)
        assert json.loads((Path(faulty.best_checkpoint).parent / "outcome.json").read_text())["data"]["train"][
            "mode"] == "streamed"
        assert min(auc) > 0.6, auc
        return
    # the same model as the unfailed run: same weights, optimizer state and batch order after the resume
    assert auc[1] == auc[0]
    assert auc[0] > 0.6


def test_interrupted_fit_resumes_on_rerun_and_a_changed_job_starts_afresh(ray_session, tmp_path):
    """Across commands: a run stopped by a failure (max_failures=0) resumes when the same job runs
    again; a job with another fingerprint never takes its checkpoint."""
    import torch
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    EPOCHS = 8  # tiny epochs (~0.1 s); the kill comes after epoch 3

    root = tmp_path / "data"
    generate(SyntheticConfig(num_fields=4, vocab_size=100, rows_per_period=3000, num_periods=2, drift_periods=(1,),
                             seed=2), root)
    fm = FeatureMap.load(root)
    resources = ResourcesConfig(num_workers=1, cpus_per_worker=1.0, max_failures=0, checkpoint_interval_s=0)
    job = TrainJob(name="job", run_dir=str(tmp_path / "run"), model=ModelConfig(name="dnn", embed_dim=8,
                   hidden_units=(16,)), feature_map=fm.to_dict(), phases=(Phase(EPOCHS, 3e-3),), batch_size=128,
                   patience=EPOCHS, seed=0, checkpoint_interval_s=0)  # no early stop: every epoch runs
    train, valid = ray_data.window_split(root, [0, 1], fm, valid_fraction=0.1)

    killed: dict = {}
    # the worker stops after epoch 3 and its report; killed once the controller registered that checkpoint
    faults.request_pause(job.run_dir, rank=0, phase=0, epoch=3)
    killer = _kill_at_pause(Path(job.run_dir), killed, ready=lambda: _registered_epochs(tmp_path / "ray_storage", "job") >= 4)
    with pytest.raises(Exception):  # no retry left: the command fails
        fit(job, train, valid, resources)
    killer.join(timeout=5)
    assert killed.get("at") == {"rank": 0, "phase": 0, "epoch": 3} and killed["gone"], "the worker was never killed"
    [interrupted] = (tmp_path / "ray_storage").glob("job-*")
    # Where Ray Train will resume: the latest checkpoint its controller registered
    snapshot = json.loads((interrupted / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME).read_text())
    latest = snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
    saved = torch.load(interrupted / latest / "state.pt", weights_only=True)["state"]["history"]
    assert len(saved) == 4  # epochs 0..3, the registered checkpoint

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
    history, trace = stream_inputs(cfg, fm)

    def stream(out: Path) -> OnlineStream:
        return OnlineStream("crossadapt", cfg, fm, out, teacher, student, history, trace, seed=0)

    clean = stream(tmp_path / "clean").run()

    faulty = stream(tmp_path / "faulty")
    killed: dict = {}
    pids: dict = {}

    def actor():
        return faulty.student if victim == "student" else faulty.teacher

    def kill_at_step_20(period: int, steps: int) -> None:  # period 6 has more than 40 steps of 64 rows
        if period == 6 and steps >= 20 and not killed:
            # calls to one actor run in order: this returns once the actor has done every step sent
            # so far, so it dies with `steps` steps of period 6 done and none committed
            pid = ray.get(actor().pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.update(pid=pid, steps=steps, gone=_wait_gone(pid))

    def after_window(window: dict) -> None:
        pids[window["period"]] = ray.get(actor().pid.remote())

    out = faulty.run(on_window=after_window, on_step=kill_at_step_20)
    period6_steps = next(w["steps"] for w in clean["windows"] if w["period"] == 6)
    assert killed["gone"] and 20 <= killed["steps"] < period6_steps
    # one restart: a new actor finished period 6 and the rest, the one before it ran period 5
    assert out["restarts"] == 1
    assert pids[5] == killed["pid"] and pids[6] != killed["pid"] and pids[7] == pids[6]
    # no period skipped, none trained twice: the same rows and steps per period as the unfailed run
    keys = ("period", "rows", "steps", "rows_trained", "history_rows")
    assert [tuple(w[k] for k in keys) for w in out["windows"]] == [tuple(w[k] for k in keys) for w in clean["windows"]]
    assert [(w["period"], w["rows"]) for w in out["windows"]] == [(5, 3000), (6, 3000), (7, 3000)]
    assert out["steps"] == clean["steps"] == sum(w["steps"] for w in clean["windows"]) >= 3 * (3000 // 64)
    # and the same models: the replay starts from the exact committed state (weights, optimizers,
    # reservoir, detector, random state) and repeats the same float32 arithmetic in the same order
    for a, b in zip(out["windows"], clean["windows"]):
        assert (a["auc"], a["logloss"], a["teacher_version"]) == (b["auc"], b["logloss"], b["teacher_version"])
