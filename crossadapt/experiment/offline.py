"""Offline transfer: teacher on the history, projection, then every student method on the window.

Time-ordered protocol (DESIGN.md section 8): the teacher trains on ``data.teacher_periods``; students
see only ``data.window_periods`` (a sample of ratio ``r`` of it for the CrossAdapt variants); all are
evaluated on ``data.test_periods``, which nobody trains on. Validation (early stopping) is the time
tail of each training range.

Every stage is bound to what produced it (``crossadapt.fingerprint``). Its fingerprint, known
before anything trains, names its folder::

    <out_dir>/teacher/<fp>/                      best.pt, outcome.json
    <out_dir>/projection/<fp>/                   student_init.pt, report.json
    <out_dir>/students/<method>-seed<s>/<fp>/    best.pt, outcome.json

Policy: a stage whose folder holds its finished outcome is reused, not retrained (the teacher, the
projection, each (method, seed) student); an interrupted one resumes from its last Ray Train
checkpoint; a stage with another fingerprint (another config, data or code) starts afresh in its
own folder, and the old folders stay (going back to an earlier config reuses them). ``fresh=True``
(``--fresh`` on the command line) trains every stage of the run from the start; deleting a stage's
folder does the same for that stage. Records of ``<out_dir>/results.json`` for methods or seeds not
run now are kept when the current config would reproduce them (same fingerprint, same test data)
and dropped, with one message, when not.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow.parquet as pq
import torch

from crossadapt import atomic, log
from crossadapt import fingerprint as F
from crossadapt.config import ExperimentConfig, ModelConfig, to_dict
from crossadapt.data import arrays as A
from crossadapt.data import ray_data, shard_budget
from crossadapt.data.sampling import PositiveRatePlan, positive_rate_plan
from crossadapt.errors import ConfigError
from crossadapt.experiment import paired
from crossadapt.experiment.methods import METHODS, get_method, phases_for
from crossadapt.experiment.teacher_check import judge_teacher
from crossadapt.featuremap import FeatureMap
from crossadapt.metrics import evaluate_predictions, fmt
from crossadapt.models import load_checkpoint
from crossadapt.models.teacher_import import (
    MANIFEST_FILE,
    import_teacher,
    is_imported,
    load_teacher_model,
    read_manifest,
    teacher_embedding_path,
    teacher_trainable,
)
from crossadapt.models.embedding import field_offsets
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob
from crossadapt.train.ray_train import EpochCallback, TrainOutcome, epochs_cost, fit_many

if TYPE_CHECKING:
    import ray.data



_say = log.sayer(__name__)


EvalSplit = A.Arrays | A.PeriodChunks


def test_arrays(cfg: ExperimentConfig, fm: FeatureMap) -> EvalSplit:
    """The evaluation period(s): read once when their arrays fit ``resources.cache_bytes``, else read
    in chunks at each evaluation (the same scores; only scores and labels are held)."""
    chunks = A.PeriodChunks(cfg.data.root, A.period_range(cfg.data.test_periods), fm)
    if chunks.rows * shard_budget.row_bytes(fm) <= cfg.resources.cache_bytes:
        return A.read_periods(cfg.data.root, chunks.periods, fm)
    return chunks


def evaluate_checkpoint(path: str, fm: FeatureMap, data: EvalSplit) -> dict[str, float]:
    """Test metrics of a checkpoint (its feature map must match the data's) or an imported teacher."""
    model = load_teacher_model(path, fm)
    return engine.evaluate(model, data)


def evaluate_student(path: str, fm: FeatureMap, data: EvalSplit, test_periods: tuple[int, int]) -> dict[str, float]:
    """Test metrics of a student checkpoint; its test scores are saved beside it for the paired tests
    (``crossadapt.experiment.paired``), from the same float32 probabilities the metrics come from.

    A student saved with a logit offset (trained on a positive-rate sample) is scored with it; its
    LogLoss and bias without it are added as ``logloss_uncorrected`` and ``bias_uncorrected``."""
    ck = load_checkpoint(path, expected_feature_map=fm)
    scores, labels = engine.scores_and_labels(ck.model, data)
    paired.save_test_scores(path, scores, labels, A.period_range(test_periods))
    metrics = evaluate_predictions(labels, scores)
    offset = ck.model_cfg.logit_offset
    if offset:
        raw, _ = engine.scores_and_labels(ck.model, data, logit_offset=-offset)
        raw_metrics = evaluate_predictions(labels, raw)
        metrics.update(logloss_uncorrected=raw_metrics["logloss"], bias_uncorrected=raw_metrics["bias"])
    return metrics


def history_datasets(cfg: ExperimentConfig, fm: FeatureMap) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """The history (``data.teacher_periods``) as Ray datasets: training rows and the validation tail."""
    return ray_data.window_split(cfg.data.root, A.period_range(cfg.data.teacher_periods), fm, cfg.data.valid_fraction)


def stream_buffer_rows(cfg: ExperimentConfig, fm: FeatureMap, periods: tuple[int, int], r: float = 1.0,
                       distill: bool = False) -> int:
    """``TrainJob.stream_buffer_rows`` of a job trained on a sample of ratio ``r`` of ``periods``' pool:
    0 when a worker's shard fits ``resources.cache_bytes`` (held resident), else the shuffle buffer."""
    rows = shard_budget.pool_rows(cfg.data.root, A.period_range(periods), cfg.data.valid_fraction)
    shard = shard_budget.shard_bytes(rows, r, cfg.resources.num_workers, shard_budget.row_bytes(fm, distill))
    return shard_budget.stream_buffer_rows(shard, cfg.resources.cache_bytes, cfg.resources.stream_buffer_rows)


def history_job(cfg: ExperimentConfig, fm: FeatureMap, name: str, run_dir: str | Path, model: ModelConfig,
                seed: int = 0) -> TrainJob:
    """A model trained like the teacher: labels only, one phase of ``optim`` settings, early stopping."""
    return TrainJob(
        name=name,
        run_dir=str(run_dir),
        model=model,
        feature_map=fm.to_dict(),
        phases=(Phase(epochs=cfg.optim.epochs, lr=cfg.optim.lr, embed_lr=cfg.optim.embed_lr),),
        batch_size=cfg.optim.batch_size,
        weight_decay=cfg.optim.weight_decay,
        embed_weight_decay=cfg.optim.embed_weight_decay,
        patience=cfg.optim.patience,
        seed=seed,
        amp=cfg.resources.amp,
        checkpoint_interval_s=cfg.resources.checkpoint_interval_s,
        stream_buffer_rows=stream_buffer_rows(cfg, fm, cfg.data.teacher_periods),
    )


def history_data(cfg: ExperimentConfig, fm: FeatureMap) -> dict[str, Any]:
    """What the rows of a history job are (for its fingerprint): the history's data and validation share."""
    return {"rows": F.data_fingerprint(cfg.data.root, fm.to_dict(), A.period_range(cfg.data.teacher_periods)),
            "valid_fraction": cfg.data.valid_fraction}


def bound_history_job(cfg: ExperimentConfig, fm: FeatureMap, name: str, folder: str | Path, model: ModelConfig,
                      seed: int = 0, data: dict[str, Any] | None = None) -> TrainJob:
    """``history_job`` with its fingerprint, in ``<folder>/<fingerprint>``."""
    job = history_job(cfg, fm, name, "", model, seed)
    fp = F.train_fingerprint(job, data or history_data(cfg, fm), cfg.resources.num_workers, F.code_fingerprint())
    return replace(job, run_dir=str(Path(folder) / F.short(fp)), fingerprint=fp)


def teacher_job(cfg: ExperimentConfig, fm: FeatureMap, out_dir: str | Path, seed: int = 0) -> TrainJob:
    """The teacher's job, bound to its fingerprint (folder ``<out_dir>/teacher/<fingerprint>``)."""
    return bound_history_job(cfg, fm, "teacher", Path(out_dir) / "teacher", cfg.teacher, seed)


def train_teacher(cfg: ExperimentConfig, fm: FeatureMap, out_dir: Path, seed: int = 0, fresh: bool = False,
                  job: TrainJob | None = None, on_epoch: EpochCallback | None = None) -> TrainOutcome:
    """Train the teacher (``cfg.teacher``) on the whole history with early stopping; a finished
    teacher of the same fingerprint in ``out_dir`` is reused (``fresh``: trained again). ``on_epoch``:
    see ``fit_many``."""
    job = job or teacher_job(cfg, fm, out_dir, seed)
    outcome = fit_many([job], lambda _: dict(zip(("train", "valid"), history_datasets(cfg, fm))), cfg.resources,
                       name="teacher", storage_dir=out_dir, fresh=fresh, on_epoch=on_epoch)[0]
    if outcome.reused:
        _say(f"teacher: finished earlier with this fingerprint in {job.run_dir}: reused, not retrained")
    return outcome


def field_ranges(fm: FeatureMap) -> list[tuple[str, int, int]]:
    """Rows of each categorical field in the single embedding table (same offsets as the models)."""
    offsets = field_offsets(fm.vocab_sizes)
    return [(f.name, o, o + f.vocab_size) for f, o in zip(fm.categorical_fields, offsets)]


PROJECTION_REPORT = "report.json"


def project_teacher(cfg: ExperimentConfig, teacher_ckpt: str, fm: FeatureMap, folder: Path, fingerprint: str = "",
                    fresh: bool = False) -> tuple[str, dict, float]:
    """Project the teacher's tables to the student's dimension into ``folder`` with the projection actors.

    Each actor reads its own row range of the checkpoint (memory-mapped); returns the path of the
    initial student embeddings, ``{"fields": per-field reports, "summary": whole-projection
    report}`` (see ``crossadapt.projection.ProjectionResult``) and the seconds taken. A finished
    projection of the same ``fingerprint`` in ``folder`` is reused (``fresh``: done again).
    """
    folder = Path(folder)
    path, report_path = folder / "student_init.pt", folder / PROJECTION_REPORT
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    elif fingerprint and path.is_file() and report_path.is_file():
        done = json.loads(report_path.read_text())
        if done.get("fingerprint") == fingerprint:
            _say(f"projection: finished earlier with this fingerprint in {folder}: reused")
            return str(path), {"fields": done["fields"], "summary": done.get("summary", {})}, done["seconds"]
    t0 = time.perf_counter()
    ranges = field_ranges(fm)
    rows = ranges[-1][2]
    if rows >= cfg.projection.actor_min_rows:
        from crossadapt.projection.actors import project_distributed  # Ray glue, imported where needed

        _say(f"projection: {rows} rows on {cfg.projection.num_actors} projection actors")
        # Actors write their rows straight into this file: no projected shard travels through Ray.
        result = project_distributed(teacher_embedding_path(teacher_ckpt), ranges, cfg.student.embed_dim, cfg.projection,
                                     sample_rows=cfg.projection.report_rows,
                                     out_path=folder / "student_table.npy")
    else:
        from crossadapt.projection import project_embedding_state

        _say(f"projection: {rows} rows < projection.actor_min_rows={cfg.projection.actor_min_rows}: in-process")
        state = (torch.load(teacher_embedding_path(teacher_ckpt), map_location="cpu", weights_only=True)
                 if is_imported(teacher_ckpt) else load_checkpoint(teacher_ckpt, expected_feature_map=fm).model.state_dict())
        result = project_embedding_state(state["embedding.table.weight"], ranges, cfg.student.embed_dim,
                                         cfg.projection, numeric=state.get("embedding.numeric"),
                                         sample_rows=cfg.projection.report_rows)
    seconds = time.perf_counter() - t0
    with atomic.atomic_path(path) as tmp:
        torch.save({"table": result.table, "numeric": result.numeric}, tmp)
    report = {"fields": result.reports, "summary": result.summary}
    # Written last: a report with the fingerprint marks a finished projection.
    atomic.write_json(report_path, {"fingerprint": fingerprint, "seconds": seconds,
                                    "report_rows": cfg.projection.report_rows, **report})
    return str(path), report, seconds


def sample_key(seed: int, phase: int = 0) -> str:
    """The name of the sample of run ``seed`` that phase ``phase`` trains on (phase 0: ``sample<seed>``,
    the one every phase shares without ``distill.fresh_sample_per_phase``)."""
    return f"sample{seed}" if phase == 0 else f"sample{seed}-phase{phase}"


def sample_seed(seed: int, phase: int = 0) -> int:
    """The seed that draws ``sample_key(seed, phase)``: ``seed`` for phase 0 (the sample of a run
    without fresh samples), far from every run seed for later phases."""
    return seed + 1_000_003 * phase


def pool_positive_rate(cfg: ExperimentConfig, fm: FeatureMap) -> float:
    """The click rate of the retained window's training pool (its rows before the validation tail,
    what is sampled), from the label column of its files."""
    files = A.period_files(cfg.data.root, A.period_range(cfg.data.window_periods))
    labels = np.concatenate([pq.read_table(f, columns=[fm.label]).column(0).to_numpy() for f in files])
    return float(labels[:A.tail_start(len(labels), cfg.data.valid_fraction)].mean())


def sample_plan(cfg: ExperimentConfig, fm: FeatureMap) -> PositiveRatePlan | None:
    """The keep probabilities of the ``distill.sample_mode: positive_rate`` sample (None in the
    other modes). ConfigError naming ``distill.r`` when the pool holds too few clicks for it."""
    if cfg.distill.sample_mode != "positive_rate":
        return None
    return positive_rate_plan(pool_positive_rate(cfg, fm), cfg.distill.r, cfg.distill.positive_rate)


def student_job(name: str, seed: int, cfg: ExperimentConfig, fm: FeatureMap, teacher_ckpt: str, init_path: str,
                out_dir: Path, student: ModelConfig | None = None, logit_shift: float = 0.0) -> TrainJob:
    """The training job of student method ``name`` with ``seed``; its data is the dataset named
    ``window`` (the whole retained window) or ``sample_key(seed, phase)`` (a sample of ratio ``r``
    of it; one per phase with ``distill.fresh_sample_per_phase``). ``logit_shift``: the log-odds
    shift of a positive-rate sample (``sample_plan``), used by sampled methods only."""
    spec = get_method(name)
    phases = phases_for(spec, cfg.optim, cfg.distill)
    fresh = spec.sample and cfg.distill.fresh_sample_per_phase and len(phases) > 1
    return TrainJob(
        name=f"{name}-seed{seed}",
        run_dir=str(out_dir / "students" / f"{name}-seed{seed}"),
        model=student or cfg.student,
        feature_map=fm.to_dict(),
        phases=phases,
        batch_size=cfg.distill.batch_size if spec.sample else cfg.optim.batch_size,
        weight_decay=cfg.optim.weight_decay,
        embed_weight_decay=cfg.optim.embed_weight_decay,
        patience=cfg.optim.patience,
        seed=seed,
        teacher_checkpoint=teacher_ckpt if spec.teacher else "",
        alpha=cfg.distill.alpha if spec.teacher else 0.0,
        temperature=cfg.distill.temperature,
        kd_kind=cfg.distill.kind,
        loss_form=cfg.distill.loss_form,
        logit_shift=logit_shift if spec.sample else 0.0,
        init_embeddings=init_path if spec.projection else "",
        amp=cfg.resources.amp,
        checkpoint_interval_s=cfg.resources.checkpoint_interval_s,
        train_key=sample_key(seed) if spec.sample else "window",
        valid_key="valid",
        phase_train_keys=tuple(sample_key(seed, p) for p in range(len(phases))) if fresh else (),
        stream_buffer_rows=stream_buffer_rows(cfg, fm, cfg.data.window_periods, cfg.distill.r if spec.sample else 1.0,
                                              distill=spec.teacher and cfg.distill.alpha > 0),
    )


def student_datasets(cfg: ExperimentConfig, fm: FeatureMap, jobs: list[TrainJob],
                     positive: PositiveRatePlan | None = None) -> dict:
    """The datasets ``jobs`` name: the window, its validation tail and each sample a sampled job
    uses (``positive``: the plan of a ``positive_rate`` sample, see ``sample_plan``)."""
    pool, valid = ray_data.window_pieces(cfg.data.root, A.period_range(cfg.data.window_periods), fm,
                                         cfg.data.valid_fraction)  # read and cut once, every sample from it
    datasets = {"window": ray_data.sample_pool(pool, fm), "valid": valid}
    samples = {sample_key(j.seed, p): sample_seed(j.seed, p) for j in jobs if j.train_key != "window"
               for p in range(len(j.phases))}
    for key in sorted({k for j in jobs if j.train_key != "window" for k in engine.phase_keys(j)}):
        datasets[key] = ray_data.sample_pool(pool, fm, r=cfg.distill.r, seed=samples[key],
                                             mode=cfg.distill.sample_mode, positive=positive)
    return datasets


@dataclass
class OfflinePlan:
    """Every offline stage's job or fingerprint, known before anything trains (they depend on inputs only).

    Attributes:
        code: the code fingerprint.
        data: data fingerprints of the ``teacher``, ``window`` and ``test`` periods.
        teacher: the teacher's job (``run_dir`` and ``fingerprint`` set); for an imported teacher
            its folder and import fingerprint (nothing trains it).
        projection: the projection's fingerprint; its folder is ``projection_dir``.
        imported: the teacher is a deployed model (``teacher_import``), not trained here.
        positive: the keep probabilities of a ``positive_rate`` sample (``sample_plan``), else None.
    """

    cfg: ExperimentConfig
    fm: FeatureMap
    out_dir: Path
    code: str
    data: dict[str, str]
    teacher: TrainJob
    projection: str
    imported: bool = False
    positive: PositiveRatePlan | None = None

    @property
    def teacher_checkpoint(self) -> str:
        """The teacher's best checkpoint, or an imported teacher's manifest."""
        return str(Path(self.teacher.run_dir) / (MANIFEST_FILE if self.imported else "best.pt"))

    @property
    def projection_dir(self) -> Path:
        return self.out_dir / "projection" / F.short(self.projection)

    @property
    def init_path(self) -> str:
        return str(self.projection_dir / "student_init.pt")

    def student(self, method: str, seed: int) -> TrainJob:
        """The job of student ``method`` with ``seed``, in ``students/<method>-seed<s>/<fingerprint>``."""
        cfg, spec = self.cfg, get_method(method)
        job = student_job(method, seed, cfg, self.fm, self.teacher_checkpoint, self.init_path, self.out_dir,
                          logit_shift=self.positive.logit_shift if self.positive else 0.0)
        sample = {"r": cfg.distill.r, "mode": cfg.distill.sample_mode, "seed": seed,
                  "fresh_per_phase": bool(job.phase_train_keys)}
        if self.positive is not None:
            sample["positive_rate"] = cfg.distill.positive_rate
        rows = {"rows": self.data["window"], "valid_fraction": cfg.data.valid_fraction,
                "sample": sample if spec.sample else None}
        upstream = ({"teacher": self.teacher.fingerprint} if job.teacher_checkpoint else {}) | (
            {"projection": self.projection} if job.init_embeddings else {})
        fp = F.train_fingerprint(job, rows, cfg.resources.num_workers, self.code, upstream)
        return replace(job, run_dir=str(self.out_dir / "students" / f"{method}-seed{seed}" / F.short(fp)),
                       fingerprint=fp)

    def summary(self) -> dict[str, Any]:
        """The ``fingerprints`` block of results.json."""
        return {"code": self.code, "data": dict(self.data), "teacher": self.teacher.fingerprint,
                "projection": self.projection}


def plan_offline(cfg: ExperimentConfig, fm: FeatureMap, out_dir: str | Path) -> OfflinePlan:
    """The fingerprints and folders of every offline stage of ``cfg`` in ``out_dir`` (trains nothing; hashes
    the parquet files of the teacher, window and test periods)."""
    out_dir = Path(out_dir)
    code = F.code_fingerprint()
    fmd = fm.to_dict()
    data = {k: F.data_fingerprint(cfg.data.root, fmd, A.period_range(span)) for k, span in
            (("teacher", cfg.data.teacher_periods), ("window", cfg.data.window_periods),
             ("test", cfg.data.test_periods))}
    if cfg.teacher_import.program:  # a deployed teacher: checked and bound to the bytes it is made of
        manifest = Path(import_teacher(cfg.teacher_import, fm, out_dir))
        teacher = TrainJob(name="teacher", run_dir=str(manifest.parent), model=cfg.teacher, feature_map=fm.to_dict(),
                           fingerprint=read_manifest(manifest)["fingerprint"])
    else:
        teacher = bound_history_job(cfg, fm, "teacher", out_dir / "teacher", cfg.teacher, 0,
                                    {"rows": data["teacher"], "valid_fraction": cfg.data.valid_fraction})
    projection = F.projection_fingerprint(teacher.fingerprint, cfg.student.embed_dim, cfg.projection, code)
    positive = sample_plan(cfg, fm) if any(get_method(m).sample for m in cfg.methods) else None
    return OfflinePlan(cfg, fm, out_dir, code, data, teacher, projection, bool(cfg.teacher_import.program), positive)


def student_cost(job: TrainJob, r: float) -> float:
    """A student job's cost for dealing jobs to lanes (``resources.concurrent_jobs``): its rows (the
    window, or a sample of ratio ``r``) times its epochs at most, with each step's fixed overhead
    (the quick demo trains half as many rows/s at batch 64 as at 512)."""
    rows = r if job.train_key != "window" else 1.0
    return rows * epochs_cost(job) * (1.0 + 128.0 / job.batch_size)


def run_students(cfg: ExperimentConfig, fm: FeatureMap, plan: OfflinePlan, projection_seconds: float,
                 test: EvalSplit, methods: list[str] | None = None, seeds: list[int] | None = None,
                 fresh: bool = False, on_epoch: EpochCallback | None = None) -> list[dict]:
    """Train every (method, seed) student in one Ray Train run (finished ones of the same fingerprint
    are reused) and evaluate each on the test period(s). Its rank 0 says "job k of N" with an ETA after
    each student; ``on_epoch``: see ``fit_many``."""
    methods = list(methods or cfg.methods)
    seeds = list(cfg.seeds if seeds is None else seeds)
    pairs = [(m, s) for s in seeds for m in methods]
    jobs = [plan.student(m, s) for m, s in pairs]
    outcomes = fit_many(jobs, lambda pending: student_datasets(cfg, fm, pending, plan.positive), cfg.resources,
                        name="students", storage_dir=plan.out_dir, fresh=fresh, on_epoch=on_epoch,
                        cost=lambda j: student_cost(j, cfg.distill.r))
    reused = [f"{m}-seed{s}" for (m, s), o in zip(pairs, outcomes) if o.reused]
    if reused:
        _say(f"students finished earlier with the same fingerprints, reused: {', '.join(reused)}")
    records = []
    for (name, seed), outcome in zip(pairs, outcomes):
        metrics = evaluate_student(outcome.best_checkpoint, fm, test, cfg.data.test_periods)
        # Projection is part of CrossAdapt's cost: charge it to every method that uses it.
        extra = projection_seconds if get_method(name).projection else 0.0
        records.append({
            "method": name,
            "seed": seed,
            **{k: metrics[k] for k in ("auc", "logloss", "bias")},
            # a positive-rate sample's student: its figures before the log-odds correction (None otherwise)
            "bias_uncorrected": metrics.get("bias_uncorrected"),
            "logloss_uncorrected": metrics.get("logloss_uncorrected"),
            "train_seconds": outcome.train_seconds + extra,
            "wall_seconds": outcome.wall_seconds + extra,
            "samples": outcome.samples_seen,
            "best_valid_auc": outcome.best_valid_auc,
            "epochs": len(outcome.history),
            "history": outcome.history,
            "checkpoint": outcome.best_checkpoint,
            "fingerprint": outcome.fingerprint,
            "test_data": plan.data["test"],
            "reused": outcome.reused,
        })
    return records


def merge_records(plan: OfflinePlan, new: list[dict], previous: list[dict]) -> list[dict]:
    """``new`` records plus those of ``previous`` (an earlier results.json) for the (method, seed)
    pairs not run now that the current config reproduces: same fingerprint, same test data. The
    others are dropped with one message. Ordered by method (``cfg.methods`` first), then seed."""
    ran = {(r["method"], r["seed"]) for r in new}
    kept, dropped = [], []
    for r in previous:
        key = (r.get("method"), r.get("seed"))
        if key in ran:
            continue
        current = r.get("method") in METHODS and isinstance(r.get("seed"), int) and \
            r.get("fingerprint") == plan.student(*key).fingerprint and r.get("test_data") == plan.data["test"]
        if current:  # "reused": not trained by the command that writes this results.json
            kept.append({**r, "reused": True})
        else:
            dropped.append(r)
    if dropped:
        names = ", ".join(f"{r.get('method')}-seed{r.get('seed')}" for r in dropped)
        _say(f"results.json: dropped {len(dropped)} earlier record(s) made with another config, data or code "
             f"({names}); run those methods again to get them back")
    if kept:
        _say(f"results.json: kept {len(kept)} earlier record(s) that this config reproduces: "
             + ", ".join(f"{r['method']}-seed{r['seed']}" for r in kept))
    order = list(dict.fromkeys([*plan.cfg.methods, *(r["method"] for r in kept)]))
    return sorted([*new, *kept], key=lambda r: (order.index(r["method"]), r["seed"]))


SUMMARY_KEYS = ("seed", "auc", "logloss", "bias", "train_seconds", "wall_seconds", "samples")


def summarize(records: list[dict], keys: tuple[str, ...] = SUMMARY_KEYS) -> dict[str, dict[str, list]]:
    """Per method, the per-seed lists of every figure in ``keys`` (the ``offline`` block of results.json)."""
    out: dict[str, dict[str, list]] = {}
    for r in records:
        m = out.setdefault(r["method"], {k: [] for k in keys})
        for k in m:
            m[k].append(r[k])
    return out


def run_offline(cfg: ExperimentConfig, fm: FeatureMap, out_dir: Path, on_record: Callable[[dict], None] | None = None,
                previous: dict | None = None, fresh: bool = False, on_epoch: EpochCallback | None = None) -> dict:
    """Teacher, projection and every configured method over every seed; returns the results blocks.

    Stages finished earlier with the same fingerprint are reused (see the module docstring);
    ``previous`` (an earlier results.json of ``out_dir``) contributes the records this config
    reproduces. ``on_record`` sees each record of the methods run now, ``on_epoch`` each epoch of the
    teacher and students trained now, while they train (see ``fit_many``).
    """
    out_dir = Path(out_dir)
    previous = previous or {}
    plan = plan_offline(cfg, fm, out_dir)
    if plan.imported:
        _say(f"teacher: imported {cfg.teacher_import.program} (fingerprint {F.short(plan.teacher.fingerprint)}), "
             f"not trained; {'trainable' if teacher_trainable(plan.teacher_checkpoint) else 'frozen'} online")
        teacher = TrainOutcome(best_checkpoint=plan.teacher_checkpoint, best_valid_auc=None, history=[],
                               train_seconds=0.0, wall_seconds=0.0, samples_seen=0,
                               fingerprint=plan.teacher.fingerprint, reused=True)
    else:
        _say(f"teacher {cfg.teacher.name}(d={cfg.teacher.embed_dim}) on periods "
             f"{list(A.period_range(cfg.data.teacher_periods))} (fingerprint {F.short(plan.teacher.fingerprint)})")
        teacher = train_teacher(cfg, fm, out_dir, fresh=fresh, job=plan.teacher, on_epoch=on_epoch)
    check = judge_teacher(cfg, fm, teacher.best_checkpoint)  # a teacher no better than counting stops here
    test = test_arrays(cfg, fm)
    teacher_metrics = evaluate_checkpoint(teacher.best_checkpoint, fm, test)
    _say(f"teacher test auc {fmt(teacher_metrics['auc'])} logloss {teacher_metrics['logloss']:.4f} "
         f"({teacher.train_seconds:.1f} s)")

    needs_projection = any(get_method(m).projection for m in cfg.methods)
    init_path, proj, proj_seconds = "", {"fields": {}, "summary": {}}, 0.0
    if needs_projection:
        init_path, proj, proj_seconds = project_teacher(cfg, teacher.best_checkpoint, fm, plan.projection_dir,
                                                        plan.projection, fresh)
        s, cross = proj["summary"], proj["summary"].get("cross_field_rel_error")
        _say(f"projection d={cfg.teacher.embed_dim} -> {cfg.student.embed_dim}: {len(proj['fields'])} tables in "
             f"{proj_seconds:.2f} s ({s.get('method')}, basis {s.get('basis')}), inner-product error within fields "
             f"{fmt(s.get('within_field_rel_error'), '.2e')}, across fields {fmt(cross, '.2e')}")

    _say(f"students: {len(cfg.methods)} methods x {len(cfg.seeds)} seeds in one Ray Train run")
    new = run_students(cfg, fm, plan, proj_seconds, test, fresh=fresh, on_epoch=on_epoch)
    for rec in new:
        _say(f"{rec['method']} seed {rec['seed']}: test auc {fmt(rec['auc'])} logloss {rec['logloss']:.4f} "
             f"bias {fmt(rec['bias'], '+.3f')} train {rec['train_seconds']:.1f} s" + (" (reused)" if rec["reused"] else ""))
        if on_record:
            on_record(rec)
    records = merge_records(plan, new, previous.get("offline_records", []))
    if not needs_projection and previous.get("fingerprints", {}).get("projection") == plan.projection and \
            any(get_method(r["method"]).projection for r in records):
        # kept records of projected methods came from this same projection: keep its report
        init_path = previous.get("projection_init", "")
        proj = {"fields": previous.get("projection", {}), "summary": previous.get("projection_summary", {})}
        proj_seconds = previous.get("projection_seconds", 0.0)
    methods = list(dict.fromkeys(r["method"] for r in records))
    return {
        "teacher": {**teacher_metrics, "train_seconds": teacher.train_seconds, "checkpoint": teacher.best_checkpoint,
                    "history": teacher.history, "check": check, "fingerprint": teacher.fingerprint,
                    "reused": teacher.reused, "imported": plan.imported,
                    "trainable": teacher_trainable(teacher.best_checkpoint)},
        "offline": summarize(records),
        "offline_records": records,
        "offline_checkpoints": {m: [r["checkpoint"] for r in records if r["method"] == m] for m in methods},
        "projection": proj["fields"],
        "projection_summary": proj["summary"],
        "projection_seconds": proj_seconds,
        "projection_init": init_path,
        "fingerprints": plan.summary(),
        "config": to_dict(cfg),
    }


def check_current(plan: OfflinePlan, results: dict, methods: tuple[str, ...] = ("crossadapt",)) -> None:
    """ConfigError unless ``results`` (an earlier results.json) hold the teacher and the ``methods``'
    students that ``plan``'s config gives: checkpoints of another config are never used silently."""
    where = plan.out_dir / "results.json"
    got = results.get("teacher", {}).get("fingerprint")
    if got != plan.teacher.fingerprint:
        raise ConfigError(f"{where}: its teacher was trained with another config, data or code (fingerprint "
                          f"{F.short(got or 'none')}, this config gives {F.short(plan.teacher.fingerprint)}); "
                          "run `crossadapt transfer` with this config first")
    for m in methods:
        recs = [r for r in results.get("offline_records", []) if r["method"] == m]
        stale = [r["seed"] for r in recs if r.get("fingerprint") != plan.student(m, r["seed"]).fingerprint]
        if not recs or stale:
            raise ConfigError(f"{where}: no {m} student of this config (stale seeds: {stale}); run `crossadapt "
                              f"transfer` with this config and {m} among the methods first")


def student_checkpoint(results: dict, method: str, seed_index: int = 0) -> str:
    """Checkpoint path of ``method``'s student for the ``seed_index``-th seed in ``results``."""
    ckpts = results.get("offline_checkpoints", {}).get(method, [])
    if seed_index >= len(ckpts):
        raise ConfigError(f"results.json has no offline {method} student (seed #{seed_index}); the online stage "
                          f"starts from it: run `crossadapt transfer` with {method} among the methods")
    return ckpts[seed_index]
