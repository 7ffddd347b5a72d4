"""Scale: rows/s and peak memory of the offline stage as the Criteo-shaped world grows.

For each size the Criteo-shaped world (``configs/criteo_like.yaml``: 26 fields of Criteo's
cardinalities at min count 10, ~1.09 M ids, 13 numeric fields) is generated with that many rows in
6 periods (2 history, 2 retained window, 1 test, 1 stream), then the offline stages run one after another on
Ray: the teacher on the history, the projection of its tables, the ``crossadapt`` student on a
sample of ratio ``r`` of the window and the ``kd`` student on the whole window. The cache budget
(``resources.cache_bytes``, 0 by default) is below every shard, so the streamed path is the one
measured. Per size and stage: rows processed (training rows over all epochs; the table's rows for
the projection), wall seconds (Ray Train start-up included), rows/s, the peak RSS of the driver
(sampled while the stage runs) and of the largest Ray Train worker (sampled in the worker; not
measured for the projection actors). ``checks`` holds the issue's criteria: rows/s at the largest
size over the smallest (>= 0.8) and peak RSS at the largest over the smallest (<= 1.5).

Usage::

    python benchmarks/scale.py --quick                 # 100 k, 300 k, 800 k rows (a 2-core CPU machine)
    python benchmarks/scale.py                         # 1.25 M .. 20 M rows (a GPU box)
    python benchmarks/scale.py --rows 20000,160000     # any sizes
    python benchmarks/summary.py                       # the README table (with the other benchmarks')
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS_DIR, machine_facts, resolve_device, write_results  # noqa: E402
from crossadapt.config import load_config  # noqa: E402
from crossadapt.data import arrays as A  # noqa: E402
from crossadapt.data.synthetic import generate  # noqa: E402
from crossadapt.experiment import offline  # noqa: E402
from crossadapt.featuremap import FeatureMap  # noqa: E402
from crossadapt.memory import PeakRss  # noqa: E402
from crossadapt.train.ray_train import OUTCOME_FILE, fit_many  # noqa: E402

QUICK_ROWS = (100_000, 300_000, 800_000)
FULL_ROWS = (1_250_000, 2_500_000, 5_000_000, 10_000_000, 20_000_000)
PERIODS = 6  # 2 history, 2 retained window, 1 test, 1 stream (not used here; the config needs one)
STAGES = ("teacher", "projection", "crossadapt", "kd")


def world_config(rows: int, work: Path, args: argparse.Namespace):
    """``configs/criteo_like.yaml`` at ``rows`` rows in ``PERIODS`` periods, one epoch per phase, one seed."""
    per = rows // PERIODS
    cfg = load_config(ROOT / "configs" / "criteo_like.yaml", {
        "out_dir": str(work / "out"), "data.root": str(work / "data"), "seeds": [0], "methods": ["crossadapt", "kd"],
        "data.teacher_periods": [0, 2], "data.window_periods": [2, 4], "data.test_periods": [4, 5],
        "data.stream_periods": [5, 6],
        "synthetic.rows_per_period": per, "synthetic.num_periods": PERIODS, "synthetic.drift_periods": [],
        "optim.epochs": 1, "optim.batch_size": args.batch, "distill.batch_size": args.batch,
        "distill.phase1_epochs": 1, "distill.phase2_epochs": 1,
        "resources.num_workers": args.workers, "resources.cpus_per_worker": args.cpus_per_worker,
        "resources.cache_bytes": args.cache_bytes, "resources.checkpoint_interval_s": 3600.0,
        "resources.use_gpu": "auto" if args.device != "cpu" else "false",
    })
    return cfg


def _outcome(run_dir: str) -> dict[str, Any]:
    return json.loads((Path(run_dir) / OUTCOME_FILE).read_text())


def _stage(rows: int, seconds: float, driver: int, worker: int | None, **extra: Any) -> dict[str, Any]:
    peaks = [p for p in (driver, worker) if p]
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / max(seconds, 1e-9),
            "peak_rss_bytes": max(peaks), "driver_peak_rss_bytes": driver, "worker_peak_rss_bytes": worker, **extra}


def run_size(rows: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Generate the world at ``rows`` rows and time its offline stages."""
    cfg = world_config(rows, work, args)
    t0 = time.perf_counter()
    with PeakRss() as gen_rss:
        generate(cfg.synthetic, cfg.data.root)
    out: dict[str, Any] = {"rows": rows, "generate": {"seconds": time.perf_counter() - t0,
                                                      "driver_peak_rss_bytes": gen_rss.peak}, "stages": {}}
    fm = FeatureMap.load(cfg.data.root)
    plan = offline.plan_offline(cfg, fm, cfg.out_dir)
    stages = out["stages"]

    t0 = time.perf_counter()
    with PeakRss() as rss:
        teacher = offline.train_teacher(cfg, fm, Path(cfg.out_dir), fresh=True, job=plan.teacher)
    o = _outcome(plan.teacher.run_dir)
    stages["teacher"] = _stage(teacher.samples_seen, time.perf_counter() - t0, rss.peak, o.get("peak_rss_bytes"),
                               train_seconds=teacher.train_seconds, data=o.get("data"))
    print(f"  teacher: {stages['teacher']['rows_per_s']:.0f} rows/s", flush=True)

    t0 = time.perf_counter()
    with PeakRss() as rss:
        _, _, _ = offline.project_teacher(cfg, teacher.best_checkpoint, fm, plan.projection_dir, plan.projection,
                                          fresh=True)
    stages["projection"] = _stage(sum(fm.vocab_sizes), time.perf_counter() - t0, rss.peak, None)
    print(f"  projection: {stages['projection']['rows_per_s']:.0f} rows/s", flush=True)

    for method in ("crossadapt", "kd"):
        job = plan.student(method, 0)
        t0 = time.perf_counter()
        with PeakRss() as rss:
            res = fit_many([job], lambda pending: offline.student_datasets(cfg, fm, pending), cfg.resources,
                           name=method, storage_dir=cfg.out_dir, fresh=True)[0]
        o = _outcome(job.run_dir)
        stages[method] = _stage(res.samples_seen, time.perf_counter() - t0, rss.peak, o.get("peak_rss_bytes"),
                                train_seconds=res.train_seconds, data=o.get("data"))
        print(f"  {method}: {stages[method]['rows_per_s']:.0f} rows/s", flush=True)
    return out


