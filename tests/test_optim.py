"""``engine.make_optimizer``: separate learning rate and weight decay for the embedding table.

Adam's first step moves every parameter by ``lr * m / (sqrt(v) + eps)`` with ``m = g`` and
``v = g^2`` after bias correction, i.e. by ``lr * g / (|g| + eps)``: ``lr * sign(g)`` up to a
relative ``eps / |g|``. With ``|g| >= 0.5`` and ``eps = 1e-8`` that is 2e-8, so in float64 the
moves are checked to 1e-7 relative (float64 rounding of ``p - lr`` is ~1e-16).
"""

from __future__ import annotations

import pytest
import torch

from crossadapt.config import ModelConfig
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.models import build_model
from crossadapt.models.embedding import embedding_parameters, set_embedding_trainable
from crossadapt.train.engine import make_optimizer

REL = 1e-7


@pytest.fixture()
def model() -> torch.nn.Module:
    fm = FeatureMap("toy", (FieldSpec("a", vocab_size=7), FieldSpec("b", vocab_size=5), FieldSpec("x", type="numeric")))
    torch.manual_seed(0)
    return build_model(ModelConfig(name="deepfm", embed_dim=4, hidden_units=(8,)), fm).double()


def _known_gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A gradient of magnitude in [0.5, 1.5) and random sign on every parameter."""
    g = torch.Generator().manual_seed(1)
    grads = {}
    for name, p in model.named_parameters():
        mag = 0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype)
        sign = torch.where(torch.rand(p.shape, generator=g) < 0.5, -1.0, 1.0).to(p.dtype)
        grads[name] = p.grad = mag * sign
    return grads


def _assert_moved(got: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    # Not torch.testing.assert_close: its first call costs seconds of imports.
    assert torch.all((got - expected).abs() <= REL * expected.abs()), (name, got, expected)


def _moves(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def test_first_step_applies_the_two_learning_rates(model: torch.nn.Module) -> None:
    opt = make_optimizer(model, lr=1e-3, embed_lr=0.1)  # the released code's settings
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [("dense", 1e-3), ("embedding", 0.1)]
    assert opt.defaults["fused"] is True
    emb = {id(p) for p in embedding_parameters(model)}
    grads = _known_gradients(model)
    moves = _moves(model, opt)
    seen = {"embedding": 0, "dense": 0}
    for name, p in model.named_parameters():
        lr = 0.1 if id(p) in emb else 1e-3
        seen["embedding" if id(p) in emb else "dense"] += 1
        _assert_moved(moves[name], -lr * grads[name].sign(), name)
    # the shared table and numeric vectors at 0.1; the first-order table, FM-free tower and biases at 1e-3
    assert seen == {"embedding": 2, "dense": len(list(model.parameters())) - 2}


def test_separate_weight_decay_on_a_zero_gradient(model: torch.nn.Module) -> None:
    """Zero gradients: only L2 decay moves a parameter, by ``lr * sign(wd * p)``; no decay, no move."""
    with torch.no_grad():
        for p in model.parameters():  # keep |wd * p| >= 0.5 so eps stays negligible
            p.copy_(torch.where(p >= 0, 1.0, -1.0) * (1.0 + p.abs()))
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.0, embed_weight_decay=0.5)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in opt.param_groups] == [
        ("dense", 1e-3, 0.0), ("embedding", 1e-3, 0.5)]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    emb = {id(p) for p in embedding_parameters(model)}
    signs = {n: p.detach().sign() for n, p in model.named_parameters()}
    moves = _moves(model, opt)
    for name, p in model.named_parameters():
        expected = -1e-3 * signs[name] if id(p) in emb else torch.zeros_like(p)
        _assert_moved(moves[name], expected, name)


def test_default_is_one_group_and_frozen_embeddings_leave_theirs_out(model: torch.nn.Module) -> None:
    opt = make_optimizer(model, lr=2e-3)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == 2e-3
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    set_embedding_trainable(model, False)
    opt = make_optimizer(model, lr=2e-3, embed_lr=0.1)
    assert [g["name"] for g in opt.param_groups] == ["dense"]
    assert not any(p is q for p in embedding_parameters(model) for q in opt.param_groups[0]["params"])


def test_bad_embedding_settings_name_the_key(model: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="optim.embed_lr"):
        make_optimizer(model, lr=1e-3, embed_lr=0.0)
    with pytest.raises(ConfigError, match="optim.embed_weight_decay"):
        make_optimizer(model, lr=1e-3, embed_weight_decay=-1.0)
