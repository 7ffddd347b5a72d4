"""Send an experiment's results to W&B: the teacher, one run per offline method x seed, one per online
method x seed, and the report's plots. Everything is sent from the driver (workers never talk to W&B),
so a failed or absent W&B cannot disturb training: epochs and periods as they finish (``live_epochs``,
``live_windows``: the driver sees them in the run folders and the stream), then, once a stage is done,
its figures, to the same runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from crossadapt.config import ExperimentConfig, to_dict
from crossadapt.tracking import TrackedRun, Tracker
from crossadapt.train.engine import TrainJob

_FINAL = ("auc", "logloss", "bias", "train_seconds", "wall_seconds", "samples", "best_valid_auc", "epochs")


def track_offline(tracker: Tracker, cfg: ExperimentConfig, results: dict[str, Any],
                  records: list[dict[str, Any]] | None = None, with_teacher: bool = True) -> None:
    """The teacher run and one run per (method, seed) with its epoch history and test figures.

    ``records`` (default: all of ``results``) and ``with_teacher`` limit it to what a run trained
    itself: stages reused from an earlier run were sent when they trained.
    """
    base = to_dict(cfg)
    teacher = results.get("teacher")
    if teacher and with_teacher:
        with _teacher_run(tracker, base, teacher.get("fingerprint", "")) as run:
            for i, h in enumerate(teacher.get("history", [])):
                run.log(h, step=i)
            run.summary({k: teacher[k] for k in ("auc", "logloss", "bias", "train_seconds") if k in teacher})
    for rec in results.get("offline_records", []) if records is None else records:
        with _student_run(tracker, base, rec["method"], rec["seed"], rec.get("fingerprint", "")) as run:
            for i, h in enumerate(rec.get("history", [])):
                run.log(h, step=i)
            run.summary({k: rec[k] for k in _FINAL if k in rec})


def track_online(tracker: Tracker, cfg: ExperimentConfig, results: dict[str, Any]) -> None:
    """One run per online method and seed with its per-period windows (step = period), grouped by method."""
    base = to_dict(cfg)
    for method, block in results.get("online", {}).items():
        for run_block in block.get("runs", []):
            with _online_run(tracker, base, method, run_block["seed"]) as run:
                for w in run_block["windows"]:
                    _log_window(run, w)
                run.summary({k: v for k, v in run_block.items() if k != "windows"})


def live_epochs(tracker: Tracker, cfg: ExperimentConfig) -> Callable[[TrainJob, int, dict], None]:
    """``on_epoch`` for ``run_offline``: each epoch of the teacher or a student to its run as it finishes
    (the run stays open; ``track_offline`` adds the stage's figures and closes it)."""
    base = to_dict(cfg)

    def on_epoch(job: TrainJob, i: int, record: dict) -> None:
        if job.name == "teacher":
            run = _teacher_run(tracker, base, job.fingerprint)
        else:  # student jobs are named <method>-seed<seed>, as their runs
            run = _student_run(tracker, base, job.name.rsplit("-seed", 1)[0], job.seed, job.fingerprint)
        run.log(record, step=i)

    return on_epoch


def live_windows(tracker: Tracker, cfg: ExperimentConfig) -> Callable[[str, int, dict], None]:
    """``on_window`` for ``run_online``: each period's window of a stream to its run as it is committed."""
    base = to_dict(cfg)
    return lambda method, seed, window: _log_window(_online_run(tracker, base, method, seed), window)


def _teacher_run(tracker: Tracker, base: dict[str, Any], fingerprint: str) -> TrackedRun:
    return tracker.run("teacher", "teacher", {**base, "stage": "offline", "model": base["teacher"],
                                              "fingerprint": fingerprint})


def _student_run(tracker: Tracker, base: dict[str, Any], method: str, seed: int, fingerprint: str) -> TrackedRun:
    return tracker.run(f"{method}-seed{seed}", method,
                       {**base, "stage": "offline", "method": method, "seed": seed, "fingerprint": fingerprint})


def _online_run(tracker: Tracker, base: dict[str, Any], method: str, seed: int) -> TrackedRun:
    return tracker.run(f"online-{method}-seed{seed}", f"online-{method}",
                       {**base, "stage": "online", "method": method, "seed": seed})


def _log_window(run: TrackedRun, window: dict[str, Any]) -> None:
    run.log({k: v for k, v in window.items() if k != "shift_rows"}, step=int(window["period"]))


def track_report(tracker: Tracker, cfg: ExperimentConfig, out_dir: str | Path) -> None:
    """The report's PNG plots as images of one ``report`` run."""
    pngs = sorted(Path(out_dir).glob("*.png"))
    if not pngs:
        return
    with tracker.run("report", "report", {**to_dict(cfg), "stage": "report"}) as run:
        for p in pngs:
            run.image(p.stem, p)
