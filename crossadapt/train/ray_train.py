"""Ray Train glue: the per-worker loop (DDP over gloo on CPU, NCCL on GPU) and the driver call.

Each worker materialises its shard of the training set once (on the GPU when there is one) and
iterates it with a fresh permutation per epoch; the frozen teacher's logits for that shard are
computed once, in the same worker, in inference mode. A job whose shard exceeds
``resources.cache_bytes`` (``TrainJob.stream_buffer_rows > 0``, decided on the driver) streams it
instead, every epoch, with the teacher's logits per batch (``crossadapt.train.shards``). Rank 0
evaluates the whole validation split each epoch (exact AUC; held when it fits the same budget,
streamed otherwise), decides early stopping for everyone, keeps the best model as
``<run_dir>/best.pt`` and reports a resumable checkpoint at most every ``checkpoint_interval_s``.
Resume after a worker failure is exact for a resident shard and, for a streamed one, repeats the
interrupted epoch from its start over the same rows, possibly in another order
(``engine.run_phases``). ``outcome.json`` records how the data was held (``data``) and the largest
RSS of any worker process while the job ran (``peak_rss_bytes``).

Bad data is a deterministic error, never retried: Ray Train's failure handling restarts the worker
group on any worker error, which is right for a dead process or node and wrong for a bad row. The
files are checked on the driver before the datasets are built (``crossadapt.data.file_checks``,
naming file, column and row); a data error a worker meets anyway (a file changed since) stops
every rank at the same point, rank 0 writes it to the job's run folder (``data_error.json``) and
the workers return normally, so Ray Train never sees an error to retry; ``fit_many`` raises it.
Rank 0 counts the worker group's starts in the first job's folder (``worker_starts.json``: 1
unless a worker failed and Ray Train restarted the group).

Runs are bound to their jobs' fingerprints (``TrainJob.fingerprint``, see ``crossadapt.fingerprint``):
a job whose run folder holds an ``outcome.json`` of the same fingerprint is finished and is not
trained again; Ray Train's storage is named by the fingerprints of the run's jobs, so an interrupted
run of the same jobs resumes from its last checkpoint, and any other run starts afresh. The storage
is deleted once every outcome is on disk: Ray Train's checkpoints exist only to resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import ray
import ray.train
import torch
import torch.distributed as dist
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from crossadapt import atomic, faults, ray_logs
from crossadapt import fingerprint as F
from crossadapt.concurrency import run_concurrently
from crossadapt.config import ResourcesConfig, from_dict, to_dict
from crossadapt.data.ray_data import materialize_arrays
from crossadapt.errors import DataError
from crossadapt.featuremap import FeatureMap
from crossadapt.memory import PeakRss
from crossadapt.ray_init import cpu_share, resolve_use_gpu, train_workers
from crossadapt.models import save_checkpoint
from crossadapt.progress import Progress
from crossadapt.train import engine
from crossadapt.train.engine import TrainJob
from crossadapt.train.shards import SharedDataError, StreamedEval, StreamedShard, as_data_error, hold_or_stream

_log = logging.getLogger(__name__)
STATE_FILE = "state.pt"
OUTCOME_FILE = "outcome.json"
PROGRESS_FILE = "progress.json"  # rank 0's latest epoch and the job's history so far
#: Written by rank 0 when a data error stopped the run; ``fit_many`` raises it on the driver.
DATA_ERROR_FILE = "data_error.json"
#: How many times Ray Train started the worker group of the last run whose first job is in this folder.
STARTS_FILE = "worker_starts.json"


@dataclass
class TrainOutcome:
    """What a finished run leaves: best model path and the measured figures."""

    best_checkpoint: str
    best_valid_auc: float | None  # None: no validation split, or one of a single class (LogLoss chose)
    history: list[dict]
    train_seconds: float
    wall_seconds: float
    samples_seen: int
    fingerprint: str = ""
    reused: bool = False  # finished by an earlier run with the same fingerprint: not trained again


def read_outcome(run_dir: str | Path, fingerprint: str) -> dict | None:
    """The outcome of a finished job in ``run_dir`` when it has this ``fingerprint`` and its best
    checkpoint is there; None otherwise (not run, interrupted, or made by another job)."""
    path = Path(run_dir) / OUTCOME_FILE
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(out, dict) or out.get("fingerprint") != fingerprint:
        return None
    return out if Path(out.get("best_checkpoint", "")).is_file() else None


def _world() -> tuple[int, int]:
    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def _broadcast_flag(flag: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def _all_reduce(value: float, world: int, device: torch.device, op=None) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return float(t.item())


def _wrap(model: torch.nn.Module, world: int, device: torch.device) -> torch.nn.Module:
    """DDP around ``model`` for the current phase (rebuilt per phase since frozen params change)."""
    if world == 1:
        return model
    ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point: run ``config["jobs"]`` (``TrainJob`` dicts) one after another.

    Several jobs share one worker group so that its start-up (seconds per fit) is paid once; each
    job reads its datasets by name, and each named dataset is materialised once per worker. A data
    error stops every rank before the job trains and is left for ``fit_many`` (module docstring).
    """
    jobs = [from_dict(TrainJob, j) for j in config["jobs"]]
    rank, world = _world()
    device = ray.train.torch.get_device()
    if rank == 0:
        _count_start(Path(jobs[0].run_dir))
    fm = FeatureMap.from_dict(jobs[0].feature_map)
    coll = _collective(rank, world, device)
    cache: dict[str, engine.Tensors | StreamedEval] = {}
    held: dict[str, dict] = {}  # how each dataset is held on this rank (for the outcome)

    def data(job: TrainJob, key: str) -> engine.Tensors | StreamedShard:
        if job.stream_buffer_rows > 0:  # beyond the cache budget (decided on the driver)
            return StreamedShard(ray.train.get_dataset_shard(key), fm, key, coll, job, device)
        if key not in cache:
            cache[key] = engine.to_tensors(materialize_arrays(ray.train.get_dataset_shard(key), fm, key), device)
            held[key] = {"mode": "resident", "rows": int(cache[key]["ids"].shape[0])}
        return cache[key]

    def valid_data(key: str) -> engine.Tensors | StreamedEval:
        if key not in cache:
            cache[key], held[key] = hold_or_stream(ray.train.get_dataset_shard(key), fm, key,
                                                   config.get("cache_bytes", 2**62), device)
        return cache[key]

    saved = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # resume after a worker failure, or a rerun of an interrupted run of these jobs
        with ckpt.as_directory() as d:
            saved = torch.load(os.path.join(d, STATE_FILE), map_location=device, weights_only=True)
    progress = Progress(config.get("name", "train"), len(jobs), unit="job")
    for i, job in enumerate(jobs):
        needed = {k for j in jobs[i:] for k in (*engine.phase_keys(j), j.valid_key)}
        for key in set(cache) - needed:  # no job still to run reads it: free it
            del cache[key]
        # rank 0's run folder decides for every rank (the others may sit on nodes without that disk)
        if coll.broadcast(rank == 0 and read_outcome(job.run_dir, job.fingerprint) is not None):
            if rank == 0:
                _log.info(progress.done(f"{job.name}, finished before a restart"))
            continue  # finished before a worker failure: not trained twice
        resume = saved if saved and (saved.get("run_dir"), saved.get("fingerprint")) == (
            job.run_dir, job.fingerprint) else None
        if resume and rank == 0:
            _log.info("%s resumed at phase %d epoch %d", job.name, resume["state"]["phase"], resume["state"]["epoch"])
        error = None
        try:
            by_key = {k: data(job, k) for k in dict.fromkeys(engine.phase_keys(job))}
            train = [by_key[k] for k in engine.phase_keys(job)]  # one per phase, each name read once
            valid = valid_data(job.valid_key) if rank == 0 and job.valid_key in config["valid_keys"] else None
        except Exception as e:  # a data error is agreed on below; any other error propagates (and is retried)
            error = as_data_error(e, job.train_key)
        if coll.min(0.0 if error is not None else 1.0) == 0.0:  # every rank stops here, none waits for another
            _write_data_error(error, job, rank, world)
            return
        try:
            with PeakRss() as rss:
                state = _run_job(job, train, valid, coll, device, resume)
        except SharedDataError as e:  # met while streaming, by this rank or another: every rank stops here
            _write_data_error(e.local, job, rank, world)
            return
        first = train[0]  # how the first phase's set was held (a fresh set per phase is held alike)
        report = first.report() if isinstance(first, StreamedShard) else held[engine.phase_keys(job)[0]]
        _write_memory(job, rank, coll, report, held.get(job.valid_key), rss.peak)
        if rank == 0:
            best = state["best_auc"]
            _log.info(progress.done(f"{job.name}: {len(state['history'])} epochs"
                                    + (f", best valid auc {best:.4f}" if best is not None else "")))


