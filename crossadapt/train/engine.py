"""Pure-torch training pieces shared by Ray Train workers, online actors and benchmarks (no Ray here).

A ``TrainJob`` is the whole, typed description of one supervised or distillation run: which model,
which phases (a phase may freeze the embeddings), which teacher, which loss.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.data.arrays import Arrays
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.losses import distillation_loss
from crossadapt.metrics import evaluate_predictions
from crossadapt.models import build_model
from crossadapt.models.teacher_import import load_teacher_model
from crossadapt.models.embedding import embedding_parameters, set_embedding_trainable
from crossadapt.progress import Heartbeat

_log = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]


@dataclass
class Phase:
    """A stretch of epochs with one learning rate; ``freeze_embeddings`` keeps the tables fixed;
    ``embed_lr`` is the tables' own rate when they train (None: ``lr``)."""

    epochs: int
    lr: float
    freeze_embeddings: bool = False
    embed_lr: float | None = None


@dataclass
class TrainJob:
    """Everything a training worker needs, as plain typed fields (serialised with ``config.to_dict``)."""

    name: str
    run_dir: str
    model: ModelConfig
    feature_map: dict = field(default_factory=dict)
    phases: tuple[Phase, ...] = (Phase(epochs=3, lr=1e-3),)
    batch_size: int = 2048
    weight_decay: float = 0.0
    patience: int = 2
    seed: int = 0
    embed_weight_decay: float | None = None  # the tables' weight decay (None: weight_decay)
    teacher_checkpoint: str = ""
    alpha: float = 0.0
    temperature: float = 1.0
    kd_kind: str = "bce"
    loss_form: str = "additive"  # crossadapt.losses.distillation_loss
    # log(keep_pos / keep_neg) of a positive-rate sample (crossadapt.data.sampling), 0 otherwise: the
    # teacher's logits are moved by it while the student trains on the sample, validation and the
    # saved model (ModelConfig.logit_offset) subtract it.
    logit_shift: float = 0.0
    init_embeddings: str = ""
    amp: str = "none"
    train_key: str = "train"
    valid_key: str = "valid"
    # One dataset name per phase (a fresh sample per phase); empty: every phase trains on train_key.
    phase_train_keys: tuple[str, ...] = ()
    checkpoint_interval_s: float = 30.0  # 0: a resumable checkpoint after every epoch
    # 0: the training shard is held resident and each epoch is a seeded permutation of it (exact
    # resume); > 0: it is streamed every epoch through a seeded local shuffle buffer of this many
    # rows (crossadapt.data.shard_budget decides; part of the fingerprint: another batch order).
    stream_buffer_rows: int = 0
    # What produced the job's result (crossadapt.fingerprint), set by the driver: written into its
    # outcome, best checkpoint and resumable checkpoints; never part of its own digest.
    fingerprint: str = ""


def phase_keys(job: TrainJob) -> list[str]:
    """The dataset each phase of ``job`` trains on."""
    if job.phase_train_keys:
        if len(job.phase_train_keys) != len(job.phases):
            raise ConfigError(f"{job.name}: {len(job.phase_train_keys)} phase datasets for {len(job.phases)} phases")
        return list(job.phase_train_keys)
    return [job.train_key] * len(job.phases)


