"""Online learners in pure torch (no Ray): what the actors of ``crossadapt.online.actors`` run.

- :class:`OnlineLearner` holds a model and its Adam optimizer and takes one step per batch on
  ``BCE(y) + alpha * KD(z, z_peer)``; it is the student.
- :class:`PeriodicTeacher` serves soft labels for every batch and remembers the batches it served;
  its weights change only in :meth:`PeriodicTeacher.update`, which trains on those batches (one
  step each) and then forgets them. Whoever calls ``update`` every ``tau`` steps makes it
  asymmetric co-distillation; calling it every step makes it synchronous.

Batches are the arrays dicts of the data contract (``ids`` int64 (B, F), ``dense`` float32 (B, D),
``label`` float32 (B,)), as numpy arrays: that is what travels through Ray's object store.

Example:
    >>> learner = OnlineLearner(model, lr=5e-4)                           # doctest: +SKIP
    >>> teacher = PeriodicTeacher(teacher_model, lr=5e-4)                 # doctest: +SKIP
    >>> z = teacher.serve(batch); learner.step(batch, z, alpha=0.5)      # doctest: +SKIP
    >>> teacher.update()  # after tau steps                               # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from crossadapt.data.arrays import Arrays
from crossadapt.losses import distillation_loss
from crossadapt.train import engine

Batch = Mapping[str, np.ndarray]


BATCH_KEYS = ("ids", "dense", "label")


def _tensors(batch: Batch, device: torch.device, copy: bool = True) -> engine.Tensors:
    # np.array copies: arrays from the object store are read-only, torch wants writable memory.
    # ``copy=False`` for arrays this process already owns (the teacher's kept batches).
    return {k: torch.from_numpy(np.array(batch[k]) if copy else batch[k]).to(device) for k in BATCH_KEYS}


class OnlineLearner:
    """A model with its optimizer, trained one batch at a time.

    Args:
        model: the network (moved to ``device``; trained in place).
        lr, weight_decay: Adam settings.
        device: where the model runs.
        kd_kind, temperature: the KD term (see ``crossadapt.losses.kd_loss``).
        embed_lr, embed_weight_decay: the embedding tables' Adam settings (None: ``lr`` /
            ``weight_decay``; ``engine.make_optimizer``).
        loss_form: ``"additive"`` or ``"convex"`` (``crossadapt.losses.distillation_loss``).

    Attributes:
        version: how many times the weights changed (steps for the student, updates for the teacher).
    """

    def __init__(self, model: nn.Module, lr: float, weight_decay: float = 0.0, device: str | torch.device = "cpu",
                 kd_kind: str = "mse", temperature: float = 1.0, embed_lr: float | None = None,
                 loss_form: str = "additive", embed_weight_decay: float | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.model.train()
        for p in self.model.parameters():
            p.requires_grad_(True)  # a checkpoint from phase 1 may still carry frozen embeddings
        # A model without parameters (an imported teacher frozen into constants) serves, never steps.
        self.opt = engine.make_optimizer(self.model, lr, weight_decay, embed_lr, embed_weight_decay) \
            if any(True for _ in self.model.parameters()) else None
        self.kd_kind = kd_kind
        self.temperature = temperature
        self.loss_form = loss_form
        self.version = 0

    def logits(self, batch: Batch) -> np.ndarray:
        """Logits (float32, shape (B,)) of the current weights; the weights do not change."""
        return self._logits(_tensors(batch, self.device))

    @torch.no_grad()
    def _logits(self, t: engine.Tensors) -> np.ndarray:
        return engine.predict_logits(self.model, t).cpu().numpy()

    def _step(self, t: engine.Tensors, peer_logits: np.ndarray | None, alpha: float) -> float:
        self.model.train()
        z = self.model(t["ids"], engine.dense_or_none(t))
        peer = None if peer_logits is None else torch.from_numpy(np.array(peer_logits, dtype=np.float32)).to(self.device)
        loss = distillation_loss(z, t["label"], peer, alpha, self.kd_kind, self.temperature, self.loss_form)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.version += 1
        return float(loss.detach())

    def step(self, batch: Batch, peer_logits: np.ndarray | None = None, alpha: float = 0.0) -> float:
        """One optimizer step on ``batch`` with optional soft labels; returns the loss."""
        return self._step(_tensors(batch, self.device), peer_logits, alpha)

    def evaluate(self, data: Arrays) -> dict[str, float]:
        """AUC, LogLoss and bias on ``data`` (the weights do not change)."""
        return engine.evaluate(self.model, _tensors(data, self.device))

    def scores(self, data: Arrays) -> np.ndarray:
        """Click probabilities (float32) of every row of ``data`` (the weights do not change); a chunk
        of ``engine.predict_logits``' batch size gives the scores ``evaluate`` sees for those rows."""
        return engine.predict_proba(self.model, _tensors(data, self.device))

    def weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the model weights (what is sent to a peer)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer state and version: enough to continue exactly (CPU tensors)."""
        if self.opt is None:
            return {"model": self.weights(), "optimizer": None, "version": self.version}
        opt = self.opt.state_dict()
        # Copies, not views: Adam's load_state_dict keeps the tensors it is given, and a view of the
        # live moments would keep changing under whoever holds this state.
        opt_cpu = {"state": {i: {k: (v.detach().to("cpu", copy=True) if torch.is_tensor(v) else v)
                                 for k, v in s.items()}
                             for i, s in opt["state"].items()},
                   "param_groups": copy.deepcopy(opt["param_groups"])}
        return {"model": self.weights(), "optimizer": opt_cpu, "version": self.version}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        if self.opt is not None:
            self.opt.load_state_dict(state["optimizer"])
        self.version = int(state["version"])


class PeriodicTeacher(OnlineLearner):
    """A teacher that serves every batch and learns only when :meth:`update` is called.

    ``update`` takes one step per batch served since the last update, on
    ``BCE(y) + peer_alpha * KD(z_teacher, z_student)`` where ``z_student`` comes from ``peer`` (a
    model holding the student's latest weights, see :meth:`load_peer`). Between two updates the
    weights, and so the soft labels, are fixed: ``version`` counts the updates.
    """

    def __init__(self, model: nn.Module, lr: float, peer: nn.Module | None = None, peer_alpha: float = 0.0,
                 **kw: Any) -> None:
        super().__init__(model, lr, **kw)
        self.peer = None if peer is None else peer.to(self.device).eval()
        self.peer_alpha = peer_alpha if peer is not None else 0.0
        self.pending: list[dict[str, np.ndarray]] = []
        #: The version that labelled each batch served, in order (a few bytes per step; tests and
        #: diagnostics read it to see when the weights changed).
        self.served_versions: list[int] = []

    def serve(self, batch: Batch) -> np.ndarray:
        """Soft labels (logits) for ``batch`` from the current weights; the batch is kept for the next update."""
        kept = {k: np.array(batch[k]) for k in BATCH_KEYS}  # the one copy: served now, trained on later
        self.pending.append(kept)
        self.served_versions.append(self.version)
        return self._logits(_tensors(kept, self.device, copy=False))

    def load_peer(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Take the student's latest weights (used only by the next :meth:`update`)."""
        if self.peer is None:
            raise RuntimeError("PeriodicTeacher.load_peer: built without a peer model")
        self.peer.load_state_dict(weights)

    def update(self) -> int:
        """Train on the batches served since the last update, then forget them; returns ``version``."""
        if not self.pending:
            return self.version
        for batch in self.pending:
            t = _tensors(batch, self.device, copy=False)
            z_peer = None
            if self.peer_alpha > 0:
                z_peer = engine.predict_logits(self.peer, t).cpu().numpy()
            self._step(t, z_peer, self.peer_alpha)
        self.version += 1 - len(self.pending)  # one version per update, not per inner step
        self.pending = []
        return self.version

    def state_dict(self) -> dict[str, Any]:
        """Learner state plus the batches served since the last update (as tensors, so that the
        stream checkpoint loads with ``weights_only=True``)."""
        state = super().state_dict()
        state["pending"] = [{k: torch.from_numpy(v) for k, v in b.items()} for b in self.pending]
        state["served_versions"] = list(self.served_versions)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.pending = [{k: np.asarray(v).copy() for k, v in b.items()} for b in state.get("pending", [])]
        self.served_versions = list(state.get("served_versions", []))
