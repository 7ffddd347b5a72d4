"""Tune trials (Ray glue): one sampled config each, reporting to Tune as it goes so ASHA can stop it.

Trials run in their own Tune actor, in one process (the sampled student is small: that is the
point of ``r``), through the same training loop as Ray Train workers (``engine.run_phases``) and
the same online coordinator as ``crossadapt online``. Everything a trial needs arrives in its
config: ``params`` (the sampled dotted keys), ``base`` (the experiment config as a dict) and the
paths prepared once by the driver (teacher, projected embeddings, starting student). Trials report to
Tune only; their W&B runs are written by the driver (``crossadapt.tune.track``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import ray.tune
import torch

from crossadapt.config import ExperimentConfig, from_dict
from crossadapt.data import arrays as A
from crossadapt.data.sampling import PositiveRatePlan, label_mask
from crossadapt.featuremap import FeatureMap
from crossadapt.train import engine
from crossadapt.tune.space import apply_params


def _trial_setup(config: dict[str, Any]) -> tuple[ExperimentConfig, FeatureMap, Path]:
    """The trial's config (base + sampled params), feature map and folder."""
    ctx = ray.tune.get_context()
    trial_dir = Path(ctx.get_trial_dir())
    base = from_dict(ExperimentConfig, config["base"])
    cfg = apply_params(base, config["params"])
    return cfg, FeatureMap.load(cfg.data.root), trial_dir


def offline_trial(config: dict[str, Any]) -> None:
    """Train one CrossAdapt student (projected init, phases, KD, a seeded sample of ratio ``r`` of the
    retained window, one per phase with ``distill.fresh_sample_per_phase``) and report the
    validation AUC of every epoch as ``valid_auc``. The sample is uniform of exactly ``round(r n)``
    rows, or with ``distill.sample_mode: positive_rate`` that mode's sample and log-odds shift
    (``stratified`` is drawn uniform here: the trial holds the pool as one array)."""
    from crossadapt.experiment.offline import sample_plan, student_job

    cfg, fm, trial_dir = _trial_setup(config)
    seed = cfg.seeds[0]
    window = A.read_periods(cfg.data.root, A.period_range(cfg.data.window_periods), fm)
    pool, valid = A.split_tail(window, cfg.data.valid_fraction)
    positive = sample_plan(cfg, fm)
    job = student_job("crossadapt", seed, cfg, fm, config["teacher"], config["init"], trial_dir,
                      logit_shift=positive.logit_shift if positive else 0.0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train_t = {k: engine.to_tensors(s, device) for k, s in trial_samples(pool, job, seed, cfg.distill.r,
                                                                           positive).items()}
    valid_t = engine.to_tensors(valid, device)
    model = engine.build_job_model(job, fm, device)
    by_key = {k: engine.job_teacher_logits(job, fm, t) for k, t in train_t.items()}
    keys = engine.phase_keys(job)
    trains, logits = [train_t[k] for k in keys], [by_key[k] for k in keys]

    def on_epoch(record: dict, state: dict, *_: Any) -> None:
        ray.tune.report({"valid_auc": record["valid_auc"], "valid_logloss": record["valid_logloss"],
                         "loss": record["loss"], "train_seconds": state["seconds"], "samples": state["samples"]})

    engine.run_phases(model, job, trains, valid_t, logits, on_epoch=on_epoch)


def trial_samples(pool: A.Arrays, job: engine.TrainJob, seed: int, r: float,
                  positive: PositiveRatePlan | None) -> dict[str, A.Arrays]:
    """The samples an offline trial trains on, by dataset name: one (``sample_key(seed)``), or one
    per phase when ``job`` names a dataset per phase (``distill.fresh_sample_per_phase``), each
    drawn with that phase's ``sample_seed`` as the experiment's offline stage does."""
    from crossadapt.experiment.offline import sample_key, sample_seed

    phases = range(len(job.phases)) if job.phase_train_keys else [0]
    return {sample_key(seed, p): _sample(pool, r, sample_seed(seed, p), positive) for p in phases}


def _sample(pool: A.Arrays, r: float, seed: int, positive: PositiveRatePlan | None) -> A.Arrays:
    """A seeded sample of the pool: ``positive``'s keep probabilities per label, else ``round(r n)`` rows."""
    if positive is None:
        return A.take(pool, A.sample_index(A.num_rows(pool), r, seed))
    return A.take(pool, np.flatnonzero(label_mask(pool["label"], positive, np.random.default_rng(seed))))


def online_trial(config: dict[str, Any]) -> None:
    """Replay the stream with the ``crossadapt`` online method (first seed only: trials compare
    settings, the experiment's online stage runs every seed) and report, after every period, the
    mean prequential AUC so far as ``online_auc`` (and that period's figures)."""
    from crossadapt.online.coordinator import OnlineStream, stream_inputs

    cfg, fm, trial_dir = _trial_setup(config)
    history, trace = stream_inputs(cfg, fm)  # the trial's own: online.* may be among the sampled keys
    stream = OnlineStream("crossadapt", cfg, fm, trial_dir, config["teacher"], config["student"], history,
                          trace, cfg.seeds[0])
    aucs: list[float] = []

    def on_window(w: dict[str, Any]) -> None:
        if w["auc"] is not None:  # a one-class window has no AUC
            aucs.append(w["auc"])
        ray.tune.report({"online_auc": float(np.mean(aucs)) if aucs else 0.5, "auc": w["auc"], "bias": w["bias"],
                         "drift_score": w["drift_score"], "drift_score_max": w["drift_score_max"],
                         "r_enh": w["r_enh"], "steps": w["steps"], "period": w["period"]})

    stream.run(on_window=on_window)


TRIALS = {"offline": offline_trial, "online": online_trial}
