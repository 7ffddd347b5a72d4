"""Checkpoints: a model's weights together with its config and the feature map it was trained on.

A checkpoint is one file written by ``torch.save`` (atomically) holding a plain dict::

    {"format": "crossadapt-checkpoint-v1",
     "state_dict": {name: tensor},
     "model_config": config.to_dict(ModelConfig),
     "feature_map": FeatureMap.to_dict(),
     "extra": {...plain Python values: metrics, job name, epoch...}}

Only tensors and plain Python values are stored, so loading uses ``torch.load(weights_only=True)``
(no arbitrary code runs from a checkpoint file). Every failure is a ``CheckpointError`` naming the
file, or a ``FeatureMapMismatch`` when the checkpoint was trained on another encoding.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from crossadapt import config as config_mod
from crossadapt.atomic import atomic_path
from crossadapt.config import ModelConfig
from crossadapt.errors import CheckpointError, ConfigError, CrossAdaptError, DataError
from crossadapt.featuremap import FeatureMap
from crossadapt.models.registry import build_model, model_class

FORMAT = "crossadapt-checkpoint-v1"
_KEYS = ("format", "state_dict", "model_config", "feature_map", "extra")


@dataclass
class LoadedCheckpoint:
    """What ``load_checkpoint`` returns: the rebuilt model (eval mode) and what it was saved with."""

    model: nn.Module
    model_cfg: ModelConfig
    feature_map: FeatureMap
    extra: dict[str, Any] = field(default_factory=dict)


def check_model_matches(path: str | os.PathLike, got: ModelConfig, key: str, expected: ModelConfig) -> None:
    """Raise :class:`CheckpointError` when the checkpoint at ``path`` holds another model than the
    config's ``key`` section describes, naming every differing key with both values.

    The config must describe the model that runs: the run's config is recorded with its results as
    what produced them, and a ``teacher.hidden_units`` that the checkpoint does not have would be
    recorded as if used (the name and embedding dimension would also change the projection and the
    distillation silently). Taking the checkpoint's config instead would leave the recorded config
    at odds with the file the user wrote; the message gives the ``--set`` that makes them agree.
    """
    a, b = config_mod.to_dict(got), config_mod.to_dict(expected)
    # logit_offset is set by training (a positive-rate sample's correction), never by the config
    differ = [k for k in a if a[k] != b.get(k) and k != "logit_offset"]
    # name and embed_dim first: they decide the projection and are what is usually mistaken
    differ.sort(key=lambda k: (k not in ("name", "embed_dim"), k))
    if differ:
        holds = ", ".join(f"{k}={a[k]!r}" for k in differ)
        says = ", ".join(f"{key}.{k} is {b[k]!r}" for k in differ)
        sets = " ".join(f"--set '{key}.{k}={_yaml_value(a[k])}'" for k in differ)
        raise CheckpointError(f"{path}: the checkpoint holds {holds} but the config's {says}; pass the checkpoint "
                              f"trained with the config's {key}, or make the config describe this one: {sets}")


def _yaml_value(v: Any) -> str:
    """``v`` as a ``--set`` value: YAML flow style (``[64, 32]``, ``true``)."""
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _plain(value: Any, key: str) -> Any:
    """``value`` as types ``weights_only`` loading accepts; numpy scalars become Python numbers."""
    if value is None:
        return value
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy / torch scalar
        # Checked first: np.float64 subclasses float but is refused by weights_only loading.
        return value.item()
    for base in (bool, int, float, str):  # bool before int: bool subclasses int
        if isinstance(value, base):
            return base(value)  # subclasses (np.float64, IntEnum, ...) become the plain type
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(f"extra{key}: dict keys must be str or int, got {type(k).__name__}")
            k = _plain(k, key)
            out[k] = _plain(v, f"{key}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise CheckpointError(
        f"extra{key}: {type(value).__name__} is not a plain Python value (use str, int, float, bool, None, list, dict)"
    )


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP / DataParallel wrapper."""
    while not hasattr(model, "embedding") and hasattr(model, "module"):
        model = model.module
    return model


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    model_cfg: ModelConfig,
    feature_map: FeatureMap,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` with its config and feature map to ``path`` atomically; returns the path.

    Tensors are saved on the CPU, so a GPU-trained checkpoint loads anywhere. A DDP-wrapped model
    is unwrapped. ``extra`` must hold plain Python values (numpy scalars are converted).

    Example::

        save_checkpoint("runs/x/best.pt", model, cfg.student, fm, {"epoch": 3, "valid_auc": 0.79})
    """
    path = Path(path)
    model = _unwrap(model)
    try:
        expected = model_class(model_cfg.name)
    except ConfigError:
        expected = None
    if expected is None or type(model) is not expected:
        raise CheckpointError(
            f"{path}: model is a {type(model).__name__} but model_cfg.name is {model_cfg.name!r} "
            f"(registry class {getattr(expected, '__name__', None)})"
        )
    obj = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": config_mod.to_dict(model_cfg),
        "feature_map": feature_map.to_dict(),
        "extra": _plain(dict(extra or {}), ""),
    }
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """The raw, validated checkpoint dict (see the module docstring); builds no model.

    With ``mmap=True`` tensors are memory-mapped from the file instead of read: slicing a row
    range of a big table, e.g. ``ck["state_dict"]["embedding.table.weight"][a:b]``, then reads
    only those rows from disk (``map_location`` must be ``"cpu"`` for that).

    Raises:
        CheckpointError: missing, truncated or corrupted file, or not a CrossAdapt checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; a checkpoint is one file (e.g. <run>/teacher/best.pt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    _check_archive(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - zip, pickle, EOF and unpickler errors all mean "unreadable"
        if "Weights only load failed" in str(e):
            # A pickle of arbitrary objects (possibly a payload): say so, and name what it asked for,
            # instead of torch's first line, which suggests retrying with weights_only=False.
            found = re.search(r"GLOBAL (\S+)", str(e))
            what = f" (it asks for {found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path}: not a readable checkpoint: it holds Python objects other than tensors and plain "
                f"values{what}; checkpoints are loaded with weights_only=True and never run code from a file"
            ) from e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupted?): {type(e).__name__}: {msg[:300]}"
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        tag = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a {FORMAT} file (format tag: {tag!r})")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks key(s) {missing}")
    sd = obj["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: 'state_dict' must map names to tensors")
    for k in ("model_config", "feature_map", "extra"):
        if not isinstance(obj[k], dict):
            raise CheckpointError(f"{path}: {k!r} must be a dict, got {type(obj[k]).__name__}")
    return obj


def saved_model_config(path: str | os.PathLike) -> ModelConfig:
    """The model config a checkpoint was saved with; its tensors are memory-mapped, not read (cheap
    for a large teacher). Raises ``CheckpointError`` like ``read_checkpoint``."""
    raw = read_checkpoint(path, mmap=True)
    try:
        return config_mod.from_dict(ModelConfig, raw["model_config"], prefix="model")
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from e


def _check_archive(path: Path) -> None:
    """A checkpoint is a zip archive (``torch.save``'s format) or a pickle (torch's legacy format,
    which ``torch.load`` reads or refuses itself, naming what it asks for): say plainly when the file
    is neither, instead of the unpickler's error on its first bytes (``KeyError: 101`` for text)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # zip; pickle protocol >= 2
        return
    if not head:
        raise CheckpointError(f"{path}: not a readable checkpoint: the file is empty")
    try:
        text = head.decode("utf-8")
        what = f"it holds text ({text.splitlines()[0][:40]!r}...)" if text.strip() else "it holds only whitespace"
    except UnicodeDecodeError:
        what = f"it starts with bytes {head[:8]!r}"
    raise CheckpointError(f"{path}: not a readable checkpoint: {what}, not the zip archive torch.save writes")


def _check_state_dict(path: Path, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], name: str) -> None:
    """Raise CheckpointError naming the first key or shape that differs from the built model."""
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: state_dict does not match model {name!r}: "
            f"missing key(s) {missing}, unexpected key(s) {unexpected}"
        )
    bad = [
        f"key {k!r} has shape {tuple(got[k].shape)}, expected {tuple(t.shape)}"
        for k, t in want.items()
        if tuple(got[k].shape) != tuple(t.shape)
    ]
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CheckpointError(
            f"{path}: state_dict does not match model {name!r} built from the checkpoint's config: "
            + "; ".join(bad[:5]) + more
        )


def load_checkpoint(
    path: str | os.PathLike,
    expected_feature_map: FeatureMap | None = None,
    map_location: str | torch.device = "cpu",
    expected_model: tuple[str, ModelConfig] | None = None,
) -> LoadedCheckpoint:
    """Rebuild the model saved at ``path`` (on ``map_location``, in eval mode).

    Raises:
        CheckpointError: see ``read_checkpoint``; also a config or state_dict that does not fit
            (the message names the key and both shapes), or NaN/inf weights (the key is named).
        FeatureMapMismatch: ``expected_feature_map`` is given and encodes differently from the
            checkpoint's map (the message names the first differing field).
        CheckpointError: ``expected_model = (config key, ModelConfig)`` is given and the checkpoint
            holds another model or embedding dimension (both are named).

    Example::

        ck = load_checkpoint("runs/x/teacher/best.pt", expected_feature_map=fm)
        ck.model(ids, dense).shape, ck.model_cfg.name
    """
    path = Path(path)
    raw = read_checkpoint(path, map_location=map_location)
    try:
        fm = FeatureMap.from_dict(raw["feature_map"], source=f"{path} feature_map")
        cfg = config_mod.from_dict(ModelConfig, raw["model_config"], prefix="model")
    except (DataError, ConfigError) as e:
        raise CheckpointError(f"{path}: {e}") from e
    if expected_feature_map is not None:
        expected_feature_map.check_compatible(fm, f"checkpoint {path}")
    if expected_model is not None:
        check_model_matches(path, cfg, *expected_model)
    try:
        model = build_model(cfg, fm)
    except CrossAdaptError as e:
        raise CheckpointError(f"{path}: cannot rebuild the model: {e}") from e
    _check_state_dict(path, raw["state_dict"], model.state_dict(), cfg.name)
    for k, t in raw["state_dict"].items():
        # A diverged run or a flipped bit saves NaN/inf weights that load fine and then predict
        # garbage (a teacher would hand NaN soft labels to every student): refuse them here.
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n_bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{path}: state_dict key {k!r} holds {n_bad} non-finite (NaN/inf) value(s)")
    model.to(map_location)
    model.load_state_dict(raw["state_dict"], strict=True)
    model.eval()
    return LoadedCheckpoint(model=model, model_cfg=cfg, feature_map=fm, extra=raw["extra"])