def _count_start(run_dir: Path) -> None:
    path = run_dir / STARTS_FILE
    try:
        starts = int(json.loads(path.read_text())["starts"])
    except (OSError, ValueError, KeyError, TypeError):
        starts = 0
    atomic.write_json(path, {"starts": starts + 1})


def _write_memory(job: TrainJob, rank: int, coll: engine.Collective, train: dict, valid: dict | None,
                  peak_rss: int) -> None:
    """Add to the job's outcome how its data was held (rank 0's figures; ``rows`` and ``held_rows`` the
    largest of any rank) and ``peak_rss_bytes``, the largest RSS any worker process reached while the
    job ran (sampled, see ``crossadapt.memory``). Collective calls: every rank."""
    train = dict(train)
    for k in ("rows", "held_rows"):
        if k in train:
            train[k] = int(-coll.min(-float(train[k])))
    peak = int(-coll.min(-float(peak_rss)))
    if rank == 0:
        path = Path(job.run_dir) / OUTCOME_FILE
        data = {"train": train} | ({"valid": valid} if valid else {})
        atomic.write_json(path, {**json.loads(path.read_text()), "data": data, "peak_rss_bytes": peak})


def _write_data_error(error: DataError | None, job: TrainJob, rank: int, world: int) -> None:
    """Every rank's message to rank 0 (a collective call), which writes the first one found to
    ``<run_dir>/data_error.json``."""
    mine = None if error is None else str(error)
    messages = [mine]
    if world > 1:
        messages = [None] * world
        dist.all_gather_object(messages, mine)
    if rank == 0:
        first, message = next((r, m) for r, m in enumerate(messages) if m is not None)
        atomic.write_json(Path(job.run_dir) / DATA_ERROR_FILE, {"message": message, "rank": first, "job": job.name})


