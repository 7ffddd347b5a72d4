"""Offline transfer: teacher on the history, projection, then every student method on the window.

Time-ordered protocol (DESIGN.md section 8): the teacher trains on ``data.teacher_periods``; students
see only ``data.window_periods`` (a sample of ratio ``r`` of it for the CrossAdapt variants); all are
evaluated on ``data.test_periods``, which nobody trains on. Validation (early stopping) is the time
tail of each training range.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from crossadapt import atomic
from crossadapt.config import ExperimentConfig, ModelConfig, to_dict
from crossadapt.data import arrays as A
from crossadapt.data import ray_data
from crossadapt.experiment.methods import get_method, phases_for
from crossadapt.featuremap import FeatureMap
from crossadapt.models import load_checkpoint
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob
from crossadapt.train.ray_train import TrainOutcome, fit

Log = Callable[[str], None]


def _say(msg: str) -> None:
    print(f"[crossadapt] {msg}", flush=True)


def test_arrays(cfg: ExperimentConfig, fm: FeatureMap) -> A.Arrays:
    """The evaluation period(s), read once."""
    return A.read_periods(cfg.data.root, A.period_range(cfg.data.test_periods), fm)


def evaluate_checkpoint(path: str, fm: FeatureMap, data: A.Arrays) -> dict[str, float]:
    """Test metrics of a checkpoint (its feature map must match the data's)."""
    model = load_checkpoint(path, expected_feature_map=fm).model
    return engine.evaluate(model, data)


def train_teacher(cfg: ExperimentConfig, fm: FeatureMap, out_dir: Path, seed: int = 0) -> TrainOutcome:
    """Train the teacher (``cfg.teacher``) on the whole history with early stopping."""
    train, valid = ray_data.window_split(
        cfg.data.root, A.period_range(cfg.data.teacher_periods), fm, cfg.data.valid_fraction
    )
    job = TrainJob(
        name="teacher",
        run_dir=str(out_dir / "teacher"),
        model=cfg.teacher,
        feature_map=fm.to_dict(),
        phases=(Phase(epochs=cfg.optim.epochs, lr=cfg.optim.lr),),
        batch_size=cfg.optim.batch_size,
        weight_decay=cfg.optim.weight_decay,
        patience=cfg.optim.patience,
        seed=seed,
        amp=cfg.resources.amp,
    )
    return fit(job, train, valid, cfg.resources)


def project_teacher(cfg: ExperimentConfig, teacher_ckpt: str, out_dir: Path) -> tuple[str, dict, float]:
    """Project the teacher's tables to the student's dimension with the projection actors.

    Returns the path of the initial student embeddings, the per-field report and the seconds taken.
    """
    from crossadapt.projection.actors import project_checkpoint  # Ray glue, imported where needed

    t0 = time.perf_counter()
    result = project_checkpoint(teacher_ckpt, cfg.student.embed_dim, cfg.projection)
    seconds = time.perf_counter() - t0
    path = out_dir / "projection" / "student_init.pt"
    with atomic.atomic_path(path) as tmp:
        torch.save({"table": result.table, "numeric": result.numeric}, tmp)
    atomic.write_json(out_dir / "projection" / "report.json", {"seconds": seconds, "fields": result.reports})
    return str(path), result.reports, seconds


def run_method(
    name: str,
    seed: int,
    cfg: ExperimentConfig,
    fm: FeatureMap,
    teacher_ckpt: str,
    init_path: str,
    projection_seconds: float,
    out_dir: Path,
    test: A.Arrays,
    student: ModelConfig | None = None,
) -> dict:
    """Train one student method with one seed and evaluate it on the test period(s)."""
    spec = get_method(name)
    student = student or cfg.student
    train, valid = ray_data.window_split(
        cfg.data.root,
        A.period_range(cfg.data.window_periods),
        fm,
        cfg.data.valid_fraction,
        r=cfg.distill.r if spec.sample else 1.0,
        seed=seed,
        mode=cfg.distill.sample_mode,
    )
    job = TrainJob(
        name=f"{name}-seed{seed}",
        run_dir=str(out_dir / "students" / f"{name}-seed{seed}"),
        model=student,
        feature_map=fm.to_dict(),
        phases=phases_for(spec, cfg.optim, cfg.distill),
        batch_size=cfg.optim.batch_size,
        weight_decay=cfg.optim.weight_decay,
        patience=cfg.optim.patience,
        seed=seed,
        teacher_checkpoint=teacher_ckpt if spec.teacher else "",
        alpha=cfg.distill.alpha if spec.teacher else 0.0,
        temperature=cfg.distill.temperature,
        kd_kind=cfg.distill.kind,
        init_embeddings=init_path if spec.projection else "",
        amp=cfg.resources.amp,
    )
    outcome = fit(job, train, valid, cfg.resources)
    metrics = evaluate_checkpoint(outcome.best_checkpoint, fm, test)
    # Projection is part of CrossAdapt's cost: charge it to every method that uses it.
    extra = projection_seconds if spec.projection else 0.0
    return {
        "method": name,
        "seed": seed,
        **{k: metrics[k] for k in ("auc", "logloss", "bias")},
        "train_seconds": outcome.train_seconds + extra,
        "wall_seconds": outcome.wall_seconds + extra,
        "samples": outcome.samples_seen,
        "best_valid_auc": outcome.best_valid_auc,
        "epochs": len(outcome.history),
        "checkpoint": outcome.best_checkpoint,
    }


def summarize(records: list[dict]) -> dict[str, dict[str, list]]:
    """Per method, the per-seed lists of every figure (the ``offline`` block of results.json)."""
    out: dict[str, dict[str, list]] = {}
    for r in records:
        m = out.setdefault(r["method"], {k: [] for k in ("seed", "auc", "logloss", "bias", "train_seconds",
                                                          "wall_seconds", "samples")})
        for k in m:
            m[k].append(r[k])
    return out


def mean_std(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def run_offline(cfg: ExperimentConfig, fm: FeatureMap, out_dir: Path, on_record: Callable[[dict], None] | None = None) -> dict:
    """Teacher, projection and every configured method over every seed; returns the results blocks."""
    out_dir = Path(out_dir)
    _say(f"teacher {cfg.teacher.name}(d={cfg.teacher.embed_dim}) on periods {list(A.period_range(cfg.data.teacher_periods))}")
    teacher = train_teacher(cfg, fm, out_dir)
    test = test_arrays(cfg, fm)
    teacher_metrics = evaluate_checkpoint(teacher.best_checkpoint, fm, test)
    _say(f"teacher test auc {teacher_metrics['auc']:.4f} logloss {teacher_metrics['logloss']:.4f} "
         f"({teacher.train_seconds:.1f} s)")

    needs_projection = any(get_method(m).projection for m in cfg.methods)
    init_path, reports, proj_seconds = "", {}, 0.0
    if needs_projection:
        init_path, reports, proj_seconds = project_teacher(cfg, teacher.best_checkpoint, out_dir)
        worst = max(r["inner_product_rel_error"] for r in reports.values())
        _say(f"projection d={cfg.teacher.embed_dim} -> {cfg.student.embed_dim}: {len(reports)} tables in "
             f"{proj_seconds:.2f} s, worst inner-product error {worst:.2e}")

    records = []
    for seed in cfg.seeds:
        for name in cfg.methods:
            rec = run_method(name, seed, cfg, fm, teacher.best_checkpoint, init_path, proj_seconds, out_dir, test)
            records.append(rec)
            _say(f"{name} seed {seed}: test auc {rec['auc']:.4f} logloss {rec['logloss']:.4f} "
                 f"bias {rec['bias']:+.3f} train {rec['train_seconds']:.1f} s")
            if on_record:
                on_record(rec)
            atomic.write_json(out_dir / "offline_records.json", records)  # progress survives a crash
    return {
        "teacher": {**teacher_metrics, "train_seconds": teacher.train_seconds, "checkpoint": teacher.best_checkpoint},
        "offline": summarize(records),
        "offline_checkpoints": {m: [r["checkpoint"] for r in records if r["method"] == m] for m in cfg.methods},
        "projection": reports,
        "projection_seconds": proj_seconds,
        "config": to_dict(cfg),
    }


def student_checkpoint(results: dict, method: str, seed_index: int = 0) -> str:
    """Checkpoint path of ``method``'s student for the ``seed_index``-th seed in ``results``."""
    return results["offline_checkpoints"][method][seed_index]
