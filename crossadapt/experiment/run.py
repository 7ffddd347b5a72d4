"""One experiment end to end: data, offline stage, online stage, results.json and report.md."""

from __future__ import annotations

from pathlib import Path

from crossadapt import atomic
from crossadapt.config import ExperimentConfig, to_dict
from crossadapt.experiment.prepare import prepare_data
from crossadapt.experiment.report import write_report
from crossadapt.ray_init import init_ray

RESULTS_FILE = "results.json"


def run_experiment(cfg: ExperimentConfig, stages: tuple[str, ...] = ("offline", "online")) -> dict:
    """Run the stages and write ``<out_dir>/results.json`` and ``report.md`` (atomically, after each stage)."""
    from crossadapt.experiment.offline import run_offline

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "config.json", to_dict(cfg))
    init_ray()
    fm = prepare_data(cfg)
    results: dict = {"config": to_dict(cfg)}
    if "offline" in stages:
        results.update(run_offline(cfg, fm, out))
        atomic.write_json(out / RESULTS_FILE, results)
    if "online" in stages:
        from crossadapt.online.coordinator import run_online

        student = _crossadapt_student(results)
        results["online"] = run_online(cfg, fm, out, teacher_ckpt=results["teacher"]["checkpoint"],
                                       student_ckpt=student)
        atomic.write_json(out / RESULTS_FILE, results)
    write_report(results, out)
    print(f"[crossadapt] wrote {out / RESULTS_FILE} and {out / 'report.md'}", flush=True)
    return results


def _crossadapt_student(results: dict) -> str:
    """The offline CrossAdapt student of the first seed: where the online stage starts."""
    from crossadapt.experiment.offline import student_checkpoint

    return student_checkpoint(results, "crossadapt")
