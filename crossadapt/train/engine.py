"""Pure-torch training pieces shared by Ray Train workers, online actors and benchmarks (no Ray here).

A ``TrainJob`` is the whole, typed description of one supervised or distillation run: which model,
which phases (a phase may freeze the embeddings), which teacher, which loss.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.data.arrays import Arrays
from crossadapt.losses import distillation_loss
from crossadapt.metrics import evaluate_predictions
from crossadapt.models.embedding import set_embedding_trainable

Tensors = dict[str, torch.Tensor]


@dataclass
class Phase:
    """A stretch of epochs with one learning rate; ``freeze_embeddings`` keeps the tables fixed."""

    epochs: int
    lr: float
    freeze_embeddings: bool = False


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
    teacher_checkpoint: str = ""
    alpha: float = 0.0
    temperature: float = 1.0
    kd_kind: str = "bce"
    init_embeddings: str = ""
    amp: str = "none"
    train_key: str = "train"
    valid_key: str = "valid"
    checkpoint_interval_s: float = 30.0  # 0: a resumable checkpoint after every epoch


def to_tensors(a: Arrays, device: torch.device | str = "cpu") -> Tensors:
    """Arrays dict to tensors on ``device`` (ids int64, dense and label float32)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in a.items()}


def autocast(device: torch.device, amp: str):
    """bf16 autocast when asked for, a no-op context otherwise."""
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _dense(t: Tensors) -> torch.Tensor | None:
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
    for s in range(0, n, batch_size):
        dense = _dense(data)
        with autocast(device, amp):
            z = model(data["ids"][s : s + batch_size], None if dense is None else dense[s : s + batch_size])
        out.append(z.float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, device=device)


def evaluate(model: nn.Module, data: Tensors | Arrays, batch_size: int = 65536) -> dict[str, float]:
    """AUC, LogLoss and bias of ``model`` on all rows of ``data``."""
    if isinstance(data["ids"], np.ndarray):
        device = next(model.parameters()).device
        data = to_tensors(data, device)  # type: ignore[arg-type]
    p = torch.sigmoid(predict_logits(model, data, batch_size)).double().cpu().numpy()
    return evaluate_predictions(data["label"].cpu().numpy(), p)


def batches(n: int, batch_size: int, steps: int, generator: torch.Generator, device) -> Iterator[torch.Tensor]:
    """``steps`` index batches of a fresh random permutation of ``range(n)``."""
    perm = torch.randperm(n, generator=generator).to(device)
    for i in range(steps):
        yield perm[i * batch_size : (i + 1) * batch_size]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam over the parameters that currently require grad."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Tensors,
    index_batches: Iterator[torch.Tensor],
    teacher_logits: torch.Tensor | None,
    job: TrainJob,
) -> tuple[float, int]:
    """Run one pass of optimisation steps; returns (mean loss, samples seen)."""
    model.train()
    device = data["ids"].device
    dense = _dense(data)
    total, seen = 0.0, 0
    for idx in index_batches:
        with autocast(device, job.amp):
            z = model(data["ids"][idx], None if dense is None else dense[idx])
        t = None if teacher_logits is None else teacher_logits[idx]
        loss = distillation_loss(z.float(), data["label"][idx], t, job.alpha, job.kd_kind, job.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * idx.numel()
        seen += idx.numel()
    return total / max(seen, 1), seen


def apply_phase(model: nn.Module, phase: Phase) -> None:
    """Freeze or unfreeze the embedding tables for ``phase``."""
    set_embedding_trainable(model, not phase.freeze_embeddings)
