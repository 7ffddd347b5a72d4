"""Progressive-distillation throughput: Ray Data + Ray Train against a bare PyTorch loop, same run.

What runs (same model, data, batch, phases and loss everywhere; data already as tensors on the device;
the frozen teacher's logits computed once before the first step):

- ``bare``: a hand-written loop: random-permutation batches, ``BCE + alpha * MSE(z_s, z_t)``, Adam.
- ``engine``: the library's loop without Ray (``crossadapt.train.engine.train_steps``), which is what
  the Ray Train worker runs; ``engine / bare`` isolates the cost of the loop itself.
- ``ray``: ``crossadapt.train.ray_train.fit`` of a ``TrainJob`` (1 worker) fed by a Ray Data dataset
  (``dataset_from_arrays``): per-epoch samples/s from the outcome history (epoch time excludes
  validation; there is none here) and the end-to-end wall time of ``fit`` (Ray Train start-up,
  shard materialisation, teacher logits, epochs, final checkpoint).
- extras: ``bare`` on all CPU cores (the Ray worker gets one CPU less than the machine: one stays
  free for Ray Data), bf16 autocast (GPU only) and a fused Adam (a library option worth having?).

Phases as in CrossAdapt: phase 1 trains with the (projected) embeddings frozen, phase 2 trains all.
The first epoch of each phase is a warm-up; the figure is the median of the other epochs.

Models default to the design anchors (39 fields, 1 M ids, teacher DNN(16, 400x3), student
DCNv2(32, 3 cross layers, 400x3), batch 4096 and 16384); ``--quick`` shrinks them for a 2-core CPU.

Usage::

    python benchmarks/train_throughput.py --quick            # CPU smoke run, about a minute
    python benchmarks/train_throughput.py --device cuda      # anchors on the GPU
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import common as bc  # benchmarks/common.py (puts the repo on sys.path)
import numpy as np
import torch
from torch import nn

from crossadapt.config import ModelConfig, ResourcesConfig
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.losses import distillation_loss
from crossadapt.models import build_model, save_checkpoint
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob

NAME = "train_throughput"
#: bare PyTorch on one H100, data on the GPU, Adam, 39 fields, 1 M ids (DESIGN.md section 8).
ANCHORS_H100 = {
    "dnn16_samples_per_s": {"4096": 2.1e6, "16384": 6.0e6},
    "dcnv2_samples_per_s": {"4096": 1.45e6, "16384": 3.7e6},
    "distill_dnn16_to_dcnv2_32_samples_per_s": {"4096": 1.2e6, "16384": 2.1e6},
    "ray_vs_bare_goal_at_16384_gpu": 0.8,
}


# ---------------------------------------------------------------- factory: model, data, loss


@dataclass
class Sizes:
    """What is trained: data shape, the two models, the phases and the loss weights."""

    fields: int = 39
    ids: int = 1_000_000
    rows: int = 2 * 1024 * 1024
    batches: tuple[int, ...] = (4096, 16384)
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig(name="dnn", embed_dim=16, hidden_units=(400, 400, 400)))
    student: ModelConfig = field(default_factory=lambda: ModelConfig(
        name="dcnv2", embed_dim=32, hidden_units=(400, 400, 400), num_cross_layers=3))
    phase_epochs: tuple[int, int] = (3, 3)
    lr: float = 1e-3
    alpha: float = 1.0
    kd_kind: str = "mse"
    seed: int = 0


def sizes_for(args, device: torch.device) -> Sizes:
    """Anchors by default; ``--quick`` a small model and data set; CPU full runs get fewer rows."""
    if args.quick:
        s = Sizes(fields=10, ids=100_000, rows=16_384, batches=(1024,),
                  teacher=ModelConfig(name="dnn", embed_dim=16, hidden_units=(256, 128)),
                  student=ModelConfig(name="dcnv2", embed_dim=32, hidden_units=(256, 128), num_cross_layers=3),
                  phase_epochs=(2, 2))
    else:
        s = Sizes() if device.type == "cuda" else Sizes(rows=131_072, batches=(4096,), phase_epochs=(2, 2))
    if args.rows:
        s = replace(s, rows=args.rows)
    if args.batch:
        s = replace(s, batches=tuple(args.batch))
    if args.epochs:
        s = replace(s, phase_epochs=(args.epochs, args.epochs))
    return s


class Factory:
    """Builds the feature map, the data, the two models and the loss, identically for every runner."""

    def __init__(self, sizes: Sizes) -> None:
        self.s = sizes
        per_field = sizes.ids // sizes.fields
        self.fm = FeatureMap("bench", tuple(FieldSpec(f"f{i}", vocab_size=per_field) for i in range(sizes.fields)))
        self._arrays: dict[str, np.ndarray] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays dict of ``rows`` rows: skewed ids (popular ids dominate, as in click logs), 20 % clicks."""
        if self._arrays is None:
            rng = np.random.default_rng(self.s.seed)
            v = self.fm.vocab_sizes[0]
            # rank = v * u^3: about half the rows hit the top 12 % of a field's ids
            ids = np.minimum((v * rng.random((self.s.rows, self.s.fields)) ** 3).astype(np.int64), v - 1)
            self._arrays = {"ids": ids, "dense": np.zeros((self.s.rows, 0), np.float32),
                            "label": (rng.random(self.s.rows) < 0.2).astype(np.float32)}
        return self._arrays

    def teacher(self) -> nn.Module:
        torch.manual_seed(self.s.seed + 1)
        return build_model(self.s.teacher, self.fm)

    def student(self) -> nn.Module:
        torch.manual_seed(self.s.seed)  # what the Ray worker does with job.seed
        return build_model(self.s.student, self.fm)

    def phases(self) -> tuple[Phase, Phase]:
        e1, e2 = self.s.phase_epochs
        return Phase(epochs=e1, lr=self.s.lr, freeze_embeddings=True), Phase(epochs=e2, lr=self.s.lr)

    def loss(self, z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return distillation_loss(z, y, t, self.s.alpha, self.s.kd_kind)

    def data_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())