def to_tensors(a: Arrays, device: torch.device | str = "cpu") -> Tensors:
    """Arrays dict to tensors on ``device`` (ids int64, dense and label float32)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in a.items()}


def autocast(device: torch.device, amp: str):
    """bf16 autocast when asked for, a no-op context otherwise."""
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def dense_or_none(t: Tensors) -> torch.Tensor | None:
    """The numeric columns of ``t``, or None without numeric fields (what the models take)."""
    d = t["dense"]
    return d if d.shape[1] > 0 else None


@torch.no_grad()
def predict_logits(model: nn.Module, data: Tensors, batch_size: int = 65536, amp: str = "none") -> torch.Tensor:
    """Logits of ``model`` (put in eval mode, restored afterwards) for every row, float32."""
    was_training = model.training
    model.eval()
    device = data["ids"].device
    out = []
    n = data["ids"].shape[0]
    dense = dense_or_none(data)
    for s in range(0, n, batch_size):
        with autocast(device, amp):
            z = model(data["ids"][s : s + batch_size], None if dense is None else dense[s : s + batch_size])
        out.append(z.float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, device=device)


def predict_proba(model: nn.Module, data: Tensors | Arrays, batch_size: int = 65536,
                  logit_offset: float = 0.0) -> np.ndarray:
    """Click probabilities of ``model`` for every row of ``data`` (``logit_offset`` added to its
    logits first): float32, on the host."""
    if isinstance(data["ids"], np.ndarray):
        device = next(model.parameters()).device
        data = to_tensors(data, device)  # type: ignore[arg-type]
    z = predict_logits(model, data, batch_size)
    return torch.sigmoid(z + logit_offset if logit_offset else z).cpu().numpy()


#: What evaluation takes: resident tensors or arrays, or an iterable of arrays dicts (a split read in chunks).
EvalData = Tensors | Arrays | Iterable[Arrays]


def scores_and_labels(model: nn.Module, data: EvalData, batch_size: int = 65536,
                      logit_offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (float32) and labels of every row of ``data`` in row order, ``logit_offset``
    added to the logits. A chunked ``data`` is read once and only these two vectors are kept; chunks
    of ``batch_size`` rows (the last one may be shorter) give the very probabilities of the resident
    path, whose batches are the same rows."""
    if isinstance(data, dict):
        labels = data["label"]
        labels = labels.cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
        return predict_proba(model, data, batch_size, logit_offset), labels
    scores, labels = [], []
    for chunk in data:
        scores.append(predict_proba(model, chunk, batch_size, logit_offset))
        labels.append(np.asarray(chunk["label"], dtype=np.float32))
    if not scores:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(scores), np.concatenate(labels)


def evaluate(model: nn.Module, data: EvalData, batch_size: int = 65536,
             logit_offset: float = 0.0) -> dict[str, float]:
    """AUC, LogLoss and bias of ``model`` on all rows of ``data`` (metrics in float64; the AUC is
    exact over every row, also when ``data`` is read in chunks)."""
    scores, labels = scores_and_labels(model, data, batch_size, logit_offset)
    return evaluate_predictions(labels, scores)


def batches(n: int, batch_size: int, steps: int, generator: torch.Generator, device) -> Iterator[torch.Tensor]:
    """``steps`` index batches of a fresh random permutation of ``range(n)``."""
    perm = torch.randperm(n, generator=generator).to(device)
    for i in range(steps):
        yield perm[i * batch_size : (i + 1) * batch_size]


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    embed_lr: float | None = None,
    embed_weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """Adam over the parameters that currently require grad (fused: one kernel for all of them).

    With ``embed_lr`` or ``embed_weight_decay`` set (``None``: the same as ``lr`` / ``weight_decay``),
    ``model.embedding``'s parameters (the table and the numeric vectors, what the phase-1 freeze and
    projection touch) form their own param group, named ``"embedding"``; everything else is the
    group ``"dense"``. One Adam with two groups is exactly the released code's two Adams (Adam's
    state and update are per parameter; only lr and weight decay are per group), keeps one
    ``step``/``zero_grad``/``state_dict`` for checkpoints and resumes, and stays fused. Frozen
    embeddings (phase 1) leave the ``"embedding"`` group out. Without either setting the optimizer
    is one group, as before (its state dicts stay loadable).

    The per-parameter Adam was 36 % of a CPU training step; the fused one 7 %.

    Example::

        opt = make_optimizer(model, lr=1e-3, embed_lr=0.1)  # the released code's settings
        [(g["name"], g["lr"]) for g in opt.param_groups]   # [("dense", 0.001), ("embedding", 0.1)]
    """
    params = [p for p in model.parameters() if p.requires_grad]
    fused = _fused_ok(params)
    if embed_lr is None and embed_weight_decay is None:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if embed_lr is not None and not embed_lr > 0:
        raise ConfigError(f"optim.embed_lr: must be > 0, got {embed_lr}")
    if embed_weight_decay is not None and not embed_weight_decay >= 0:
        raise ConfigError(f"optim.embed_weight_decay: must be >= 0, got {embed_weight_decay}")
    emb_ids = {id(p) for p in embedding_parameters(model)}
    groups = [
        {"name": "dense", "params": [p for p in params if id(p) not in emb_ids], "lr": lr,
         "weight_decay": weight_decay},
        {"name": "embedding", "params": [p for p in params if id(p) in emb_ids],
         "lr": lr if embed_lr is None else embed_lr,
         "weight_decay": weight_decay if embed_weight_decay is None else embed_weight_decay},
    ]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay, fused=fused)


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """Fused Adam needs floating-point parameters on CPU (torch >= 2.4) or CUDA."""
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def take_batches(data: Tensors, index_batches: Iterable[torch.Tensor],
                 teacher_logits: torch.Tensor | None = None) -> Iterator[Tensors]:
    """Training batches of resident ``data``: the rows of each index batch, with their teacher logits."""
    dense = dense_or_none(data)
    for idx in index_batches:
        b = {"ids": data["ids"][idx], "dense": None if dense is None else dense[idx], "label": data["label"][idx]}
        if teacher_logits is not None:
            b["teacher"] = teacher_logits[idx]
        yield b


