"""Send an experiment's results to W&B: the teacher, one run per offline method x seed, one per online
method x seed, and the report's plots. Runs are written from the results on the driver once a stage is
done (workers never talk to W&B), so a failed or absent W&B cannot disturb training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossadapt.config import ExperimentConfig, to_dict
from crossadapt.tracking import Tracker

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
        with tracker.run("teacher", "teacher", {**base, "stage": "offline", "model": base["teacher"],
                                                "fingerprint": teacher.get("fingerprint", "")}) as run:
            for i, h in enumerate(teacher.get("history", [])):
                run.log(h, step=i)
            run.summary({k: teacher[k] for k in ("auc", "logloss", "bias", "train_seconds") if k in teacher})
    for rec in results.get("offline_records", []) if records is None else records:
        cfg_run = {**base, "stage": "offline", "method": rec["method"], "seed": rec["seed"],
                   "fingerprint": rec.get("fingerprint", "")}
        with tracker.run(f"{rec['method']}-seed{rec['seed']}", rec["method"], cfg_run) as run:
            for i, h in enumerate(rec.get("history", [])):
                run.log(h, step=i)
            run.summary({k: rec[k] for k in _FINAL if k in rec})


def track_online(tracker: Tracker, cfg: ExperimentConfig, results: dict[str, Any]) -> None:
    """One run per online method and seed with its per-period windows (step = period), grouped by method."""
    base = to_dict(cfg)
    for method, block in results.get("online", {}).items():
        for run_block in block.get("runs", []):
            seed = run_block["seed"]
            cfg_run = {**base, "stage": "online", "method": method, "seed": seed}
            with tracker.run(f"online-{method}-seed{seed}", f"online-{method}", cfg_run) as run:
                for w in run_block["windows"]:
                    run.log({k: v for k, v in w.items() if k != "shift_rows"}, step=int(w["period"]))
                run.summary({k: v for k, v in run_block.items() if k != "windows"})


def track_report(tracker: Tracker, cfg: ExperimentConfig, out_dir: str | Path) -> None:
    """The report's PNG plots as images of one ``report`` run."""
    pngs = sorted(Path(out_dir).glob("*.png"))
    if not pngs:
        return
    with tracker.run("report", "report", {**to_dict(cfg), "stage": "report"}) as run:
        for p in pngs:
            run.image(p.stem, p)
