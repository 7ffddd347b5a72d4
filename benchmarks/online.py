"""Online co-distillation throughput and the share of time spent exchanging weights, at tau = 1, 10, 100.

What runs (factory: small synthetic drifting logs, a teacher and a student trained briefly in-process):

- ``ray``: the real coordinator, ``crossadapt.online.coordinator.run_online`` with
  ``methods=("crossadapt",)`` and ``online.tau`` set to each value: a StudentActor and a
  TeacherActor, batches through the object store, the student's weights to the teacher every tau
  steps. Figures: stream rows / ``train_seconds`` (the issue's samples/s; training loops only, the
  per-period prequential evaluation is timed apart), ``exchange_seconds`` and ``exchange_share``
  (of the training time), and the median per-window rate after the first (warm-up) window.
- ``bare``: the same algorithm in this process without Ray: ``OnlineLearner`` (student) and
  ``PeriodicTeacher`` from ``crossadapt.online.learner``, the same drift trace and batches
  (``crossadapt.online.mixing.StreamBatcher``), evaluation and exchange every tau steps, the same
  number of student steps. Its student-only rate (time inside ``OnlineLearner.step``) is reported too.

Ratios: ray / bare samples/s per tau.

Usage::

    python benchmarks/online.py --quick
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common as bc  # benchmarks/common.py (puts the repo on sys.path)
import numpy as np
import torch

from crossadapt.config import DataConfig, ExperimentConfig, ModelConfig, OnlineConfig, ResourcesConfig, SyntheticConfig
from crossadapt.data import arrays as A
from crossadapt.data.synthetic import generate
from crossadapt.featuremap import FeatureMap
from crossadapt.models import build_model, load_checkpoint, save_checkpoint
from crossadapt.online.coordinator import drift_trace_of
from crossadapt.online.learner import OnlineLearner, PeriodicTeacher
from crossadapt.online.mixing import StreamBatcher
from crossadapt.train import engine
from crossadapt.train.engine import TrainJob

NAME = "online"


# ---------------------------------------------------------------- factory


@dataclass
class Sizes:
    """Logs, models and the stream layout."""

    syn: SyntheticConfig
    teacher: ModelConfig
    student: ModelConfig
    batch_size: int = 256
    taus: tuple[int, ...] = (1, 10, 100)
    pretrain_epochs: int = 3


def sizes_for(args) -> Sizes:
    if args.quick:
        syn = SyntheticConfig(num_fields=8, vocab_size=500, rows_per_period=12_800, num_periods=7, drift_periods=(5,),
                              seed=5)
        return Sizes(syn, ModelConfig(name="dnn", embed_dim=8, hidden_units=(64, 32)),
                     ModelConfig(name="dcnv2", embed_dim=8, hidden_units=(64,), num_cross_layers=2))
    syn = SyntheticConfig(num_fields=12, vocab_size=2000, rows_per_period=60_000, num_periods=8, drift_periods=(6,),
                          seed=5)
    return Sizes(syn, ModelConfig(name="dnn", embed_dim=16), ModelConfig(name="dcnv2", embed_dim=32))


class Factory:
    """Writes the logs, trains the two starting checkpoints, and builds the experiment config per tau.

    Periods: teacher and student learn on ``[0, 2)``, ``[2, 3)`` is the retained window (it seeds
    the reservoir), the stream is ``[3, num_periods)`` with a drift inside it.
    """

    def __init__(self, sizes: Sizes, workdir: Path, use_gpu: str) -> None:
        self.s, self.workdir, self.use_gpu = sizes, workdir, use_gpu
        self.root = workdir / "data"
        generate(sizes.syn, self.root)
        self.fm = FeatureMap.load(self.root)
        hist = engine.to_tensors(A.read_periods(self.root, range(0, 2), self.fm))
        self.teacher_ckpt = self._train(sizes.teacher, hist, workdir / "teacher.pt")
        self.student_ckpt = self._train(sizes.student, hist, workdir / "student.pt")

    def _train(self, cfg: ModelConfig, data: engine.Tensors, path: Path) -> str:
        torch.manual_seed(0)
        model = build_model(cfg, self.fm)
        opt = engine.make_optimizer(model, 3e-3)
        gen = torch.Generator().manual_seed(0)
        n = data["ids"].shape[0]
        for _ in range(self.s.pretrain_epochs):
            engine.train_steps(model, opt, data, engine.batches(n, 256, n // 256, gen, "cpu"), None,
                               TrainJob(name="pretrain", run_dir="", model=cfg))
        save_checkpoint(path, model, cfg, self.fm)
        return str(path)

    def config(self, tau: int, out_dir: Path) -> ExperimentConfig:
        n = self.s.syn.num_periods
        return ExperimentConfig(
            out_dir=str(out_dir), seeds=(0,),
            data=DataConfig(root=str(self.root), teacher_periods=(0, 2), window_periods=(2, 3), test_periods=(3, 4),
                            stream_periods=(3, n)),
            student=self.s.student, teacher=self.s.teacher,
            resources=ResourcesConfig(use_gpu=self.use_gpu),
            online=OnlineConfig(tau=tau, batch_size=self.s.batch_size, reservoir_size=2000, methods=("crossadapt",)),
        )


def window_rates(windows: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Median rows/s of training over the windows after the first (warm-up) one, and trained samples
    (every step trains on exactly ``batch`` rows, reservoir rows included)."""
    rates = [w["rows"] / w["train_seconds"] for w in windows]
    timed = rates[1:] if len(rates) > 1 else rates
    return {"window_rows_per_s": bc.stats(timed), "trained_samples": batch * sum(w["steps"] for w in windows)}


