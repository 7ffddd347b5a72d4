"""Model names (as written in configs) to classes; ``build_model`` is the one way to make a model.

A name is a zoo model (``MODEL_REGISTRY``) or a user class as ``package.module:ClassName``, imported
with ``importlib`` on that explicit form only (no ``eval``) and held to the zoo's interface by
:func:`check_model` before Ray starts. Ray workers import the same module: it must be importable
from the folder the command runs in (shipped as the job's working directory) or from PYTHONPATH.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys

import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.models.autoint import AutoInt
from crossadapt.models.dcn import DCN
from crossadapt.models.dcnv2 import DCNv2
from crossadapt.models.deepfm import DeepFM
from crossadapt.models.dnn import DNN
from crossadapt.models.fibinet import FiBiNET
from crossadapt.models.lr import LR
from crossadapt.models.xdeepfm import XDeepFM

#: Every model takes ``(feature_map, cfg: ModelConfig)`` and maps ``(ids, dense)`` to logits (B,).
MODEL_REGISTRY: dict[str, type[nn.Module]] = {
    "lr": LR,
    "dnn": DNN,
    "deepfm": DeepFM,
    "dcn": DCN,
    "dcnv2": DCNv2,
    "xdeepfm": XDeepFM,
    "autoint": AutoInt,
    "fibinet": FiBiNET,
}


#: ``package.module:Class``: a user model class, imported with importlib (never ``eval``).
USER_MODEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)$")


def is_user_model(name: str) -> bool:
    """Whether ``name`` names a user class (``module:Class``) rather than a zoo model."""
    return ":" in name


def _import_module(module: str, key: str, name: str):
    """``module``, looked up as Ray workers do: ``sys.path`` first, then the current folder (a
    ``crossadapt`` console script has the folder of its executable on ``sys.path``, not the one it
    runs in; Ray puts the driver's folder, or ``--working-dir``, on its workers' path)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        cwd = os.getcwd()
        if e.name != top or cwd in sys.path:
            raise ConfigError(f"{key}: cannot import {name!r}: {e}") from None
        sys.path.append(cwd)  # last: a module of this folder never shadows an installed one
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as e2:
            raise ConfigError(f"{key}: cannot import {name!r}: {e2}; the module must be importable from the folder "
                              "crossadapt runs in (Ray ships it to the workers as the job's working directory) or "
                              "from PYTHONPATH") from None
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing
        raise ConfigError(f"{key}: importing {module!r} for {name!r} raised {type(e).__name__}: {e}") from e


def user_model_class(name: str, key: str = "model.name") -> type[nn.Module]:
    """The class named ``package.module:Class``, checked to be an ``nn.Module`` whose constructor
    takes ``(feature_map, cfg)`` like the zoo's. ``ConfigError`` naming ``key`` otherwise."""
    m = USER_MODEL.match(name)
    if not m:
        raise ConfigError(f"{key}: {name!r} is neither a zoo model ({sorted(MODEL_REGISTRY)}) nor of the form "
                          "'package.module:ClassName'")
    module = _import_module(m.group(1), key, name)
    cls = getattr(module, m.group(2), None)
    if cls is None:
        raise ConfigError(f"{key}: module {m.group(1)!r} ({getattr(module, '__file__', '?')}) has no {m.group(2)!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"{key}: {name!r} is not a torch.nn.Module subclass (got {type(cls).__name__})")
    try:
        inspect.signature(cls).bind(object(), object())
    except TypeError:
        raise ConfigError(f"{key}: {name!r} must be constructed as {m.group(2)}(feature_map, cfg) like the zoo's "
                          f"models; its constructor is {m.group(2)}{inspect.signature(cls)}") from None
    return cls


def model_class(name: str, key: str = "model.name") -> type[nn.Module]:
    """The class of model ``name``: a zoo name (``MODEL_REGISTRY``) or ``package.module:Class``."""
    if is_user_model(name):
        return user_model_class(name, key)
    cls = MODEL_REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"{key}: unknown model {name!r}; valid names: {sorted(MODEL_REGISTRY)} or "
                          "'package.module:ClassName' for your own class")
    return cls


