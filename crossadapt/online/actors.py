"""The online actor pair (Ray glue around ``crossadapt.online.learner``).

:class:`StudentWorker` and :class:`TeacherWorker` are plain classes (usable and testable without
Ray); :data:`StudentActor` and :data:`TeacherActor` are their Ray actors. What travels between
them, always through the object store and never through the driver:

- every step: the batch (put once by the coordinator, read by both actors) and the teacher's soft
  labels for it (a float32 vector the teacher returns and the student receives as an argument);
  consecutive steps travel together, ``online.steps_per_call`` at a time, never across an exchange;
- every ``tau`` steps (only when ``teacher_alpha > 0``): the student's weights (a CPU state dict
  from :meth:`StudentWorker.publish_weights`), which the teacher loads into its copy of the student
  architecture before its update, to distil from the student.

The teacher's own weights never leave it except in checkpoints.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

import numpy as np
import ray
import torch

from crossadapt.config import OnlineConfig, from_dict
from crossadapt.data.arrays import Arrays
from crossadapt.featuremap import FeatureMap
from crossadapt.models import build_model, load_checkpoint
from crossadapt.models.teacher_import import load_teacher_model, teacher_trainable
from crossadapt.online.learner import Batch, OnlineLearner, PeriodicTeacher


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _Worker:
    """What both actors answer: evaluation, state for the coordinator's commits, diagnostics."""

    learner: OnlineLearner
    #: Seconds this actor spent on the weight exchange (copying weights out, or loading them in).
    exchange_seconds: float = 0.0

    def exchange_time(self) -> float:
        return self.exchange_seconds

    def evaluate(self, data: Arrays) -> dict[str, float]:
        return self.learner.evaluate(data)

    def scores(self, data: Arrays) -> np.ndarray:
        return self.learner.scores(data)

    def get_state(self) -> dict[str, Any]:
        return self.learner.state_dict()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.learner.load_state_dict(state)

    def version(self) -> int:
        return self.learner.version

    def pid(self) -> int:
        """The actor's process id (diagnostics, fault tests)."""
        return os.getpid()


class StudentWorker(_Worker):
    """The student: one optimizer step per batch on labels plus (optionally) soft labels.

    Args:
        checkpoint: the student's starting checkpoint (its feature map must equal ``feature_map``).
        feature_map: the stream's feature map (``FeatureMap.to_dict()``).
        online: ``OnlineConfig`` as a dict (learning rate, alpha, KD kind, temperature).
        kd: use the soft labels passed to :meth:`train_step` (``False``: labels only).
        device: ``"auto"`` (CUDA when the actor has a GPU), ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, checkpoint: str, feature_map: dict, online: dict, kd: bool = True, seed: int = 0,
                 device: str = "auto") -> None:
        torch.manual_seed(seed)
        cfg = from_dict(OnlineConfig, online, prefix="online")
        fm = FeatureMap.from_dict(feature_map)
        model = load_checkpoint(checkpoint, expected_feature_map=fm).model
        self.alpha = cfg.alpha if kd else 0.0
        self.learner = OnlineLearner(model, cfg.student_lr, device=_device(device), kd_kind=cfg.kd_kind,
                                     temperature=cfg.temperature, embed_lr=cfg.student_embed_lr,
                                     loss_form=cfg.loss_form, weight_decay=cfg.weight_decay,
                                     embed_weight_decay=cfg.embed_weight_decay)

    def train_step(self, batch: Batch, teacher_logits: np.ndarray | None = None) -> float:
        """One step; ``teacher_logits`` is ignored when the student does not distil."""
        return self.learner.step(batch, teacher_logits if self.alpha > 0 else None, self.alpha)

    def train_steps(self, batches: list[Batch], teacher_logits: list[np.ndarray] | None = None) -> list[float]:
        """:meth:`train_step` on each batch in order (one call for several steps)."""
        zs = teacher_logits if teacher_logits is not None else [None] * len(batches)
        return [self.train_step(b, z) for b, z in zip(batches, zs)]

    def publish_weights(self) -> dict[str, torch.Tensor]:
        """The current weights as a CPU state dict (Ray stores the return value in the object store)."""
        t0 = time.perf_counter()
        w = self.learner.weights()
        self.exchange_seconds += time.perf_counter() - t0
        return w


class TeacherWorker(_Worker):
    """The teacher: soft labels for every batch; its weights change only in :meth:`update`.

    Args:
        checkpoint: the teacher's checkpoint.
        feature_map, online, seed, device: as for :class:`StudentWorker`.
        updates: ``False`` for a frozen teacher (batches are then not kept for updates). An imported
            teacher that is not trainable (``crossadapt.models.teacher_import.teacher_trainable``)
            is frozen whatever this says: its ``update`` then changes nothing and its version stays 0.
        student_checkpoint: the student's checkpoint, giving the architecture the student's
            weights are loaded into when ``online.teacher_alpha > 0``.
    """

    def __init__(self, checkpoint: str, feature_map: dict, online: dict, updates: bool = True,
                 student_checkpoint: str = "", seed: int = 0, device: str = "auto") -> None:
        torch.manual_seed(seed)
        cfg = from_dict(OnlineConfig, online, prefix="online")
        fm = FeatureMap.from_dict(feature_map)
        model = load_teacher_model(checkpoint, fm)
        updates = updates and teacher_trainable(checkpoint)  # an imported program without parameters stays frozen
        peer = None
        if updates and cfg.teacher_alpha > 0 and student_checkpoint:
            ck = load_checkpoint(student_checkpoint, expected_feature_map=fm)
            peer = build_model(ck.model_cfg, fm)
        self.updates = updates
        self.learner = PeriodicTeacher(model, cfg.teacher_lr, peer=peer, peer_alpha=cfg.teacher_alpha,
                                       device=_device(device), kd_kind=cfg.kd_kind, temperature=cfg.temperature,
                                       embed_lr=cfg.teacher_embed_lr, loss_form=cfg.loss_form,
                                       weight_decay=cfg.weight_decay, embed_weight_decay=cfg.embed_weight_decay)

    def needs_student(self) -> bool:
        """Whether the student's weights are needed before an update."""
        return self.learner.peer_alpha > 0

    def soft_labels(self, batch: Batch) -> np.ndarray:
        """Logits for ``batch`` from the current weights (kept for the next update unless frozen)."""
        return self.learner.serve(batch) if self.updates else self.learner.logits(batch)

    def soft_labels_many(self, batches: list[Batch]) -> list[np.ndarray]:
        """:meth:`soft_labels` for each batch in order (one call for several steps)."""
        return [self.soft_labels(b) for b in batches]

    def receive_student(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Load the student's published weights (Ray resolves the reference before this runs)."""
        t0 = time.perf_counter()
        self.learner.load_peer(weights)
        self.exchange_seconds += time.perf_counter() - t0

    def update(self) -> int:
        """Train on the batches served since the last update; returns the new version."""
        return self.learner.update()

    def served_versions(self) -> list[int]:
        """The teacher version that labelled each batch served so far, in order."""
        return list(self.learner.served_versions)

    def weights_digest(self) -> float:
        """A cheap fingerprint of the weights (sum of all parameters): tests check when it changes."""
        with torch.no_grad():
            return float(sum(p.double().sum() for p in self.learner.model.parameters()))


#: Ray actors of the two workers (resources are set with ``.options`` by the coordinator).
StudentActor = ray.remote(StudentWorker)
TeacherActor = ray.remote(TeacherWorker)