# ---------------------------------------------------------------- runners


@dataclass
class Variant:
    """How a runner trains: autocast, optimizer flavour, intra-op threads (CPU)."""

    amp: str = "none"
    fused_adam: bool = False
    threads: int | None = None

    def label(self) -> str:
        parts = [] if self.amp == "none" else [self.amp]
        parts += ["fused-adam"] if self.fused_adam else []
        parts += [f"{self.threads}thr"] if self.threads else []
        return "+".join(parts) or "fp32"


class BareRunner:
    """The bare-PyTorch loop: setup (tensors on the device, teacher logits, student), then epochs of steps."""

    kind = "bare"

    def __init__(self, factory: Factory, batch: int, device: torch.device, variant: Variant) -> None:
        self.f, self.batch, self.device, self.v = factory, batch, device, variant

    def setup(self) -> None:
        a = self.f.arrays()
        self.ids = torch.from_numpy(a["ids"]).to(self.device)
        self.label = torch.from_numpy(a["label"]).to(self.device)
        self.n = self.ids.shape[0]
        teacher = self.f.teacher().to(self.device).eval()
        with torch.no_grad(), engine.autocast(self.device, self.v.amp):
            self.teacher_logits = torch.cat([teacher(self.ids[i : i + 65536]).float() for i in range(0, self.n, 65536)])
        del teacher
        self.model = self.f.student().to(self.device)
        self.steps = -(-self.n // self.batch)

    def optimizer(self, phase: Phase) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=phase.lr, fused=True) if self.v.fused_adam else torch.optim.Adam(params, lr=phase.lr)

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        with engine.autocast(self.device, self.v.amp):
            z = self.model(self.ids[idx])
        loss = self.f.loss(z.float(), self.label[idx], self.teacher_logits[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def epoch(self, gen: torch.Generator) -> None:
        perm = torch.randperm(self.n, generator=gen).to(self.device)
        total = torch.zeros((), device=self.device)
        for i in range(self.steps):
            idx = perm[i * self.batch : (i + 1) * self.batch]
            total += self.step(idx).detach() * idx.numel()
        self.last_loss = float(total) / self.n  # mean loss of the epoch; one sync per epoch, not per step

    def warm(self, epochs: int) -> None:
        """Untimed set-up and ``epochs`` joint epochs, then release everything."""
        with bc.torch_threads(self.v.threads):
            self.setup()
            gen = torch.Generator().manual_seed(12345)
            phase = self.f.phases()[1]
            engine.apply_phase(self.model, phase)
            self.opt = self.optimizer(phase)
            for _ in range(epochs):
                self.epoch(gen)
        self.release()

    def run(self) -> dict[str, Any]:
        with bc.torch_threads(self.v.threads):
            t0 = time.perf_counter()
            self.setup()
            bc.sync(self.device)
            setup_s = time.perf_counter() - t0
            history, gen = [], torch.Generator()
            for p, phase in enumerate(self.f.phases()):
                engine.apply_phase(self.model, phase)
                self.opt = self.optimizer(phase)
                for e in range(phase.epochs):
                    gen.manual_seed(self.f.s.seed * 1_000_003 + p * 1000 + e)
                    bc.sync(self.device)
                    te = time.perf_counter()
                    self.epoch(gen)
                    bc.sync(self.device)
                    sec = time.perf_counter() - te
                    history.append({"phase": p, "epoch": e, "seconds": sec, "samples": self.n,
                                    "samples_per_s": self.n / sec, "loss": self.last_loss})
            wall = time.perf_counter() - t0
        out = summarise(history, wall)
        out["setup_seconds"] = setup_s
        self.release()
        return out

    def release(self) -> None:
        for k in ("ids", "label", "teacher_logits", "model", "opt"):
            self.__dict__.pop(k, None)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class EngineRunner(BareRunner):
    """The library loop without Ray: ``engine.make_optimizer`` + ``engine.train_steps`` over ``engine.batches``."""

    kind = "engine"

    def optimizer(self, phase: Phase) -> torch.optim.Optimizer:
        return engine.make_optimizer(self.model, phase.lr)

    def epoch(self, gen: torch.Generator) -> None:
        job = TrainJob(name="bench", run_dir="", model=self.f.s.student, alpha=self.f.s.alpha,
                       kd_kind=self.f.s.kd_kind, amp=self.v.amp)
        data = {"ids": self.ids, "dense": self.ids.new_zeros((self.n, 0), dtype=torch.float32), "label": self.label}
        self.last_loss, _ = engine.train_steps(self.model, self.opt, data,
                                               engine.batches(self.n, self.batch, self.steps, gen, self.device),
                                               self.teacher_logits, job)


class RayRunner:
    """``fit()`` of a TrainJob on 1 Ray Train worker, fed by a Ray Data dataset of the same arrays."""

    kind = "ray"

    def __init__(self, factory: Factory, batch: int, device: torch.device, variant: Variant, workdir: Path,
                 cpus: float = 1.0) -> None:
        self.f, self.batch, self.device, self.v, self.workdir, self.cpus = factory, batch, device, variant, workdir, cpus

    def teacher_checkpoint(self) -> str:
        path = self.workdir / "teacher.pt"
        if not path.exists():
            save_checkpoint(path, self.f.teacher(), self.f.s.teacher, self.f.fm)
        return str(path)

    def run(self) -> dict[str, Any]:
        from crossadapt.data.ray_data import dataset_from_arrays
        from crossadapt.train.ray_train import fit

        s = self.f.s
        teacher = self.teacher_checkpoint()
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self.workdir))
        job = TrainJob(name=f"bench-{self.batch}-{self.v.label()}", run_dir=str(run_dir), model=s.student,
                       feature_map=self.f.fm.to_dict(), phases=self.f.phases(), batch_size=self.batch,
                       patience=10**6, seed=s.seed, teacher_checkpoint=teacher, alpha=s.alpha, kd_kind=s.kd_kind,
                       amp=self.v.amp)
        resources = ResourcesConfig(num_workers=1, use_gpu="true" if self.device.type == "cuda" else "false",
                                    cpus_per_worker=self.cpus, amp=self.v.amp, max_failures=0)
        t0 = time.perf_counter()
        ds = dataset_from_arrays(self.f.arrays(), self.f.fm)
        outcome = fit(job, ds, None, resources)
        wall = time.perf_counter() - t0
        history = [{k: h[k] for k in ("phase", "epoch", "seconds", "samples", "samples_per_s", "loss")}
                   for h in outcome.history]
        out = summarise(history, wall)
        out["fit_wall_seconds"] = outcome.wall_seconds
        out["train_seconds"] = outcome.train_seconds  # teacher logits + epochs, as the worker measured it
        shutil.rmtree(run_dir, ignore_errors=True)
        return out


