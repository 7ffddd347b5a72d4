"""Losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from crossadapt.errors import ConfigError
from crossadapt.losses import LOSS_FORMS, bce_with_logits, distillation_loss, kd_loss

ZS = [1.0, -2.0, 0.5]  # student logits
ZT = [2.0, 0.0, -1.0]  # teacher logits
Y = [1.0, 0.0, 0.0]


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def soft_bce(p_target: float, z: float) -> float:
    """-(p ln sigmoid(z) + (1 - p) ln(1 - sigmoid(z)))"""
    q = sig(z)
    return -(p_target * math.log(q) + (1 - p_target) * math.log(1 - q))


def t(values: list[float], **kw) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, **kw)


def test_bce_by_hand() -> None:
    expected = sum(soft_bce(y, z) for y, z in zip(Y, ZS)) / 3
    assert bce_with_logits(t(ZS), t(Y)).item() == pytest.approx(expected, rel=1e-12)
    assert bce_with_logits(torch.zeros(4), torch.tensor([0.0, 1.0, 1.0, 0.0])).item() == pytest.approx(math.log(2))


def test_bce_accepts_integer_labels() -> None:
    assert bce_with_logits(t(ZS), torch.tensor([1, 0, 0])).item() == pytest.approx(
        bce_with_logits(t(ZS), t(Y)).item()
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_bce_is_t_squared_times_soft_bce(temperature: float) -> None:
    T = temperature
    manual = sum(soft_bce(sig(zt / T), zs / T) for zs, zt in zip(ZS, ZT)) / 3
    got = kd_loss(t(ZS), t(ZT), kind="bce", temperature=T).item()
    assert got == pytest.approx(T * T * manual, rel=1e-12)


def test_kd_bce_at_t2_hand_number() -> None:
    # Frozen value of the formula above at T=2, so a change of convention (no T^2, T on one side) shows.
    assert kd_loss(t(ZS), t(ZT), "bce", 2.0).item() == pytest.approx(2.8711515, abs=1e-6)


def test_kd_bce_gradient_by_hand() -> None:
    """d/dz_s of T^2 * BCE(sigmoid(z_t/T), sigmoid(z_s/T)) averaged over N is T*(sig(z_s/T) - sig(z_t/T))/N."""
    T = 2.0
    zs = t(ZS, requires_grad=True)
    kd_loss(zs, t(ZT), "bce", T).backward()
    expected = [T * (sig(a / T) - sig(b / T)) / 3 for a, b in zip(ZS, ZT)]
    assert zs.grad.tolist() == pytest.approx(expected, rel=1e-12)


def test_kd_bce_is_minimised_at_the_teacher() -> None:
    zs = t(ZT, requires_grad=True)
    kd_loss(zs, t(ZT), "bce", 3.0).backward()
    assert zs.grad.abs().max().item() < 1e-15


@pytest.mark.parametrize("kind", ["bce", "mse"])
def test_teacher_receives_no_gradient(kind: str) -> None:
    zs = t(ZS, requires_grad=True)
    zt = t(ZT, requires_grad=True)
    distillation_loss(zs, t(Y), zt, alpha=1.0, kind=kind, temperature=2.0).backward()
    assert zt.grad is None
    assert zs.grad is not None and zs.grad.abs().sum() > 0


def test_kd_mse_by_hand_and_ignores_temperature() -> None:
    expected = ((1 - 2) ** 2 + (-2 - 0) ** 2 + (0.5 + 1) ** 2) / 3  # = 7.25 / 3
    assert kd_loss(t(ZS), t(ZT), "mse").item() == pytest.approx(expected)
    assert kd_loss(t(ZS), t(ZT), "mse", temperature=5.0).item() == pytest.approx(expected)


def test_distillation_loss_composition() -> None:
    bce = bce_with_logits(t(ZS), t(Y)).item()
    kd = kd_loss(t(ZS), t(ZT), "bce", 2.0).item()
    assert distillation_loss(t(ZS), t(Y)).item() == pytest.approx(bce)
    assert distillation_loss(t(ZS), t(Y), None, alpha=3.0).item() == pytest.approx(bce)
    assert distillation_loss(t(ZS), t(Y), t(ZT), alpha=0.0).item() == pytest.approx(bce)
    got = distillation_loss(t(ZS), t(Y), t(ZT), alpha=0.5, kind="bce", temperature=2.0).item()
    assert got == pytest.approx(bce + 0.5 * kd, rel=1e-12)
    mse = 7.25 / 3
    assert distillation_loss(t(ZS), t(Y), t(ZT), alpha=2.0, kind="mse").item() == pytest.approx(bce + 2 * mse)


def test_bad_kind_temperature_and_shapes() -> None:
    with pytest.raises(ConfigError, match="kind"):
        kd_loss(t(ZS), t(ZT), kind="kl")
    with pytest.raises(ConfigError, match="temperature"):
        kd_loss(t(ZS), t(ZT), kind="bce", temperature=0.0)
    with pytest.raises(ValueError, match=r"\(3,\) vs \(3, 1\)"):
        kd_loss(t(ZS), t(ZT).unsqueeze(1), kind="mse")
    with pytest.raises(ValueError, match="shapes differ"):
        bce_with_logits(t(ZS), t(Y[:2]))


def test_float32_student_with_float64_teacher() -> None:
    z = torch.tensor(ZS)
    assert kd_loss(z, t(ZT), "bce", 2.0).dtype == torch.float32


# ---------------------------------------------------------------- loss forms


def test_convex_form_is_the_released_codes_loss_by_hand() -> None:
    """(1 - a) * BCE(y) + a * T^2 * softBCE(sigmoid(z_t / T), z_s / T) at the released a = 0.7, T = 4."""
    a, T = 0.7, 4.0
    bce = sum(soft_bce(y, z) for y, z in zip(Y, ZS)) / 3
    kd = T * T * sum(soft_bce(sig(zt / T), zs / T) for zs, zt in zip(ZS, ZT)) / 3
    got = distillation_loss(t(ZS), t(Y), t(ZT), alpha=a, kind="bce", temperature=T, form="convex").item()
    assert got == pytest.approx((1 - a) * bce + a * kd, rel=1e-12)
    # Frozen value of that formula, so a change of convention (no T^2, weights swapped) shows.
    assert got == pytest.approx(7.9712446, abs=1e-6)


def test_convex_form_with_mse_and_its_endpoints() -> None:
    bce = bce_with_logits(t(ZS), t(Y)).item()
    mse = 7.25 / 3
    got = distillation_loss(t(ZS), t(Y), t(ZT), alpha=0.25, kind="mse", form="convex").item()
    assert got == pytest.approx(0.75 * bce + 0.25 * mse, rel=1e-12)
    assert distillation_loss(t(ZS), t(Y), t(ZT), alpha=0.0, form="convex").item() == pytest.approx(bce, rel=1e-12)
    assert distillation_loss(t(ZS), t(Y), t(ZT), alpha=1.0, kind="mse", form="convex").item() == pytest.approx(
        mse, rel=1e-12)
    # No teacher: plain BCE in both forms (a scratch student is not scaled by 1 - alpha).
    assert distillation_loss(t(ZS), t(Y), None, alpha=0.7, form="convex").item() == pytest.approx(bce, rel=1e-12)


def test_convex_is_a_rescaled_additive_with_the_same_gradient_direction() -> None:
    """(1 - a) BCE + a KD = (1 - a) * (BCE + a / (1 - a) KD): gradients differ by the factor 1 - a."""
    a = 0.7
    grads = []
    for form, alpha in (("convex", a), ("additive", a / (1 - a))):
        zs = t(ZS, requires_grad=True)
        distillation_loss(zs, t(Y), t(ZT), alpha=alpha, kind="bce", temperature=4.0, form=form).backward()
        grads.append(zs.grad)
    assert torch.allclose(grads[0], (1 - a) * grads[1], rtol=1e-12)


def test_loss_form_errors() -> None:
    assert LOSS_FORMS == ("additive", "convex")
    with pytest.raises(ConfigError, match="distill.loss_form"):
        distillation_loss(t(ZS), t(Y), t(ZT), form="mixed")
    with pytest.raises(ConfigError, match="0 <= alpha <= 1"):
        distillation_loss(t(ZS), t(Y), t(ZT), alpha=1.5, form="convex")
    # The additive form accepts alpha > 1 as before.
    assert math.isfinite(distillation_loss(t(ZS), t(Y), t(ZT), alpha=1.5).item())
