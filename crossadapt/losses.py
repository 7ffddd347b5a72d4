"""Losses for supervised training and distillation (pure torch, no Ray).

``distillation_loss`` is, by ``form``:

- ``"additive"``: ``BCE(y, sigmoid(z_s)) + alpha * KD(z_s, z_t)`` (``alpha >= 0``);
- ``"convex"``: ``(1 - alpha) * BCE(y, sigmoid(z_s)) + alpha * KD(z_s, z_t)`` (``0 <= alpha <= 1``),
  the released CrossAdapt code's form (alpha = 0.7, T = 4 with the soft-label KD).

KD is either the binary soft-label cross entropy at temperature ``T`` (scaled by ``T^2``) or the
MSE between logits. For the same ``alpha > 0`` the convex form equals ``(1 - alpha)`` times the
additive one at ``alpha / (1 - alpha)``: same minimiser, gradients scaled by ``1 - alpha``.
All losses are means over the batch. Teacher logits are always detached: the teacher never
receives a gradient from the student's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as fn

from crossadapt.errors import ConfigError

KD_KINDS = ("bce", "mse")
LOSS_FORMS = ("additive", "convex")


def _same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    # mse_loss would broadcast (B,) against (B, 1) into (B, B) silently; refuse instead.
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def bce_with_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross entropy between ``sigmoid(logits)`` and 0/1 (or soft) ``labels``.

    Example:
        >>> bce_with_logits(torch.zeros(2), torch.tensor([0.0, 1.0]))  # ln 2
        tensor(0.6931)
    """
    _same_shape(logits, labels, "bce_with_logits(logits, labels)")
    return fn.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: str = "bce",
    temperature: float = 1.0,
) -> torch.Tensor:
    """Knowledge-distillation term between student and (detached) teacher logits.

    - ``"bce"``: ``T^2 * mean(BCE(sigmoid(z_t / T), sigmoid(z_s / T)))``, the binary soft-label
      cross entropy at temperature ``T``; the ``T^2`` keeps its gradient scale independent of ``T``
      (Hinton et al., 2015). It includes the teacher's entropy, so its minimum is not 0.
    - ``"mse"``: ``mean((z_s - z_t)^2)``; ``temperature`` is not used.

    Example:
        >>> kd_loss(torch.tensor([1.0]), torch.tensor([1.0]), kind="mse")
        tensor(0.)
    """
    _same_shape(student_logits, teacher_logits, "kd_loss(student_logits, teacher_logits)")
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if kind == "bce":
        if temperature <= 0:
            raise ConfigError(f"distill.temperature: must be > 0, got {temperature}")
        t = float(temperature)
        soft = torch.sigmoid(teacher_logits / t)
        return fn.binary_cross_entropy_with_logits(student_logits / t, soft) * (t * t)
    if kind == "mse":
        return fn.mse_loss(student_logits, teacher_logits)
    raise ConfigError(f"distill.kind: must be one of {list(KD_KINDS)}, got {kind!r}")


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    alpha: float = 1.0,
    kind: str = "bce",
    temperature: float = 1.0,
    form: str = "additive",
) -> torch.Tensor:
    """``BCE + alpha * KD`` (``form="additive"``) or ``(1 - alpha) * BCE + alpha * KD``
    (``form="convex"``); plain BCE (labels only) when ``teacher_logits`` is None or ``alpha`` is 0.

    Raises:
        ConfigError: unknown ``form``, or ``alpha`` outside [0, 1] for the convex form.

    Example::

        loss = distillation_loss(model(ids, dense), y, teacher(ids, dense), alpha=0.7, kind="bce",
                                 temperature=4.0, form="convex")
    """
    if form not in LOSS_FORMS:
        raise ConfigError(f"distill.loss_form: must be one of {list(LOSS_FORMS)}, got {form!r}")
    if form == "convex" and not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"distill.alpha: the convex loss form needs 0 <= alpha <= 1, got {alpha}")
    bce = bce_with_logits(student_logits, labels)
    if teacher_logits is None or alpha == 0:
        return bce
    kd = kd_loss(student_logits, teacher_logits, kind, temperature)
    if form == "convex":
        return (1.0 - alpha) * bce + alpha * kd
    return bce + alpha * kd