def run_ray(f: Factory, tau: int) -> dict[str, Any]:
    """The coordinator, fresh output folder (a rerun in the same folder would resume, not train)."""
    from crossadapt.online.coordinator import run_online

    out_dir = Path(tempfile.mkdtemp(prefix=f"ray-tau{tau}-", dir=f.workdir))
    cfg = f.config(tau, out_dir)
    t0 = time.perf_counter()
    res = run_online(cfg, f.fm, out_dir, f.teacher_ckpt, {cfg.seeds[0]: f.student_ckpt},
                     methods=("crossadapt",))["crossadapt"]["runs"][0]
    wall = time.perf_counter() - t0
    rows = sum(w["rows"] for w in res["windows"])
    out = {k: res[k] for k in ("train_seconds", "eval_seconds", "exchange_seconds", "exchange_share", "steps",
                               "teacher_updates", "wall_seconds", "restarts")}
    out.update(rows=rows, samples_per_s=rows / res["train_seconds"], run_online_wall_seconds=wall,
               windows=[{k: w[k] for k in ("period", "rows", "steps", "train_seconds", "r_enh", "auc", "drift_score")}
                        for w in res["windows"]])
    out.update(window_rates(res["windows"], cfg.online.batch_size))
    out["trained_samples_per_s"] = out["trained_samples"] / res["train_seconds"]
    shutil.rmtree(out_dir, ignore_errors=True)
    return out


def run_bare(f: Factory, tau: int, device: torch.device) -> dict[str, Any]:
    """The coordinator's per-period loop (``OnlineStream._period``) in this process, without Ray."""
    cfg = f.config(tau, f.workdir)
    o, seed = cfg.online, cfg.seeds[0]
    torch.manual_seed(seed)
    student = OnlineLearner(load_checkpoint(f.student_ckpt, expected_feature_map=f.fm).model, o.student_lr,
                            device=device, kd_kind=o.kd_kind, temperature=o.temperature)
    peer = build_model(f.s.student, f.fm) if o.teacher_alpha > 0 else None
    teacher = PeriodicTeacher(load_checkpoint(f.teacher_ckpt, expected_feature_map=f.fm).model, o.teacher_lr,
                              peer=peer, peer_alpha=o.teacher_alpha, device=device, kd_kind=o.kd_kind,
                              temperature=o.temperature)
    batcher = StreamBatcher(o, history=True, seed=seed, trace=drift_trace_of(cfg, f.fm))
    batcher.warm_up(A.read_periods(f.root, A.period_range(cfg.data.window_periods), f.fm))
    step, exchange, train, student_s = 0, 0.0, 0.0, 0.0
    windows = []
    for k in A.period_range(cfg.data.stream_periods):
        data = A.read_periods(f.root, [k], f.fm)
        student.evaluate(data)
        teacher.evaluate(data)
        t0 = time.perf_counter()
        first = step
        r_enh = []
        for batch, info in batcher.batches(data):
            z = teacher.serve(batch)
            ts = time.perf_counter()
            student.step(batch, z, o.alpha)
            student_s += time.perf_counter() - ts
            r_enh.append(info["r_enh"])
            step += 1
            if step % tau == 0:
                if teacher.peer is not None:
                    te = time.perf_counter()
                    teacher.load_peer(student.weights())
                    exchange += time.perf_counter() - te
                teacher.update()
        seconds = time.perf_counter() - t0
        train += seconds
        windows.append({"period": k, "rows": A.num_rows(data), "steps": step - first, "train_seconds": seconds,
                        "r_enh": float(np.mean(r_enh)) if r_enh else 0.0})
    rows = sum(w["rows"] for w in windows)
    out = {"train_seconds": train, "exchange_seconds": exchange, "exchange_share": exchange / train, "steps": step,
           "teacher_updates": teacher.version, "rows": rows, "samples_per_s": rows / train,
           "student_step_seconds": student_s, "windows": windows}
    out.update(window_rates(windows, o.batch_size))
    out["trained_samples_per_s"] = out["trained_samples"] / train
    out["student_only_samples_per_s"] = out["trained_samples"] / student_s
    return out