def train_batches(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Tensors],
                  job: TrainJob, device: torch.device | str) -> tuple[float, int]:
    """One optimisation step per batch (``ids``, ``dense`` or None, ``label``, optional ``teacher``
    logits); returns (mean loss, samples seen)."""
    model.train()
    device = torch.device(device)
    total, seen = torch.zeros((), device=device), 0
    for b in batches:
        with autocast(device, job.amp):
            z = model(b["ids"], b["dense"])
        loss = distillation_loss(z.float(), b["label"], b.get("teacher"), job.alpha, job.kd_kind, job.temperature,
                                 job.loss_form)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = b["label"].shape[0]
        total += loss.detach() * n  # summed on the device: no host sync per step
        seen += n
    return float(total) / max(seen, 1), seen


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Tensors,
    index_batches: Iterator[torch.Tensor],
    teacher_logits: torch.Tensor | None,
    job: TrainJob,
) -> tuple[float, int]:
    """Run one pass of optimisation steps over resident ``data``; returns (mean loss, samples seen)."""
    return train_batches(model, optimizer, take_batches(data, index_batches, teacher_logits), job, data["ids"].device)


class StreamedTrain(Protocol):
    """A rank's training rows read anew every epoch (``crossadapt.train.shards``), as batches of
    tensors with the teacher's logits when distilling. ``epoch(seed)`` yields the same number of
    batches on every rank of a data-parallel run (DDP steps together)."""

    device: torch.device

    def epoch(self, seed: int) -> Iterator[Tensors]: ...


def apply_phase(model: nn.Module, phase: Phase) -> None:
    """Freeze or unfreeze the embedding tables for ``phase``."""
    set_embedding_trainable(model, not phase.freeze_embeddings)


def _same(x: Any) -> Any:
    return x


@dataclass
class Collective:
    """How the ranks of a data-parallel run agree; the defaults are one process (no DDP).

    ``wrap`` puts a model in DDP, ``sum``/``min`` all-reduce a number, ``broadcast`` sends rank 0's
    flag to every rank (see ``crossadapt.train.ray_train`` for the torch.distributed versions).
    """

    rank: int = 0
    world: int = 1
    wrap: Callable[[nn.Module], nn.Module] = _same
    sum: Callable[[float], float] = _same
    min: Callable[[float], float] = _same
    broadcast: Callable[[bool], bool] = _same


#: Called after every epoch with ``(record, state, model, optimizer, improved, done)``: ``improved``
#: (rank 0 only) when the validation score is the best so far, ``done`` after the job's last epoch.
EpochHook = Callable[[dict, dict, nn.Module, torch.optim.Optimizer, bool, bool], None]