def checks(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's criteria, largest size against the smallest, per stage."""
    if len(sizes) < 2:
        return {}
    lo, hi = sizes[0], sizes[-1]
    out: dict[str, Any] = {"rows_ratio": hi["rows"] / lo["rows"]}
    for s in STAGES:
        a, b = lo["stages"].get(s), hi["stages"].get(s)
        if not (a and b):
            continue
        out[s] = {"rows_per_s_ratio": b["rows_per_s"] / a["rows_per_s"],
                  "driver_rss_ratio": b["driver_peak_rss_bytes"] / a["driver_peak_rss_bytes"],
                  "worker_rss_ratio": (b["worker_peak_rss_bytes"] / a["worker_peak_rss_bytes"]
                                       if a.get("worker_peak_rss_bytes") and b.get("worker_peak_rss_bytes") else None)}
    return out


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """rows/s and peak RSS against rows, per stage (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sizes = result["sizes"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    x = [s["rows"] for s in sizes]
    for st in STAGES:
        if all(st in s["stages"] for s in sizes):
            ax1.plot(x, [s["stages"][st]["rows_per_s"] for s in sizes], marker="o", label=st)
            ax2.plot(x, [s["stages"][st]["peak_rss_bytes"] / 2**20 for s in sizes], marker="o", label=st)
    for ax, what in ((ax1, "rows/s"), (ax2, "peak RSS (MiB), driver or largest worker")):
        ax.set_xscale("log")
        ax.set_xlabel("rows of the world")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    ax1.set_yscale("log")
    ax1.legend()
    fig.suptitle(f"CrossAdapt offline stage on the Criteo-shaped world ({result['device']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def main() -> None:
    p = argparse.ArgumentParser(prog="benchmarks/scale.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_ROWS} (a 2-core CPU machine, ~15 min)")
    p.add_argument("--rows", default="", help="comma-separated sizes (rows of the world), overrides --quick")
    p.add_argument("--out", default=str(RESULTS_DIR / "scale.json"))
    p.add_argument("--plot", default=str(RESULTS_DIR / "scale.png"))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--cache-bytes", type=int, default=0, help="resources.cache_bytes (0: every shard streams)")
    p.add_argument("--work", default="", help="folder for the worlds and runs (default: a temporary one, removed)")
    args = p.parse_args()
    sizes = [int(x) for x in args.rows.split(",") if x] or list(QUICK_ROWS if args.quick else FULL_ROWS)
    device = resolve_device(args.device)

    from crossadapt.ray_init import init_ray

    init_ray()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="crossadapt-scale-"))
    facts = machine_facts(device)
    result: dict[str, Any] = {"device": facts["cuda_device"] or "cpu", "machine": facts,
                              "config": {"quick": args.quick, "rows": sizes, "periods": PERIODS,
                                         "workers": args.workers, "cpus_per_worker": args.cpus_per_worker,
                                         "batch": args.batch, "cache_bytes": args.cache_bytes},
                              "sizes": []}
    t0 = time.perf_counter()
    try:
        for rows in sizes:
            print(f"scale: {rows} rows", flush=True)
            shutil.rmtree(work / str(rows), ignore_errors=True)
            result["sizes"].append(run_size(rows, work / str(rows), args))
            shutil.rmtree(work / str(rows), ignore_errors=True)  # a size's world is not needed after it
            result["checks"] = checks(result["sizes"])
            result["runtime_s"] = time.perf_counter() - t0
            write_results(args.out, result)  # after every size: a long run leaves what it measured
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    facts["loadavg_end"] = __import__("os").getloadavg()
    write_results(args.out, result)
    png = plot(result, Path(args.plot))
    print(f"wrote {args.out}" + (f" and {png}" if png else " (no matplotlib: no plot)"))


if __name__ == "__main__":
    main()
