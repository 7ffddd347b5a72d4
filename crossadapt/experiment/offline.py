"""Offline transfer: teacher on the history, projection, then every student method on the window.

Time-ordered protocol (DESIGN.md section 8): the teacher trains on ``data.teacher_periods``; students
see only ``data.window_periods`` (a sample of ratio ``r`` of it for the CrossAdapt variants); all are
evaluated on ``data.test_periods``, which nobody trains on. Validation (early stopping) is the time
tail of each training range.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from crossadapt import atomic
from crossadapt.config import ExperimentConfig, ModelConfig, to_dict
from crossadapt.data import arrays as A
from crossadapt.data import ray_data
from crossadapt.experiment import paired
from crossadapt.experiment.methods import get_method, phases_for
from crossadapt.experiment.teacher_check import judge_teacher
from crossadapt.featuremap import FeatureMap
from crossadapt.metrics import evaluate_predictions, fmt
from crossadapt.models import load_checkpoint
from crossadapt.models.embedding import field_offsets
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob
from crossadapt.train.ray_train import TrainOutcome, fit, fit_many

if TYPE_CHECKING:
    import ray.data



def _say(msg: str) -> None:
    print(f"[crossadapt] {msg}", flush=True)


def test_arrays(cfg: ExperimentConfig, fm: FeatureMap) -> A.Arrays:
    """The evaluation period(s), read once."""
    return A.read_periods(cfg.data.root, A.period_range(cfg.data.test_periods), fm)


def evaluate_checkpoint(path: str, fm: FeatureMap, data: A.Arrays) -> dict[str, float]:
    """Test metrics of a checkpoint (its feature map must match the data's)."""
    model = load_checkpoint(path, expected_feature_map=fm).model
    return engine.evaluate(model, data)


def evaluate_student(path: str, fm: FeatureMap, data: A.Arrays, test_periods: tuple[int, int]) -> dict[str, float]:
    """Test metrics of a student checkpoint; its test scores are saved beside it for the paired tests
    (``crossadapt.experiment.paired``), from the same float32 probabilities the metrics come from."""
    model = load_checkpoint(path, expected_feature_map=fm).model
    scores = engine.predict_proba(model, data)
    paired.save_test_scores(path, scores, data["label"], A.period_range(test_periods))
    return evaluate_predictions(data["label"], scores)


def history_datasets(cfg: ExperimentConfig, fm: FeatureMap) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """The history (``data.teacher_periods``) as Ray datasets: training rows and the validation tail."""
    return ray_data.window_split(cfg.data.root, A.period_range(cfg.data.teacher_periods), fm, cfg.data.valid_fraction)


def history_job(cfg: ExperimentConfig, fm: FeatureMap, name: str, run_dir: str | Path, model: ModelConfig,
                seed: int = 0) -> TrainJob:
    """A model trained like the teacher: labels only, one phase of ``optim`` settings, early stopping."""
    return TrainJob(
        name=name,
        run_dir=str(run_dir),
        model=model,
        feature_map=fm.to_dict(),
        phases=(Phase(epochs=cfg.optim.epochs, lr=cfg.optim.lr),),
        batch_size=cfg.optim.batch_size,
        weight_decay=cfg.optim.weight_decay,
        patience=cfg.optim.patience,
        seed=seed,
        amp=cfg.resources.amp,
        checkpoint_interval_s=cfg.resources.checkpoint_interval_s,
    )


def train_teacher(cfg: ExperimentConfig, fm: FeatureMap, out_dir: Path, seed: int = 0) -> TrainOutcome:
    """Train the teacher (``cfg.teacher``) on the whole history with early stopping."""
    train, valid = history_datasets(cfg, fm)
    return fit(history_job(cfg, fm, "teacher", out_dir / "teacher", cfg.teacher, seed), train, valid, cfg.resources)


def field_ranges(fm: FeatureMap) -> list[tuple[str, int, int]]:
    """Rows of each categorical field in the single embedding table (same offsets as the models)."""
    offsets = field_offsets(fm.vocab_sizes)
    return [(f.name, o, o + f.vocab_size) for f, o in zip(fm.categorical_fields, offsets)]


def project_teacher(cfg: ExperimentConfig, teacher_ckpt: str, fm: FeatureMap, out_dir: Path) -> tuple[str, dict, float]:
    """Project the teacher's tables to the student's dimension with the projection actors.

    Each actor reads its own row range of the checkpoint (memory-mapped); returns the path of the
    initial student embeddings, ``{"fields": per-field reports, "summary": whole-projection
    report}`` (see ``crossadapt.projection.ProjectionResult``) and the seconds taken.
    """
    t0 = time.perf_counter()
    ranges = field_ranges(fm)
    rows = ranges[-1][2]
    if rows >= cfg.projection.actor_min_rows:
        from crossadapt.projection.actors import project_distributed  # Ray glue, imported where needed

        _say(f"projection: {rows} rows on {cfg.projection.num_actors} projection actors")
        # Actors write their rows straight into this file: no projected shard travels through Ray.
        result = project_distributed(teacher_ckpt, ranges, cfg.student.embed_dim, cfg.projection,
                                     sample_rows=cfg.projection.report_rows,
                                     out_path=out_dir / "projection" / "student_table.npy")
    else:
        from crossadapt.projection import project_embedding_state

        _say(f"projection: {rows} rows < projection.actor_min_rows={cfg.projection.actor_min_rows}: in-process")
        state = load_checkpoint(teacher_ckpt, expected_feature_map=fm).model.state_dict()
        result = project_embedding_state(state["embedding.table.weight"], ranges, cfg.student.embed_dim,
                                         cfg.projection, numeric=state.get("embedding.numeric"),
                                         sample_rows=cfg.projection.report_rows)
    seconds = time.perf_counter() - t0
    path = out_dir / "projection" / "student_init.pt"
    with atomic.atomic_path(path) as tmp:
        torch.save({"table": result.table, "numeric": result.numeric}, tmp)
    report = {"fields": result.reports, "summary": result.summary}
    atomic.write_json(out_dir / "projection" / "report.json", {"seconds": seconds, **report})
    return str(path), report, seconds


def student_job(name: str, seed: int, cfg: ExperimentConfig, fm: FeatureMap, teacher_ckpt: str, init_path: str,
                out_dir: Path, student: ModelConfig | None = None) -> TrainJob:
    """The training job of student method ``name`` with ``seed``; its data is the dataset named
    ``window`` (the whole retained window) or ``sample<seed>`` (a sample of ratio ``r`` of it)."""
    spec = get_method(name)
    return TrainJob(
        name=f"{name}-seed{seed}",
        run_dir=str(out_dir / "students" / f"{name}-seed{seed}"),
        model=student or cfg.student,
        feature_map=fm.to_dict(),
        phases=phases_for(spec, cfg.optim, cfg.distill),
        batch_size=cfg.distill.batch_size if spec.sample else cfg.optim.batch_size,
        weight_decay=cfg.optim.weight_decay,
        patience=cfg.optim.patience,
        seed=seed,
        teacher_checkpoint=teacher_ckpt if spec.teacher else "",
        alpha=cfg.distill.alpha if spec.teacher else 0.0,
        temperature=cfg.distill.temperature,
        kd_kind=cfg.distill.kind,
        init_embeddings=init_path if spec.projection else "",
        amp=cfg.resources.amp,
        checkpoint_interval_s=cfg.resources.checkpoint_interval_s,
        train_key=f"sample{seed}" if spec.sample else "window",
        valid_key="valid",
    )


def student_datasets(cfg: ExperimentConfig, fm: FeatureMap, methods: list[str], seeds: list[int]) -> dict:
    """The datasets the student jobs name: the window, its validation tail and one sample per seed."""
    periods = A.period_range(cfg.data.window_periods)
    window, valid = ray_data.window_split(cfg.data.root, periods, fm, cfg.data.valid_fraction)
    datasets = {"window": window, "valid": valid}
    if any(get_method(m).sample for m in methods):
        for seed in seeds:
            datasets[f"sample{seed}"], _ = ray_data.window_split(
                cfg.data.root, periods, fm, cfg.data.valid_fraction, r=cfg.distill.r, seed=seed,
                mode=cfg.distill.sample_mode)
    return datasets


def run_students(cfg: ExperimentConfig, fm: FeatureMap, teacher_ckpt: str, init_path: str,
                 projection_seconds: float, out_dir: Path, test: A.Arrays,
                 methods: list[str] | None = None, seeds: list[int] | None = None) -> list[dict]:
    """Train every (method, seed) student in one Ray Train run and evaluate each on the test period(s)."""
    methods = list(methods or cfg.methods)
    seeds = list(cfg.seeds if seeds is None else seeds)
    pairs = [(m, s) for s in seeds for m in methods]
    jobs = [student_job(m, s, cfg, fm, teacher_ckpt, init_path, out_dir) for m, s in pairs]
    outcomes = fit_many(jobs, student_datasets(cfg, fm, methods, seeds), cfg.resources, name="students",
                        storage_dir=out_dir)
    records = []
    for (name, seed), outcome in zip(pairs, outcomes):
        metrics = evaluate_student(outcome.best_checkpoint, fm, test, cfg.data.test_periods)
        # Projection is part of CrossAdapt's cost: charge it to every method that uses it.
        extra = projection_seconds if get_method(name).projection else 0.0
        records.append({
            "method": name,
            "seed": seed,
            **{k: metrics[k] for k in ("auc", "logloss", "bias")},
            "train_seconds": outcome.train_seconds + extra,
            "wall_seconds": outcome.wall_seconds + extra,
            "samples": outcome.samples_seen,
            "best_valid_auc": outcome.best_valid_auc,
            "epochs": len(outcome.history),
            "history": outcome.history,
            "checkpoint": outcome.best_checkpoint,
        })
    return records


SUMMARY_KEYS = ("seed", "auc", "logloss", "bias", "train_seconds", "wall_seconds", "samples")


def summarize(records: list[dict], keys: tuple[str, ...] = SUMMARY_KEYS) -> dict[str, dict[str, list]]:
    """Per method, the per-seed lists of every figure in ``keys`` (the ``offline`` block of results.json)."""
    out: dict[str, dict[str, list]] = {}
    for r in records:
        m = out.setdefault(r["method"], {k: [] for k in keys})
        for k in m:
            m[k].append(r[k])
    return out


def run_offline(cfg: ExperimentConfig, fm: FeatureMap, out_dir: Path, on_record: Callable[[dict], None] | None = None) -> dict:
    """Teacher, projection and every configured method over every seed; returns the results blocks."""
    out_dir = Path(out_dir)
    _say(f"teacher {cfg.teacher.name}(d={cfg.teacher.embed_dim}) on periods {list(A.period_range(cfg.data.teacher_periods))}")
    teacher = train_teacher(cfg, fm, out_dir)
    check = judge_teacher(cfg, fm, teacher.best_checkpoint)  # a teacher no better than counting stops here
    test = test_arrays(cfg, fm)
    teacher_metrics = evaluate_checkpoint(teacher.best_checkpoint, fm, test)
    _say(f"teacher test auc {fmt(teacher_metrics['auc'])} logloss {teacher_metrics['logloss']:.4f} "
         f"({teacher.train_seconds:.1f} s)")

    needs_projection = any(get_method(m).projection for m in cfg.methods)
    init_path, proj, proj_seconds = "", {"fields": {}, "summary": {}}, 0.0
    if needs_projection:
        init_path, proj, proj_seconds = project_teacher(cfg, teacher.best_checkpoint, fm, out_dir)
        s, cross = proj["summary"], proj["summary"]["cross_field_rel_error"]
        _say(f"projection d={cfg.teacher.embed_dim} -> {cfg.student.embed_dim}: {len(proj['fields'])} tables in "
             f"{proj_seconds:.2f} s ({s['method']}, basis {s['basis']}), inner-product error within fields "
             f"{s['within_field_rel_error']:.2e}, across fields {'n/a' if cross is None else f'{cross:.2e}'}")

    _say(f"students: {len(cfg.methods)} methods x {len(cfg.seeds)} seeds in one Ray Train run")
    records = run_students(cfg, fm, teacher.best_checkpoint, init_path, proj_seconds, out_dir, test)
    for rec in records:
        _say(f"{rec['method']} seed {rec['seed']}: test auc {fmt(rec['auc'])} logloss {rec['logloss']:.4f} "
             f"bias {fmt(rec['bias'], '+.3f')} train {rec['train_seconds']:.1f} s")
        if on_record:
            on_record(rec)
    return {
        "teacher": {**teacher_metrics, "train_seconds": teacher.train_seconds, "checkpoint": teacher.best_checkpoint,
                    "history": teacher.history, "check": check},
        "offline": summarize(records),
        "offline_records": records,
        "offline_checkpoints": {m: [r["checkpoint"] for r in records if r["method"] == m] for m in cfg.methods},
        "projection": proj["fields"],
        "projection_summary": proj["summary"],
        "projection_seconds": proj_seconds,
        "config": to_dict(cfg),
    }


def student_checkpoint(results: dict, method: str, seed_index: int = 0) -> str:
    """Checkpoint path of ``method``'s student for the ``seed_index``-th seed in ``results``."""
    return results["offline_checkpoints"][method][seed_index]