def build_job_model(job: TrainJob, fm: FeatureMap, device: torch.device | str) -> nn.Module:
    """The job's model, seeded (identical on every rank), with the projected embeddings when given."""
    torch.manual_seed(job.seed)
    model = build_model(job.model, fm).to(device)
    if job.init_embeddings:
        init = torch.load(job.init_embeddings, map_location=device, weights_only=True)
        with torch.no_grad():
            model.embedding.table.weight.copy_(init["table"])
            if init.get("numeric") is not None and model.embedding.numeric is not None:
                model.embedding.numeric.copy_(init["numeric"])
    return model


def job_teacher(job: TrainJob, fm: FeatureMap, device: torch.device | str) -> nn.Module | None:
    """The job's frozen teacher on ``device``, or None without distillation."""
    if not (job.teacher_checkpoint and job.alpha > 0):
        return None
    return load_teacher_model(job.teacher_checkpoint, fm, device)  # a zoo checkpoint or an imported teacher


def shifted_teacher_logits(teacher: nn.Module, data: Tensors, job: TrainJob) -> torch.Tensor:
    """The frozen teacher's logits for ``data``'s rows. On a positive-rate sample they are moved by
    ``job.logit_shift`` onto the sample's prior, the one the labels of the sample have (see
    ``crossadapt.data.sampling``)."""
    z = predict_logits(teacher, data, amp=job.amp)
    return z + job.logit_shift if job.logit_shift else z


def job_teacher_logits(job: TrainJob, fm: FeatureMap, train: Tensors) -> torch.Tensor | None:
    """The frozen teacher's logits for every training row (computed once), or None without distillation."""
    teacher = job_teacher(job, fm, train["ids"].device)
    return None if teacher is None else shifted_teacher_logits(teacher, train, job)


def new_state() -> dict[str, Any]:
    """Progress of a job: ``(phase, epoch)`` is the next epoch to run; ``best_auc`` and
    ``best_logloss`` are the validation figures of the best epoch (``None`` before one, and AUC
    ``None`` when the validation rows hold one class), ``monitor`` the figure that chose it."""
    return {"phase": 0, "epoch": 0, "best_auc": None, "best_logloss": None, "best_score": None, "monitor": None,
            "bad_epochs": 0, "samples": 0, "seconds": 0.0, "history": []}


def validation_score(m: dict[str, Any]) -> tuple[str, float]:
    """What early stopping maximises: the validation AUC, or minus the LogLoss where the AUC is
    undefined (validation rows of one class; the labels are fixed, so one job always uses one).
    A NaN (a diverged model) scores ``-inf``: never better than a real epoch."""
    monitor, value = ("auc", m["auc"]) if m["auc"] is not None else ("logloss", -m["logloss"])
    return monitor, value if math.isfinite(value) else -math.inf


def _is_better(score: float, state: dict[str, Any]) -> bool:
    return state.get("best_score") is None or score > state["best_score"]


