"""``crossadapt tune``: Ray Tune over a search space with ASHA, resumable, with a results table.

The driver prepares once what every trial shares, then runs the trials:

- offline spaces: the teacher and its projection to the student's dimension, from the folders an
  offline run of this config left in ``<out_dir>`` (same fingerprints, see
  ``crossadapt.experiment.offline``), else trained there;
- online spaces: the teacher and the CrossAdapt student (first seed) an offline run of this config
  left in ``<out_dir>``; an error when there are none, never those of another config.

Trials report after every epoch (offline) or period (online); ASHA stops the weak ones early.
Results land in ``<out_dir>/tune/<space>-<fingerprint>/``: Tune's own experiment folder and
``results.csv`` / ``results.md``, one row per trial with every searched key and its best metric,
best trial first. The fingerprint covers the base config (minus where results go and resources),
the space, the data, the code and the shared checkpoints: an interrupted search with the same
fingerprint resumes where it stopped; a changed base config or space starts a fresh search in its
own folder, and the earlier one stays as it was (its trials answer another question, so they are
neither resumed nor mixed in; nothing is lost, so there is nothing to refuse). ``fresh`` starts
over regardless.
"""

from __future__ import annotations

import csv
import io
import math
import re
import shutil
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from crossadapt import atomic, log
from crossadapt import fingerprint as F
from crossadapt.config import ExperimentConfig, to_dict
from crossadapt.data import arrays as A
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.train.ray_train import read_outcome
from crossadapt.tune.space import ParamSpec, SearchSpace
from crossadapt.tune.track import TrialTracking, trial_name
from crossadapt.tune.trials import TRIALS

_say = log.sayer(__name__)


def _distribution(p: ParamSpec) -> Any:
    if p.type == "choice":
        return tune.choice(list(p.values))
    if p.type == "uniform":
        return tune.uniform(p.low, p.high)
    if p.type == "loguniform":
        return tune.loguniform(p.low, p.high)
    return tune.randint(int(p.low), int(p.high))


def _prerequisites(cfg: ExperimentConfig, fm: FeatureMap, space: SearchSpace,
                   fresh: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """Paths every trial shares and their fingerprints (see the module docstring)."""
    from crossadapt.experiment.offline import plan_offline, project_teacher, train_teacher

    out = Path(cfg.out_dir)
    plan = plan_offline(cfg, fm, out)
    if space.stage == "online":
        student = plan.student("crossadapt", cfg.seeds[0])
        missing = [f"{what} (fingerprint {F.short(job.fingerprint)})"
                   for what, job in (("teacher", plan.teacher), (f"crossadapt seed {cfg.seeds[0]} student", student))
                   if read_outcome(job.run_dir, job.fingerprint) is None]
        if missing:
            raise ConfigError(f"{out}: no finished offline {' or '.join(missing)} of this config; an online search "
                              "starts from them: run `crossadapt transfer` with this config first")
        return ({"teacher": plan.teacher_checkpoint, "student": str(Path(student.run_dir) / "best.pt")},
                {"teacher": plan.teacher.fingerprint, "student": student.fingerprint})
    teacher = train_teacher(cfg, fm, out, fresh=fresh, job=plan.teacher)  # reused when finished earlier
    init, _, _ = project_teacher(cfg, teacher.best_checkpoint, fm, plan.projection_dir, plan.projection, fresh)
    return {"teacher": teacher.best_checkpoint, "init": init}, {"teacher": plan.teacher.fingerprint,
                                                                "projection": plan.projection}


def search_fingerprint(cfg: ExperimentConfig, fm: FeatureMap, space: SearchSpace, upstream: dict[str, str]) -> str:
    """What a search's trials depend on: base config, space, the data they read, code, shared checkpoints."""
    d = cfg.data
    wanted = {*A.period_range(d.window_periods), *A.period_range(d.stream_periods), d.stream_periods[0] - 1}
    periods = sorted(wanted & set(A.list_periods(d.root)))  # the period before the stream: the drift reference
    data = F.data_fingerprint(d.root, fm.to_dict(), periods)
    return F.search_fingerprint(cfg, to_dict(space), data, F.code_fingerprint(), upstream)


def _max_concurrent(space: SearchSpace) -> int:
    """The space's limit, or as many trials as the cluster's CPUs (and GPUs) hold at once."""
    if space.max_concurrent:
        return space.max_concurrent
    res = ray.cluster_resources()
    fits = [res.get("CPU", 1.0) / space.trial_cpus]
    if space.trial_gpus > 0:
        fits.append(res.get("GPU", 0.0) / space.trial_gpus)
    return max(1, math.floor(min(fits)))


def run_tune(cfg: ExperimentConfig, fm: FeatureMap, space: SearchSpace, fresh: bool = False) -> list[dict[str, Any]]:
    """Run (or resume) the search; returns the results table rows, best first. Ray must be initialised.

    ``fresh``: the search (and the teacher and projection it shares) start over.
    """
    shared, upstream = _prerequisites(cfg, fm, space, fresh)
    max_t = (cfg.distill.phase1_epochs + cfg.distill.phase2_epochs if space.stage == "offline"
             else cfg.data.stream_periods[1] - cfg.data.stream_periods[0])
    scheduler = ASHAScheduler(metric=space.metric, mode="max", max_t=space.asha.get("max_t", max_t),
                              grace_period=space.asha.get("grace_period", 1),
                              reduction_factor=space.asha.get("reduction_factor", 2))
    trainable = tune.with_resources(TRIALS[space.stage], {"cpu": space.trial_cpus, "gpu": space.trial_gpus})
    storage = Path(cfg.out_dir).resolve() / "tune"
    fp = search_fingerprint(cfg, fm, space, upstream)
    path = storage / f"{space.name}-{F.short(fp)}"
    if fresh:
        shutil.rmtree(path, ignore_errors=True)
    param_space = {"params": {p.key: _distribution(p) for p in space.params}, "base": to_dict(cfg), **shared}
    others = sorted(str(p) for p in storage.glob(f"{space.name}-*") if p != path and p.is_dir()
                    and re.fullmatch(rf"{re.escape(space.name)}-[0-9a-f]{{{F.SHORT}}}", p.name))
    if tune.Tuner.can_restore(str(path)):
        _say(f"tune: resuming {path} (same base config, space, data and code)")
        tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True, param_space=param_space)
    else:
        if others:
            _say(f"tune: the base config, space, data or code differ from the earlier search(es) "
                 f"{others} (kept as they are): starting a fresh search in {path}")
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(num_samples=space.num_samples, scheduler=scheduler,
                                        max_concurrent_trials=_max_concurrent(space),
                                        trial_name_creator=trial_name, trial_dirname_creator=trial_name),
            run_config=tune.RunConfig(name=path.name, storage_path=str(storage), verbose=1,
                                      # W&B from the driver, as Tune receives each report (saved with the search)
                                      callbacks=[TrialTracking(cfg.tracking, cfg.out_dir, space.stage,
                                                               space.metric)]),
        )
    grid = tuner.fit()
    rows = results_rows(grid, space)
    atomic.write_text(path / "results.csv", _csv(rows))
    atomic.write_text(path / "results.md", _markdown(rows, space, fp))
    _say(f"tune table: {path / 'results.md'}")
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


def _markdown(rows: list[dict[str, Any]], space: SearchSpace, fingerprint: str = "") -> str:
    if not rows:
        return "no trials\n"
    cols = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"# Tune: {space.name} ({space.stage}, metric {space.metric}, best first)", "",
             f"Search fingerprint `{fingerprint}` (base config, space, data, code, shared checkpoints).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