def build_model(cfg: ModelConfig, feature_map: FeatureMap, key: str = "model.name") -> nn.Module:
    """Build the model ``cfg.name`` for ``feature_map`` (freshly initialised, in train mode).

    ``cfg.name`` is a zoo name or ``package.module:Class``: a user class built as
    ``Class(feature_map, cfg)``, which must follow the zoo's interface (see :func:`check_model`).

    Raises:
        ConfigError: unknown ``cfg.name`` (the message lists the valid names), a user class that
            cannot be imported or constructed, or a hyper-parameter the model cannot use (the
            message names the ``model.<key>``).

    Example::

        model = build_model(ModelConfig(name="dcnv2", embed_dim=32), feature_map)
        logits = model(ids, dense)  # (B,)
    """
    cls = model_class(cfg.name, key)
    if not is_user_model(cfg.name):
        return _with_offset(cls(feature_map, cfg), cfg.logit_offset)
    try:
        model = cls(feature_map, cfg)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's constructor raised
        raise ConfigError(f"{key}: {cfg.name}(feature_map, cfg) raised {type(e).__name__}: {e}") from e
    return _with_offset(model, cfg.logit_offset)


class LogitOffset:
    """Forward hook adding a constant to a model's logits (``ModelConfig.logit_offset``)."""

    def __init__(self, offset: float) -> None:
        self.offset = float(offset)

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + self.offset


def _with_offset(model: nn.Module, offset: float) -> nn.Module:
    """``model`` whose every forward adds ``offset`` to its logits (nothing when 0): the offset lives in
    the config saved with every checkpoint, so each rebuild of the model predicts the same."""
    if offset:
        model.register_forward_hook(LogitOffset(offset))
    return model


def check_model(cfg: ModelConfig, feature_map: FeatureMap, key: str = "model") -> None:
    """Raise ``ConfigError`` (naming ``key``) unless ``cfg``'s model follows the zoo's interface.

    The interface: ``Class(feature_map, cfg)``; an attribute ``embedding``, the shared
    :class:`~crossadapt.models.embedding.FeatureEmbedding` of ``feature_map`` with
    ``cfg.embed_dim`` (the projection writes its table, phase 1 freezes it); ``forward(ids int64
    (B, F_cat), dense float32 (B, F_num) or None)`` returning float logits of shape ``(B,)``.
    Checked by building the model and running a probe batch (two batch sizes), before Ray starts.
    """
    from crossadapt.models.embedding import FeatureEmbedding

    model = build_model(cfg, feature_map, f"{key}.name")
    emb = getattr(model, "embedding", None)
    if not isinstance(emb, FeatureEmbedding):
        raise ConfigError(f"{key}.name: {cfg.name} needs an attribute `embedding` that is the shared "
                          "crossadapt.models.embedding.FeatureEmbedding(feature_map, cfg.embed_dim) (the projection "
                          f"writes its table and phase 1 freezes it); got {type(emb).__name__}")
    if emb.embed_dim != cfg.embed_dim or emb.vocab_sizes != [int(v) for v in feature_map.vocab_sizes]:
        raise ConfigError(f"{key}.name: {cfg.name}'s embedding has dim {emb.embed_dim} and vocabularies "
                          f"{emb.vocab_sizes}; {key}.embed_dim is {cfg.embed_dim} and the data's {feature_map.vocab_sizes}")
    model.eval()
    g = torch.Generator().manual_seed(0)
    for batch in (3, 5):
        ids = torch.stack([torch.randint(0, f.vocab_size, (batch,), generator=g) for f in feature_map.categorical_fields], 1)
        dense = torch.randn(batch, len(feature_map.numeric_fields), generator=g) if feature_map.numeric_fields else None
        try:
            with torch.no_grad():
                z = model(ids, dense)
        except Exception as e:  # noqa: BLE001 - whatever the user's forward raises
            raise ConfigError(f"{key}.name: {cfg.name}.forward(ids [{batch}, {ids.shape[1]}], dense) raised "
                              f"{type(e).__name__}: {e}") from e
        if not torch.is_tensor(z) or not z.is_floating_point() or tuple(z.shape) != (batch,):
            got = f"{z.dtype} {tuple(z.shape)}" if torch.is_tensor(z) else type(z).__name__
            raise ConfigError(f"{key}.name: {cfg.name}.forward must return float logits of shape (B,), got {got} "
                              f"for B = {batch}")