# ---------------------------------------------------------------- main


def main() -> None:
    p = bc.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--tau", type=int, nargs="+", default=None, help="teacher intervals (default 1 10 100)")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray")
    args = p.parse_args()
    started = time.perf_counter()
    device = bc.resolve_device(args.device)
    sizes = sizes_for(args)
    taus = tuple(args.tau or sizes.taus)
    repeats = args.repeats or 1
    facts = bc.machine_facts(device)
    # Each actor gets one CPU share and Ray sets its OMP threads to 1: the bare loop gets 1 thread too.
    bare_threads = 1 if device.type == "cpu" else None
    result: dict[str, Any] = {
        "benchmark": NAME, "machine": facts,
        "config": {"quick": args.quick, "device": str(device), "taus": list(taus), "repeats": repeats,
                   "ray_cpus": args.ray_cpus, "bare_threads": bare_threads, "synthetic": asdict(sizes.syn),
                   "teacher": asdict(sizes.teacher), "student": asdict(sizes.student), "batch_size": sizes.batch_size,
                   "method": "crossadapt"},
        "runs": {}, "ratios": {},
        "notes": ["samples_per_s = stream rows / train_seconds; train_seconds covers the training loops only (each "
                  "period's prequential evaluation of student and teacher is timed apart), the same in both paths",
                  "trained_samples = steps x batch_size: every step trains on exactly batch_size rows, the reservoir "
                  "rows that replace a share r_enh of each batch included"],
    }
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="crossadapt-bench-online-"))
    try:
        print(f"[{NAME}] synthetic logs and starting checkpoints ...", flush=True)
        t0 = time.perf_counter()
        factory = Factory(sizes, workdir, "true" if device.type == "cuda" else "false")
        result["config"]["setup_seconds"] = time.perf_counter() - t0
        with bc.ray_session(args.ray_cpus, 300 * bc.MiB):
            for tau in taus:
                runs: dict[str, list[dict[str, Any]]] = {"ray": [], "bare": []}
                for _ in range(repeats):
                    print(f"[{NAME}] tau {tau}: ray ...", flush=True)
                    runs["ray"].append(run_ray(factory, tau))
                    print(f"[{NAME}] tau {tau}: bare ...", flush=True)
                    with bc.torch_threads(bare_threads):
                        runs["bare"].append(run_bare(factory, tau, device))
                ray_, bare = (median_run(runs[k]) for k in ("ray", "bare"))
                result["runs"][str(tau)] = {"ray": ray_, "bare": bare, "repeats": runs if repeats > 1 else None}
                result["ratios"][str(tau)] = {
                    "ray_vs_bare_samples_per_s": bc.ratio(ray_["samples_per_s"], bare["samples_per_s"]),
                    "ray_vs_bare_window_median": bc.ratio(ray_["window_rows_per_s"]["median"],
                                                          bare["window_rows_per_s"]["median"]),
                    "ray_vs_bare_student_only": bc.ratio(ray_["trained_samples_per_s"], bare["student_only_samples_per_s"]),
                    "same_steps": ray_["steps"] == bare["steps"],
                    "same_teacher_updates": ray_["teacher_updates"] == bare["teacher_updates"],
                }
                for name, r in (("ray", ray_), ("bare", bare)):
                    rows.append([tau, name, r["steps"], r["samples_per_s"], r["window_rows_per_s"]["median"],
                                 r["exchange_seconds"], r["exchange_share"],
                                 bc.ratio(r["samples_per_s"], bare["samples_per_s"])])
                rows.append([tau, "bare student only", bare["steps"], bare["student_only_samples_per_s"], None, None,
                             None, None])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bc.finish(args.out, result, ["tau", "path", "steps", "rows/s", "window med", "exch s", "exch share", "vs bare"],
              rows, started)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the median samples/s (all its figures belong to one run)."""
    if len(runs) == 1:
        return runs[0]
    target = statistics.median_low([r["samples_per_s"] for r in runs])
    return next(r for r in runs if r["samples_per_s"] == target)


if __name__ == "__main__":
    main()
