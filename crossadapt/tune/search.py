"""``crossadapt tune``: Ray Tune over a search space with ASHA, resumable, with a results table.

The driver prepares once what every trial shares, then runs the trials:

- offline spaces: the teacher (reused from ``<out_dir>/results.json`` when an offline run left one,
  else trained here) and its projection to the student's dimension;
- online spaces: the teacher and the offline CrossAdapt student of ``<out_dir>/results.json``.

Trials report after every epoch (offline) or period (online); ASHA stops the weak ones early.
Results land in ``<out_dir>/tune/<space>/``: Tune's own experiment folder (so an interrupted
search resumes where it stopped) and ``results.csv`` / ``results.md``, one row per trial with every
searched key and its best metric, best trial first.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from crossadapt import atomic
from crossadapt.config import ExperimentConfig, to_dict
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.models import load_checkpoint
from crossadapt.tune.space import ParamSpec, SearchSpace
from crossadapt.tune.trials import TRIALS


def _distribution(p: ParamSpec) -> Any:
    if p.type == "choice":
        return tune.choice(list(p.values))
    if p.type == "uniform":
        return tune.uniform(p.low, p.high)
    if p.type == "loguniform":
        return tune.loguniform(p.low, p.high)
    return tune.randint(int(p.low), int(p.high))


def _prerequisites(cfg: ExperimentConfig, fm: FeatureMap, space: SearchSpace) -> dict[str, str]:
    """Paths every trial shares (see the module docstring)."""
    from crossadapt.experiment.compare import RESULTS_FILE
    from crossadapt.experiment.offline import project_teacher, student_checkpoint, train_teacher

    out = Path(cfg.out_dir)
    results_path = out / RESULTS_FILE
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if space.stage == "online":
        if "offline_checkpoints" not in results:
            raise ConfigError(f"{results_path}: an online search starts from an offline run's teacher and student; "
                              "run `crossadapt transfer` with this config first")
        ckpts = {"teacher": results["teacher"]["checkpoint"], "student": student_checkpoint(results, "crossadapt")}
        for key, path in ckpts.items():
            load_checkpoint(path, expected_feature_map=fm, expected_model=(key, getattr(cfg, key)))
        return ckpts
    teacher = results.get("teacher", {}).get("checkpoint")
    if not teacher or not Path(teacher).is_file():
        print("[crossadapt] tune: training the teacher the trials share", flush=True)
        teacher = train_teacher(cfg, fm, out / "tune").best_checkpoint
    else:
        load_checkpoint(teacher, expected_feature_map=fm, expected_model=("teacher", cfg.teacher))
    init, _, _ = project_teacher(cfg, teacher, fm, out / "tune")
    return {"teacher": teacher, "init": init}


def _max_concurrent(space: SearchSpace) -> int:
    """The space's limit, or as many trials as the cluster's CPUs (and GPUs) hold at once."""
    if space.max_concurrent:
        return space.max_concurrent
    res = ray.cluster_resources()
    fits = [res.get("CPU", 1.0) / space.trial_cpus]
    if space.trial_gpus > 0:
        fits.append(res.get("GPU", 0.0) / space.trial_gpus)
    return max(1, math.floor(min(fits)))


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def run_tune(cfg: ExperimentConfig, fm: FeatureMap, space: SearchSpace) -> list[dict[str, Any]]:
    """Run (or resume) the search; returns the results table rows, best first. Ray must be initialised."""
    shared = _prerequisites(cfg, fm, space)
    max_t = (cfg.distill.phase1_epochs + cfg.distill.phase2_epochs if space.stage == "offline"
             else cfg.data.stream_periods[1] - cfg.data.stream_periods[0])
    scheduler = ASHAScheduler(metric=space.metric, mode="max", max_t=space.asha.get("max_t", max_t),
                              grace_period=space.asha.get("grace_period", 1),
                              reduction_factor=space.asha.get("reduction_factor", 2))
    trainable = tune.with_resources(TRIALS[space.stage], {"cpu": space.trial_cpus, "gpu": space.trial_gpus})
    storage = Path(cfg.out_dir).resolve() / "tune"
    path = storage / space.name
    param_space = {"params": {p.key: _distribution(p) for p in space.params}, "base": to_dict(cfg), **shared}
    if tune.Tuner.can_restore(str(path)):
        print(f"[crossadapt] tune: resuming {path}", flush=True)
        tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True, param_space=param_space)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(num_samples=space.num_samples, scheduler=scheduler,
                                        max_concurrent_trials=_max_concurrent(space),
                                        # short names: Tune's default spells out every sampled value
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=space.name, storage_path=str(storage), verbose=1),
        )
    grid = tuner.fit()
    rows = results_rows(grid, space)
    atomic.write_text(path / "results.csv", _csv(rows))
    atomic.write_text(path / "results.md", _markdown(rows, space))
    return rows


def results_rows(grid: Any, space: SearchSpace) -> list[dict[str, Any]]:
    """One row per trial: id, status, every searched key, its best metric and reports; best first."""
    rows = []
    for result in grid:
        history = result.metrics_dataframe
        best = float(history[space.metric].max()) if history is not None and space.metric in history else float("nan")
        params = (result.config or {}).get("params", {})
        rows.append({"trial": Path(result.path).name, "status": "error" if result.error else "ok",
                     **{k: params.get(k) for k in space.keys},
                     space.metric: best, "reports": 0 if history is None else len(history)})
    return sorted(rows, key=lambda r: -r[space.metric] if not math.isnan(r[space.metric]) else math.inf)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def _markdown(rows: list[dict[str, Any]], space: SearchSpace) -> str:
    if not rows:
        return "no trials\n"
    cols = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"# Tune: {space.name} ({space.stage}, metric {space.metric}, best first)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