def run_phases(
    model: nn.Module,
    job: TrainJob,
    train: Tensors | StreamedTrain | Sequence[Tensors | StreamedTrain],
    valid: EvalData | None,
    teacher_logits: torch.Tensor | None | Sequence[torch.Tensor | None],
    coll: Collective = Collective(),
    saved: dict[str, Any] | None = None,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Train ``model`` through ``job.phases``: epochs of shuffled batches, rank-0 validation, early
    stopping in the last phase (``job.patience`` epochs without a better validation AUC, or LogLoss
    where the validation rows hold one class: see ``validation_score``).

    The one training loop of the project: Ray Train workers run it with DDP collectives, Tune
    trials and benchmarks in one process. ``train`` is resident tensors (``teacher_logits`` for
    their rows when distilling) or a ``StreamedTrain`` that supplies its batches and their teacher
    logits every epoch; one set for every phase, or a sequence of one per phase (a fresh sample per
    phase, ``phase_keys``). ``saved`` (``{"model", "optimizer", "state"}``) resumes where a
    checkpoint left off, with its weights and optimizer state at the start of the next epoch. For
    resident data that is exact: an epoch's batch order depends only on the seed, rank, phase and
    epoch. A streamed epoch's order also depends on which blocks reach which rank, so a resumed run
    repeats the interrupted epoch from its start over the same rows, possibly in another order.
    Validation scores the model with ``-job.logit_shift`` added to its logits (a positive-rate
    sample's correction). Returns the final state (history, samples, seconds, best AUC and LogLoss).
    """
    n_phases = len(job.phases)
    trains = list(train) if isinstance(train, (list, tuple)) else [train] * n_phases
    logits_per_phase = (list(teacher_logits) if isinstance(teacher_logits, (list, tuple))
                        else [teacher_logits] * n_phases)

    state, optimizer_state = new_state(), None
    if saved is not None:
        model.load_state_dict(saved["model"])
        state = saved["state"]
        optimizer_state = saved["optimizer"] if state["epoch"] > 0 else None  # it belongs to that phase

    gen = torch.Generator()
    heartbeat = Heartbeat()  # epoch lines by default only when epochs are long; all of them with --verbose
    while state["phase"] < len(job.phases):
        p = state["phase"]
        phase = job.phases[p]
        last_phase = p == len(job.phases) - 1
        train, phase_logits = trains[p], logits_per_phase[p]
        resident = isinstance(train, dict)
        if resident:
            device = train["ids"].device
            # DDP needs the same number of steps on every rank: the smallest shard decides.
            n_local = train["ids"].shape[0]
            n_min = int(coll.min(n_local))
            batch = max(1, min(job.batch_size, n_min))
            steps = max(1, -(-n_min // batch))  # ceil: the last batch may be partial, no sampled row is wasted
        else:
            device = train.device
        apply_phase(model, phase)
        wrapped = coll.wrap(model)  # rebuilt per phase: the set of trainable parameters changes
        opt = make_optimizer(model, phase.lr, job.weight_decay, phase.embed_lr, job.embed_weight_decay)
        if optimizer_state is not None:
            opt.load_state_dict(optimizer_state)
            optimizer_state = None
        stop = False
        while state["phase"] == p and not stop:
            e = state["epoch"]
            seed = job.seed * 1_000_003 + coll.rank * 7919 + p * 1000 + e  # same order after a resume
            te = time.perf_counter()
            if resident:
                gen.manual_seed(seed)
                loss, seen = train_steps(wrapped, opt, train, batches(n_local, batch, steps, gen, device),
                                         phase_logits, job)
            else:
                loss, seen = train_batches(wrapped, opt, train.epoch(seed), job, device)
            train_time = time.perf_counter() - te
            seen_all = int(coll.sum(seen))
            record = {"phase": p, "epoch": e, "loss": loss, "samples": seen_all, "seconds": train_time,
                      "samples_per_s": seen_all / max(train_time, 1e-9)}
            improved = False
            if coll.rank == 0 and valid is not None:
                m = evaluate(model, valid, logit_offset=-job.logit_shift)
                record.update({f"valid_{k}": v for k, v in m.items() if k != "n"})
                monitor, score = validation_score(m)
                if _is_better(score, state):
                    improved = True
                    state.update(best_score=score, best_auc=m["auc"], best_logloss=m["logloss"], monitor=monitor,
                                 bad_epochs=0)
                elif last_phase:
                    state["bad_epochs"] += 1
                shown = f"auc {m['auc']:.4f}" if m["auc"] is not None else f"auc undefined, logloss {m['logloss']:.4f}"
                _log.log(logging.INFO if heartbeat.due() else logging.DEBUG,
                         "%s phase %d epoch %d: loss %.4f valid %s (%.0f samples/s)", job.name, p, e, loss, shown,
                         record["samples_per_s"])
            stop = coll.broadcast(last_phase and state["bad_epochs"] >= job.patience)
            state["samples"] += seen_all
            state["seconds"] += time.perf_counter() - te
            state["history"].append(record)
            state["epoch"] = phase.epochs if stop else e + 1
            if state["epoch"] >= phase.epochs:
                state["phase"], state["epoch"] = p + 1, 0
            if on_epoch is not None:
                on_epoch(record, state, model, opt, improved, stop or state["phase"] >= len(job.phases))
        if stop:
            break
    return state
