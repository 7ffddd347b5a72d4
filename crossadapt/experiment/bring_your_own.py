"""Checks of what a team brings (its own student class, its deployed teacher), before Ray starts.

See ``crossadapt.models.registry`` (user classes) and ``crossadapt.models.teacher_import`` (a
deployed teacher); this module only runs their checks for a config and names the imported teacher
in the config, so that every message and result says what the teacher is.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from crossadapt.config import ExperimentConfig, ModelConfig
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.models.registry import check_model, is_user_model
from crossadapt.models.teacher_import import check_teacher_files, import_teacher, read_manifest

#: ``teacher.name`` of an imported teacher (no zoo model: nothing builds or trains it).
IMPORTED = "imported"


def check_bring_your_own(cfg: ExperimentConfig, fm: FeatureMap) -> ExperimentConfig:
    """``cfg`` with an imported teacher named in ``teacher`` (``name: imported``, ``embed_dim`` its
    widest table), after checking a user student or teacher class and the imported teacher against
    ``fm`` (``ConfigError``, ``DataError`` or ``CheckpointError`` naming the key, field or file)."""
    if is_user_model(cfg.student.name):
        check_model(cfg.student, fm, "student")
    if cfg.teacher_import.program:
        files = check_teacher_files(cfg.teacher_import)
        manifest = read_manifest(import_teacher(cfg.teacher_import, fm, cfg.out_dir, files))
        return replace(cfg, teacher=ModelConfig(name=IMPORTED, embed_dim=int(manifest["embed_dim"])))
    if is_user_model(cfg.teacher.name):
        check_model(cfg.teacher, fm, "teacher")
    return cfg


def checkpoint_to_export(cfg: ExperimentConfig, method: str = "crossadapt", seed: int | None = None) -> str:
    """The student ``crossadapt export`` takes by default from ``<out_dir>/results.json``: ``method``'s
    student after the online stream when it ran (``online.<method>``), else its offline student; of
    ``seed`` (default: the first seed run). ``ConfigError`` naming the file when there is none."""
    from crossadapt.experiment.compare import RESULTS_FILE
    from crossadapt.experiment.run import read_results

    path = Path(cfg.out_dir) / RESULTS_FILE
    results = read_results(cfg.out_dir)
    runs = results.get("online", {}).get(method, {}).get("runs", []) if isinstance(results.get("online"), dict) else []
    online = {r["seed"]: r["final_checkpoint"] for r in runs if r.get("final_checkpoint")}
    offline = dict(zip(results.get("offline", {}).get(method, {}).get("seed", []),
                       results.get("offline_checkpoints", {}).get(method, [])))
    for found in (online, offline):
        if found:
            s = next(iter(found)) if seed is None else seed
            if s not in found:
                raise ConfigError(f"{path}: no {method} student of seed {s} (seeds: {sorted(found)})")
            return found[s]
    raise ConfigError(f"{path}: no {method} student to export; run `crossadapt transfer` (and `crossadapt online`) "
                      "first, or pass --checkpoint")