def summarise(history: list[dict], wall: float) -> dict[str, Any]:
    """Per-phase median samples/s over the epochs after each phase's first (warm-up) one; e2e speed."""
    out: dict[str, Any] = {"history": history, "wall_seconds": wall}
    samples = sum(h["samples"] for h in history)
    out["e2e_samples_per_s"] = samples / wall if wall > 0 else None
    for p, key in ((0, "frozen"), (1, "joint")):
        eps = [h for h in history if h["phase"] == p]
        timed = eps[1:] if len(eps) > 1 else eps
        out[f"{key}_samples_per_s"] = bc.stats([h["samples_per_s"] for h in timed])
    out["final_loss"] = history[-1]["loss"] if history else None
    return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the median joint-phase samples/s (all its figures come from that one run)."""
    if len(runs) == 1:
        return runs[0]
    ordered = sorted(runs, key=lambda r: med(r, "joint") or 0.0)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["repeats_joint_samples_per_s"] = [med(r, "joint") for r in runs]
    return chosen


def med(run: dict[str, Any] | None, key: str) -> float | None:
    return None if run is None else run[f"{key}_samples_per_s"]["median"]


# ---------------------------------------------------------------- main


def main() -> None:
    p = bc.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=None, help="training rows (default per size)")
    p.add_argument("--batch", type=int, action="append", default=None, help="batch size (repeatable)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per phase (the first is a warm-up)")
    p.add_argument("--no-extras", action="store_true", help="only bare, engine and ray fp32")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray (default 2 on CPU, up to 8 on GPU)")
    args = p.parse_args()
    started = time.perf_counter()
    device = bc.resolve_device(args.device)
    sizes = sizes_for(args, device)
    repeats = args.repeats or 1  # each repeat runs the whole plan again (Ray start-up included)
    factory = Factory(sizes)
    factory.arrays()
    facts = bc.machine_facts(device)
    notes: list[str] = []

    ray_cpus = args.ray_cpus or (min(os.cpu_count() or 2, 8) if device.type == "cuda" else 2)
    # The worker's CPU share: all but one CPU (kept free for Ray Data); Ray sets its OMP threads to it.
    worker_cpus = max(1, ray_cpus - 1)
    worker_threads = worker_cpus if device.type == "cpu" else None
    matched = Variant(threads=worker_threads)
    extras: list[tuple[type, Variant]] = []
    if not args.no_extras:
        # all cores: not in --quick (on a busy 2-core machine 2 threads ran 5x slower than 1)
        if device.type == "cpu" and not args.quick and (os.cpu_count() or 1) > (worker_threads or 1):
            extras.append((BareRunner, Variant(threads=os.cpu_count())))
        extras.append((BareRunner, replace(matched, fused_adam=True)))
        if device.type == "cuda":
            extras += [(BareRunner, Variant(amp="bf16")), (EngineRunner, Variant(amp="bf16")), (RayRunner, Variant(amp="bf16"))]
    if device.type == "cpu":
        notes.append("bf16 autocast is measured on the GPU only (on CPU its speed depends on the CPU's bf16 support); "
                     "run with --device cuda")
        notes.append(f"bare and engine loops run with {worker_threads} intra-op thread(s), the Ray Train worker's "
                     f"share of the {ray_cpus}-CPU Ray (one CPU stays free for Ray Data)")

    store = max(300 * bc.MiB, 4 * factory.data_bytes())
    result: dict[str, Any] = {
        "benchmark": NAME, "machine": facts,
        "config": {"quick": args.quick, "device": str(device), "repeats": repeats, "warmup_epochs": args.warmup,
                   "ray_cpus": ray_cpus, "object_store_bytes": store,
                   "worker_cpus": worker_cpus, "bare_threads": worker_threads, **asdict(sizes), "data_bytes": factory.data_bytes(),
                   "id_distribution": "per field rank = vocab * u^3 (skewed), labels Bernoulli(0.2)"},
        "anchors_h100": ANCHORS_H100, "runs": {}, "ratios": {}, "notes": notes,
    }
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="crossadapt-bench-train-"))
    try:
        with bc.ray_session(ray_cpus, store):
            for batch in sizes.batches:
                if args.warmup > 0:  # process-level warm-up (allocator, caches, kernels), untimed
                    print(f"[{NAME}] batch {batch}: warm-up ...", flush=True)
                    BareRunner(factory, batch, device, matched).warm(args.warmup)
                plan = [(BareRunner, matched), (EngineRunner, matched), (RayRunner, Variant())] + extras
                tries: dict[str, list[dict[str, Any]]] = {}
                for rep in range(repeats):
                    for cls, variant in plan:
                        key = f"{cls.kind}:{variant.label()}"
                        print(f"[{NAME}] batch {batch}: {key} (repeat {rep + 1}/{repeats}) ...", flush=True)
                        runner = (cls(factory, batch, device, variant, workdir, worker_cpus) if cls is RayRunner
                                  else cls(factory, batch, device, variant))
                        run = runner.run()
                        run["variant"] = asdict(variant)
                        tries.setdefault(key, []).append(run)
                        print(f"[{NAME}]   joint {bc.fmt(med(run, 'joint'))} samples/s, frozen "
                              f"{bc.fmt(med(run, 'frozen'))}, wall {run['wall_seconds']:.1f} s", flush=True)
                runs = {key: median_run(v) for key, v in tries.items()}
                bare, eng, ray_ = runs[f"bare:{matched.label()}"], runs[f"engine:{matched.label()}"], runs["ray:fp32"]
                r = {
                    "ray_vs_bare_joint": bc.ratio(med(ray_, "joint"), med(bare, "joint")),
                    "ray_vs_bare_frozen": bc.ratio(med(ray_, "frozen"), med(bare, "frozen")),
                    "engine_vs_bare_joint": bc.ratio(med(eng, "joint"), med(bare, "joint")),
                    "ray_vs_engine_joint": bc.ratio(med(ray_, "joint"), med(eng, "joint")),
                    # end to end: samples trained / wall time including set-up (Ray: start-up, data, checkpoint)
                    "ray_vs_bare_e2e": bc.ratio(ray_["e2e_samples_per_s"], bare["e2e_samples_per_s"]),
                    "ray_wall_over_bare_wall": bc.ratio(ray_["wall_seconds"], bare["wall_seconds"]),
                }
                if "bare:bf16" in runs:
                    r["ray_bf16_vs_bare_bf16_joint"] = bc.ratio(med(runs["ray:bf16"], "joint"), med(runs["bare:bf16"], "joint"))
                    r["bare_bf16_vs_bare_fp32_joint"] = bc.ratio(med(runs["bare:bf16"], "joint"), med(bare, "joint"))
                fused = runs.get(f"bare:{replace(matched, fused_adam=True).label()}")
                if fused:
                    r["bare_fused_adam_vs_bare_joint"] = bc.ratio(med(fused, "joint"), med(bare, "joint"))
                if device.type == "cpu" and f"bare:{os.cpu_count()}thr" in runs:
                    r["ray_vs_bare_all_cores_joint"] = bc.ratio(med(ray_, "joint"), med(runs[f"bare:{os.cpu_count()}thr"], "joint"))
                result["runs"][str(batch)] = runs
                result["ratios"][str(batch)] = r
                for key, run in runs.items():
                    base = runs["bare:bf16"] if "bf16" in key else bare  # bf16 runs against the bf16 bare loop
                    rows.append([batch, key, med(run, "frozen"), med(run, "joint"),
                                 bc.ratio(med(run, "joint"), med(base, "joint")),
                                 run["e2e_samples_per_s"], run["wall_seconds"]])
        if device.type == "cuda":
            big = result["ratios"].get("16384", {}).get("ray_vs_bare_joint")
            result["goal"] = {"ray_vs_bare_joint_at_16384": big, "target": 0.8, "met": None if big is None else big >= 0.8}
        else:
            result["goal"] = {"target": "ray >= 0.8x bare at batch 16384 on the GPU", "met": None,
                              "why_none": "not measured on a GPU in this run"}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bc.finish(args.out, result,
              ["batch", "run", "frozen/s", "joint/s", "joint vs bare", "e2e/s", "wall s"], rows, started)


if __name__ == "__main__":
    main()