def _collective(rank: int, world: int, device: torch.device) -> engine.Collective:
    """torch.distributed versions of the loop's collectives (gloo on CPU, NCCL on GPU)."""
    if world == 1:
        return engine.Collective()
    return engine.Collective(
        rank=rank, world=world,
        wrap=lambda m: _wrap(m, world, device),
        sum=lambda v: _all_reduce(v, world, device),
        min=lambda v: _all_reduce(v, world, device, dist.ReduceOp.MIN),
        broadcast=lambda f: _broadcast_flag(f, world, device),
    )


def _run_job(
    job: TrainJob,
    train: list[engine.Tensors | StreamedShard],
    valid: engine.EvalData | None,
    coll: engine.Collective,
    device: torch.device,
    saved: dict | None,
) -> dict:
    """One job through ``engine.run_phases`` (``train``: one set per phase): rank 0 keeps the best
    model as ``best.pt`` (with ``-job.logit_shift`` as its logit offset), and resumable checkpoints
    leave through ``ray.train.report`` every ``checkpoint_interval_s``."""
    fm = FeatureMap.from_dict(job.feature_map)
    run_dir = Path(job.run_dir)
    model = engine.build_job_model(job, fm, device)
    saved_cfg = replace(job.model, logit_offset=job.model.logit_offset - job.logit_shift)
    t0 = time.perf_counter()  # a streamed shard's teacher runs per batch, inside its epochs
    by_set: dict[int, torch.Tensor | None] = {}  # a set shared by several phases is scored by the teacher once
    for t in train:
        if id(t) not in by_set:
            by_set[id(t)] = engine.job_teacher_logits(job, fm, t) if isinstance(t, dict) else None
    teacher_logits = [by_set[id(t)] for t in train]
    teacher_seconds = time.perf_counter() - t0
    rank, world = coll.rank, coll.world
    last_ckpt = [time.perf_counter()]
    # the (phase, epoch) this attempt started from after a worker failure, None on a first attempt
    resumed_from = None if saved is None else {k: saved["state"][k] for k in ("phase", "epoch")}

    def on_epoch(record: dict, state: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
                 improved: bool, done: bool) -> None:
        if improved:
            save_checkpoint(run_dir / "best.pt", model, saved_cfg, fm,
                            {"job": job.name, "fingerprint": job.fingerprint, **record})
        if rank == 0:  # where a long run is, and which process runs it (to watch it, or kill it in tests)
            atomic.write_json(run_dir / PROGRESS_FILE, {"pid": os.getpid(), "job": job.name, "phase": state["phase"],
                                                        "epoch": state["epoch"], "samples": state["samples"],
                                                        "done": done, "resumed_from": resumed_from,
                                                        "history": state["history"]})  # the driver's live feed
        # Every rank must report at the same epochs: rank 0's clock decides.
        if coll.broadcast(done or time.perf_counter() - last_ckpt[0] >= job.checkpoint_interval_s):
            _report(model, opt, state, record, rank, job)  # Ray Train sees checkpoints only
            last_ckpt[0] = time.perf_counter()
        # a fault test may hold this rank here, after the epoch and its report, to kill it
        faults.pause_point(run_dir, rank=rank, phase=record["phase"], epoch=record["epoch"])

    state = engine.run_phases(model, job, train, valid, teacher_logits, coll, saved, on_epoch)
    if rank == 0:
        if valid is None:  # no validation split: the last model is the one we keep
            save_checkpoint(run_dir / "best.pt", model, saved_cfg, fm,
                            {"job": job.name, "fingerprint": job.fingerprint})
        atomic.write_json(run_dir / OUTCOME_FILE, {
            "fingerprint": job.fingerprint,
            "world_size": world,
            "best_checkpoint": str(run_dir / "best.pt"),
            "best_valid_auc": state["best_auc"],
            "history": state["history"],
            # teacher inference + optimisation + validation; not Ray start-up or data loading
            "train_seconds": teacher_seconds + state["seconds"],
            "samples_seen": state["samples"],
        })
    return state


