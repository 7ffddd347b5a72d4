"""Model quality check: models of the zoo trained on the history, scored on the test period(s).

Every (model, seed) is trained like the teacher (``data.teacher_periods``, early stopping on the
time tail) in one Ray Train worker group, then evaluated on ``data.test_periods``. On synthetic
logs the generator's Bayes-optimal AUC of the test period(s) is reported beside them (exact: the
true click probability of every row is known), so "how close to the best possible" is a number.

Example::

    crossadapt zoo --config configs/demo.yaml --models lr dnn dcnv2 --seeds 0 1 2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crossadapt import atomic
from crossadapt.config import ExperimentConfig, ModelConfig, to_dict
from crossadapt.data import arrays as A
from crossadapt.experiment.offline import (
    bound_history_job,
    evaluate_checkpoint,
    history_data,
    history_datasets,
    summarize,
    test_arrays,
)
from crossadapt.featuremap import FeatureMap
from crossadapt.metrics import auc as exact_auc
from crossadapt.metrics import mean_std
from crossadapt.train.ray_train import fit_many

#: The models compared by default: first-order baseline, the teacher and the student of the design.
DEFAULT_MODELS: dict[str, ModelConfig] = {
    "lr": ModelConfig(name="lr", embed_dim=1),
    "dnn": ModelConfig(name="dnn", embed_dim=16),
    "dcnv2": ModelConfig(name="dcnv2", embed_dim=32),
}


def model_config(name: str) -> ModelConfig:
    """The zoo's config for ``name`` (any registry name; unknown ones fail when the model is built)."""
    return DEFAULT_MODELS.get(name, ModelConfig(name=name))


def bayes_auc(cfg: ExperimentConfig) -> float | None:
    """The Bayes-optimal AUC of the test period(s) of synthetic logs, or None for other data.

    Computed over the concatenated test rows from the generator's true probabilities (the
    per-period AUCs in ``meta.json`` cannot simply be averaged).
    """
    from crossadapt.data.synthetic import load_world, read_meta

    if read_meta(cfg.data.root) is None:
        return None
    world = load_world(cfg.data.root)
    ps, ys = [], []
    for k in A.period_range(cfg.data.test_periods):
        rows = world.sample_period(k)
        ps.append(rows["p"])
        ys.append(rows["label"])
    return float(exact_auc(np.concatenate(ys), np.concatenate(ps)))


def run_zoo(cfg: ExperimentConfig, fm: FeatureMap, models: list[str], seeds: list[int],
            fresh: bool = False) -> dict[str, Any]:
    """Train every model with every seed; returns (and writes ``<out>/zoo.json`` and ``zoo.md``) the results.

    Each (model, seed) trains in ``<out>/zoo/<model>-seed<s>/<fingerprint>``; one finished there
    with the same fingerprint is reused (``fresh``: all trained again).
    """
    out = Path(cfg.out_dir)
    data = history_data(cfg, fm)
    pairs = [(m, s) for s in seeds for m in models]
    jobs = [bound_history_job(cfg, fm, f"{m}-seed{s}", out / "zoo" / f"{m}-seed{s}", model_config(m), s, data)
            for m, s in pairs]
    outcomes = fit_many(jobs, lambda _: dict(zip(("train", "valid"), history_datasets(cfg, fm))), cfg.resources,
                        name="zoo", storage_dir=out, fresh=fresh)
    test = test_arrays(cfg, fm)
    records = [{"method": m, "seed": s, **evaluate_checkpoint(o.best_checkpoint, fm, test),
                "train_seconds": o.train_seconds} for (m, s), o in zip(pairs, outcomes)]
    per = summarize(records, ("seed", "auc", "logloss", "bias", "train_seconds"))
    result = {"models": per, "model_configs": {m: to_dict(model_config(m)) for m in models},
              "bayes_auc": bayes_auc(cfg), "test_rows": A.num_rows(test),
              "train_periods": list(cfg.data.teacher_periods), "test_periods": list(cfg.data.test_periods),
              "data_root": cfg.data.root,
              "fingerprints": {f"{m}-seed{s}": o.fingerprint for (m, s), o in zip(pairs, outcomes)}}
    atomic.write_json(out / "zoo.json", result)
    atomic.write_text(out / "zoo.md", zoo_table(result))
    return result


def zoo_table(result: dict[str, Any]) -> str:
    """A markdown table of mean ± std per model (and the gap to the Bayes AUC when known)."""
    bayes = result.get("bayes_auc")
    lines = ["| model | test AUC (mean ± std) | LogLoss | bias | " + ("gap to Bayes |" if bayes else "") ,
             "|---|---|---|---|" + ("---|" if bayes else "")]
    for m, b in result["models"].items():
        a, ll, bi = mean_std(b["auc"]), mean_std(b["logloss"]), mean_std(b["bias"])
        row = f"| {m} | {a[0]:.4f} ± {a[1]:.4f} | {ll[0]:.4f} ± {ll[1]:.4f} | {bi[0]:+.3f} ± {bi[1]:.3f} |"
        lines.append(row + (f" {bayes - a[0]:.4f} |" if bayes else ""))
    seeds = next(iter(result["models"].values()))["seed"]
    lines += ["", f"Seeds {seeds}; {result['test_rows']} test rows (periods {result['test_periods']}); "
              + (f"Bayes-optimal AUC {bayes:.4f}." if bayes else "no Bayes AUC (real data).")]
    return "\n".join(lines) + "\n"