def _report(model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict, record: dict, rank: int,
            job: TrainJob) -> None:
    """Report from every rank (a collective call); rank 0 attaches a resumable checkpoint.

    Each report blocks until the Train controller polls it (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``,
    2 s by default), so reports are made only when a checkpoint is due, never once per epoch.
    """
    metrics = {k: v for k, v in record.items() if isinstance(v, (int, float))}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        torch.save({"run_dir": job.run_dir, "fingerprint": job.fingerprint, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "state": state},
                   os.path.join(d, STATE_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def worker_cpus(resources: ResourcesConfig, groups: int = 1) -> float:
    """CPUs per worker when ``groups`` worker groups of ``num_workers`` run at once, shrunk so that
    one CPU stays free for Ray Data's read and split tasks.

    Workers that hold every CPU starve the dataset pipeline feeding them and the run hangs.
    """
    total = ray.cluster_resources().get("CPU", 1.0)
    want, workers = resources.cpus_per_worker, resources.num_workers * groups
    room = max(total - 1.0, 0.1 * workers)
    if want * workers > room:
        shrunk = cpu_share(room, workers)
        _log.info("%d workers x %g CPU leave no CPU for Ray Data on a %g-CPU cluster: using %g CPU per worker",
                  workers, want, total, shrunk)
        return shrunk
    return want


def job_lanes(jobs: list[TrainJob], lanes: int, cost: Callable[[TrainJob], float]) -> list[list[TrainJob]]:
    """``jobs`` dealt to at most ``lanes`` lanes that run at once, each job to the lane with the least
    ``cost`` so far, the costliest first (ties: job order); each lane keeps the jobs' order. The
    same jobs always give the same lanes, so an interrupted lane resumes from its own checkpoint."""
    lanes = max(1, min(lanes, len(jobs)))
    load, members = [0.0] * lanes, [[] for _ in range(lanes)]
    for i in sorted(range(len(jobs)), key=lambda i: (-cost(jobs[i]), i)):
        lane = min(range(lanes), key=lambda k: (load[k], k))
        load[lane] += cost(jobs[i])
        members[lane].append(i)
    return [[jobs[i] for i in sorted(m)] for m in members if m]


def epochs_cost(job: TrainJob) -> float:
    """The default cost of a job for ``job_lanes``: its epochs at most (the rows are not known here)."""
    return float(sum(p.epochs for p in job.phases))


Datasets = Mapping[str, "ray.data.Dataset | None"]
#: ``on_epoch(job, index, record)``: an epoch record of a job in training, seen by the driver.
EpochCallback = Callable[[TrainJob, int, dict], None]


def fit(
    job: TrainJob,
    train_ds: ray.data.Dataset,
    valid_ds: ray.data.Dataset | None,
    resources: ResourcesConfig,
    storage_dir: str | Path | None = None,
    fresh: bool = False,
    keep_storage: bool = False,
) -> TrainOutcome:
    """Run one ``job`` on Ray Train and return its outcome (see ``fit_many``)."""
    job = replace(job, train_key="train", valid_key="valid")
    datasets = {"train": train_ds} | ({"valid": valid_ds} if valid_ds is not None else {})
    return fit_many([job], datasets, resources, name=job.name, storage_dir=storage_dir, fresh=fresh,
                    keep_storage=keep_storage)[0]


@contextlib.contextmanager
def _caller_sigint():
    """Train V2's ``fit`` replaces the Ctrl-C handler (abort the run, then ``sys.exit(0)``) and leaves
    its own installed after the run, where a later Ctrl-C is swallowed; the caller's comes back here
    (``crossadapt.cli`` turns both into one "interrupted" line)."""
    if threading.current_thread() is not threading.main_thread():  # Tune trials: no handler is set
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def fit_many(
    jobs: list[TrainJob],
    datasets: Datasets | Callable[[list[TrainJob]], Datasets],
    resources: ResourcesConfig,
    name: str = "sweep",
    storage_dir: str | Path | None = None,
    fresh: bool = False,
    keep_storage: bool = False,
    on_epoch: EpochCallback | None = None,
    cost: Callable[[TrainJob], float] = epochs_cost,
) -> list[TrainOutcome]:
    """Run ``jobs`` one after another in one Ray Train worker group, or in ``resources.concurrent_jobs``
    worker groups at once on CPU (lanes dealt by ``job_lanes`` with ``cost``); outcomes in job order.

    ``datasets`` maps the names jobs use (``train_key``/``valid_key``) to datasets, or is a function
    of the jobs still to train returning that map (called only when some are). Training sets are
    split across workers, validation sets are read whole by rank 0. Each outcome is read from the
    job's run folder (Train V2 keeps no metrics without a checkpoint in ``Result``).

    Binding (see the module docstring): a job whose run folder holds its finished outcome (same
    ``fingerprint``) is reused, not trained; the others run under Ray Train storage
    ``<storage_dir>/ray_storage/<name>-<digest of the jobs' fingerprints>`` (one per lane, of the
    lane's jobs), resumed when an interrupted run of the same jobs left it. A job trains alone in
    its worker group whatever the lanes, so its result does not depend on them. A job without a
    fingerprint gets one of the job alone (its data cannot be known here). ``fresh`` trains every job from the start: their run
    folders and this run's storage are emptied first. ``keep_storage`` keeps Ray Train's
    checkpoints after success (to inspect them). ``on_epoch`` is called on the driver, from a thread
    that reads the jobs' ``progress.json`` every few seconds, with each new epoch record (W&B while a
    stage runs); it never fails the run.
    """
    code = F.code_fingerprint()
    jobs = [replace(j, run_dir=str(Path(j.run_dir).resolve()),
                    fingerprint=j.fingerprint or F.train_fingerprint(j, {}, resources.num_workers, code))
            for j in jobs]
    storage = Path(storage_dir or Path(jobs[0].run_dir).parent).resolve() / "ray_storage"
    pending = list(jobs) if fresh else [j for j in jobs if read_outcome(j.run_dir, j.fingerprint) is None]
    if pending:  # only a run that trains asks where it trains (use_gpu=true may wait for a GPU)
        use_gpu = resolve_use_gpu(resources)
        # GPU workers take whole devices: their jobs keep one lane rather than wait on each other's GPUs
        lanes = job_lanes(jobs, 1 if use_gpu else resources.concurrent_jobs, cost)
        names = [f"{name}-{F.short(F.digest([[j.name, j.fingerprint] for j in lane]))}" for lane in lanes]
        if fresh:
            for run_name in names:
                shutil.rmtree(storage / run_name, ignore_errors=True)
            for j in jobs:
                shutil.rmtree(j.run_dir, ignore_errors=True)
        sets = dict(datasets(pending) if callable(datasets) else datasets)
        todo = [(run_name, [j for j in lane if j in pending]) for run_name, lane in zip(names, lanes)]
        todo = [(run_name, lane) for run_name, lane in todo if lane]

        def lane_call(run_name: str, lane: list[TrainJob], k: int) -> Callable[[], float]:
            keys = {key for j in lane for key in (*engine.phase_keys(j), j.valid_key)}
            label = name if len(todo) == 1 else f"{name} lane {k + 1} of {len(todo)}"
            return lambda: _train(lane, {key: v for key, v in sets.items() if key in keys}, resources, use_gpu,
                                  storage, run_name, on_epoch, label=label, groups=len(todo))

        walls = run_concurrently([lane_call(run_name, lane, k) for k, (run_name, lane) in enumerate(todo)],
                                 at_once=len(todo))
        for (run_name, lane), wall in zip(todo, walls):
            for j in lane:  # the lane's start-up split evenly, kept with the outcome for later reuse
                path = Path(j.run_dir) / OUTCOME_FILE
                atomic.write_json(path, {**json.loads(path.read_text()), "wall_seconds": wall / len(lane)})
            if not keep_storage:
                shutil.rmtree(storage / run_name, ignore_errors=True)
    outcomes = []
    for j in jobs:
        out = read_outcome(j.run_dir, j.fingerprint)
        if out is None:
            raise RuntimeError(f"{j.run_dir}: Ray Train finished but left no {OUTCOME_FILE} for job {j.name}")
        outcomes.append(TrainOutcome(
            best_checkpoint=out["best_checkpoint"],
            best_valid_auc=out["best_valid_auc"],
            history=out["history"],
            train_seconds=out["train_seconds"],
            wall_seconds=out.get("wall_seconds", 0.0),
            samples_seen=out["samples_seen"],
            fingerprint=j.fingerprint,
            reused=j not in pending,
        ))
    return outcomes


class _EpochFeed:
    """A driver thread passing the new epoch records of ``jobs`` (rank 0's ``progress.json``) to ``on_epoch``."""

    def __init__(self, jobs: list[TrainJob], on_epoch: EpochCallback, interval_s: float = 2.0) -> None:
        self.jobs, self.on_epoch, self.interval_s = jobs, on_epoch, interval_s
        self.seen = {j.run_dir: 0 for j in jobs}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="crossadapt-epoch-feed", daemon=True)

    def __enter__(self) -> "_EpochFeed":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _loop(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.poll()
        self.poll()  # the last epochs

    def poll(self) -> None:
        for j in self.jobs:
            try:
                history = json.loads((Path(j.run_dir) / PROGRESS_FILE).read_text()).get("history", [])
            except (OSError, ValueError, AttributeError):
                continue  # not started yet (the file is written atomically)
            for i in range(self.seen[j.run_dir], len(history)):
                try:
                    self.on_epoch(j, i, history[i])
                except Exception as e:  # a live view must never fail training
                    _log.debug("on_epoch failed for %s: %s", j.name, e)
            self.seen[j.run_dir] = max(self.seen[j.run_dir], len(history))


def _train(jobs: list[TrainJob], datasets: dict, resources: ResourcesConfig, use_gpu: bool, storage: Path,
           run_name: str, on_epoch: EpochCallback | None = None, label: str = "", groups: int = 1) -> float:
    """One Ray Train run of ``jobs`` under ``storage/run_name`` (its progress lines say ``label``),
    one of ``groups`` worker groups running at once, on GPUs when ``use_gpu``; returns its wall seconds."""
    for j in jobs:
        Path(j.run_dir).mkdir(parents=True, exist_ok=True)
        (Path(j.run_dir) / PROGRESS_FILE).unlink(missing_ok=True)  # the live feed reads this run's epochs only
    datasets = {k: v for k, v in datasets.items() if v is not None}
    train_keys = sorted({j.train_key for j in jobs})
    missing = sorted(set(train_keys) - set(datasets))
    if missing:
        raise ValueError(f"jobs name datasets {missing} that were not given")
    for j in jobs:  # this run's own records only
        (Path(j.run_dir) / DATA_ERROR_FILE).unlink(missing_ok=True)
    (Path(jobs[0].run_dir) / STARTS_FILE).unlink(missing_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"name": label or run_name.rsplit("-", 1)[0], "jobs": [to_dict(j) for j in jobs],
                           "valid_keys": sorted(set(datasets) - set(train_keys)),
                           "cache_bytes": resources.cache_bytes},
        scaling_config=ScalingConfig(
            num_workers=train_workers(resources, use_gpu),
            use_gpu=use_gpu,
            resources_per_worker=None if use_gpu else {"CPU": worker_cpus(resources, groups)},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=resources.max_failures),  # resume from the last epoch checkpoint
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=ray_logs.train_logging(),  # its INFO lines with --verbose only
        ),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=train_keys),
    )
    t0 = time.perf_counter()
    with _caller_sigint(), (_EpochFeed(jobs, on_epoch) if on_epoch else contextlib.nullcontext()):
        trainer.fit()
    for j in jobs:  # a data error stopped every worker, which returned without an error for Ray Train to retry
        path = Path(j.run_dir) / DATA_ERROR_FILE
        if path.exists():
            raise DataError(f"{json.loads(path.read_text())['message']} (met by a Ray Train worker in job {j.name}, "
                            "not retried; the files passed their checks before training, so one changed since: "
                            "run again to have it named)")
    return time.perf_counter() - t0
