"""Export a student for serving: a ``torch.export`` program plus everything needed to feed it.

``crossadapt export`` writes a folder that scores without crossadapt (only torch)::

    model.pt2          torch.export program: forward(ids int64 [B, F_cat], dense float32 [B, F_num]) -> logits [B]
    feature_map.json   the fields in input order, vocabulary sizes, OOV rows, encoders
    vocab.json         raw value -> id per field (absent when the data's ids were encoded elsewhere)
    tables.pt          the student's embedding table per field ({field: tensor}) and numeric vectors
    manifest.json      format, inputs, output, model config, where it came from

Why ``torch.export`` and not TorchScript: ``torch.jit.script``/``trace`` are deprecated in the
torch this project pins (2.13), and every zoo model exports with a dynamic batch dimension. The
batch dimension is dynamic (any B >= 1); the field counts are fixed. The folder is also a valid
``teacher_import`` (program, tables, vocabularies): today's student can be tomorrow's teacher.

After writing, the program is loaded back and must give the model's logits on probe batches to
``MAX_ABS_DIFF``; the folder appears (atomically renamed) only then.

Scoring without crossadapt::

    import json, torch
    program = torch.export.load("export/model.pt2").module()
    vocab = json.load(open("export/vocab.json"))          # field -> [values] (id = position + 1) or {value: id}
    logits = program(ids, dense)                           # ids int64 [B, F_cat] in feature_map.json order
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crossadapt import atomic
from crossadapt import config as config_mod
from crossadapt.errors import CheckpointError, DataError
from crossadapt.featuremap import FEATURE_MAP_FILE, FeatureMap
from crossadapt.models.checkpoint import load_checkpoint

FORMAT = "crossadapt-export-v1"
PROGRAM_FILE = "model.pt2"
TABLES_FILE = "tables.pt"
VOCAB_FILE = "vocab.json"
MANIFEST_FILE = "manifest.json"
#: Largest |logit difference| between the reloaded program and the model on the probe batches
#: (same float32 kernels on the same machine: differences, if any, are rounding of a few ulps).
MAX_ABS_DIFF = 1e-6


class _Serving(nn.Module):
    """The model with the serving signature: ``dense`` always a tensor ((B, 0) without numeric fields)."""

    def __init__(self, model: nn.Module, num_numeric: int) -> None:
        super().__init__()
        self.model = model
        self.num_numeric = num_numeric

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.model(ids, dense if self.num_numeric else None)


def probe_batch(fm: FeatureMap, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """In-range ids (the OOV row in the first row) and unit-scale numeric values."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(0, f.vocab_size, (batch,), generator=g) for f in fm.categorical_fields], 1)
    ids[0] = torch.tensor([f.oov_index for f in fm.categorical_fields])
    return ids, torch.randn(batch, len(fm.numeric_fields), generator=g)


def export_program(model: nn.Module, fm: FeatureMap, path: str | os.PathLike) -> None:
    """``torch.export`` ``model`` (eval mode, CPU) with a dynamic batch dimension and save it to ``path``."""
    serving = _Serving(model, len(fm.numeric_fields)).eval()
    ids, dense = probe_batch(fm, 4)
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(serving, (ids, dense), dynamic_shapes={"ids": {0: batch}, "dense": {0: batch}})
    except Exception as e:  # noqa: BLE001 - torch.export raises many kinds for untraceable code
        raise CheckpointError(f"export: {type(model).__name__} cannot be exported with torch.export "
                              f"({type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''})"
                              ) from e
    torch.export.save(program, str(path))


def field_tables(model: nn.Module, fm: FeatureMap) -> dict[str, torch.Tensor]:
    """The student's embedding rows per categorical field, and its numeric vectors (1-D) by field name."""
    emb = model.embedding
    out = {name: emb.table.weight[a:b].detach().cpu().clone() for name, a, b in emb.field_ranges()}
    if emb.numeric is not None:
        out.update({f.name: emb.numeric[j].detach().cpu().clone() for j, f in enumerate(fm.numeric_fields)})
    return out


def check_program(path: str | os.PathLike, model: nn.Module, fm: FeatureMap) -> float:
    """Largest |logit difference| between the saved program and ``model`` on probe batches (B = 1, 7,
    300); ``CheckpointError`` when it exceeds :data:`MAX_ABS_DIFF` or a shape differs."""
    program = torch.export.load(str(path)).module()
    worst = 0.0
    serving = _Serving(model, len(fm.numeric_fields)).eval()
    for i, b in enumerate((1, 7, 300)):
        ids, dense = probe_batch(fm, b, seed=i + 1)
        with torch.no_grad():
            want, got = serving(ids, dense), program(ids, dense)
        if tuple(got.shape) != (b,):
            raise CheckpointError(f"export: {path} returns shape {tuple(got.shape)} for a batch of {b}, expected ({b},)")
        worst = max(worst, float((want - got).abs().max()))
    if not worst <= MAX_ABS_DIFF:
        raise CheckpointError(f"export: {path} differs from the model by {worst:.3g} in logits (> {MAX_ABS_DIFF:g})")
    return worst


def export_student(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, data_root: str | os.PathLike | None = None,
                   overwrite: bool = False) -> dict[str, Any]:
    """Write the serving folder of the student at ``checkpoint`` into ``out_dir``; returns its manifest.

    ``data_root``: the encoded data the student was trained on; its ``vocab.json`` is copied, and its
    feature map must be the checkpoint's (``FeatureMapMismatch`` otherwise).

    Raises:
        CheckpointError: unreadable checkpoint, a model ``torch.export`` cannot trace, or a program
            that does not reproduce the model's logits.
        DataError: ``out_dir`` exists and is not empty (without ``overwrite``).
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise DataError(f"{out_dir}: export folder exists and is not empty (pass --force to replace it)")
    ck = load_checkpoint(checkpoint)
    model, fm = ck.model.cpu().eval(), ck.feature_map
    vocab = None
    if data_root is not None:
        data_fm = FeatureMap.load(data_root)
        data_fm.check_compatible(fm, f"checkpoint {checkpoint}")
        vocab = Path(data_root) / VOCAB_FILE if (Path(data_root) / VOCAB_FILE).is_file() else None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        export_program(model, fm, staging / PROGRAM_FILE)
        worst = check_program(staging / PROGRAM_FILE, model, fm)
        fm.save(staging / FEATURE_MAP_FILE)
        if vocab is not None:
            shutil.copyfile(vocab, staging / VOCAB_FILE)
        with atomic.atomic_path(staging / TABLES_FILE) as tmp:
            torch.save(field_tables(model, fm), tmp)
        manifest = {
            "format": FORMAT,
            "program": PROGRAM_FILE,
            "torch": torch.__version__,
            "inputs": {"ids": {"dtype": "int64", "shape": ["B", len(fm.categorical_fields)],
                               "fields": fm.categorical_names,
                               "oov_index": {f.name: f.oov_index for f in fm.categorical_fields},
                               "encoders": {f.name: f.encoder for f in fm.categorical_fields}},
                       "dense": {"dtype": "float32", "shape": ["B", len(fm.numeric_fields)],
                                 "fields": fm.numeric_names}},
            "output": {"logits": {"dtype": "float32", "shape": ["B"]}, "probability": "sigmoid(logits)"},
            "vocabularies": VOCAB_FILE if vocab is not None else None,
            "model_config": config_mod.to_dict(ck.model_cfg),
            "feature_map_fingerprint": fm.fingerprint(),
            "checkpoint": str(checkpoint.resolve()),
            "checkpoint_fingerprint": ck.extra.get("fingerprint"),
            "max_abs_logit_diff": worst,
        }
        atomic.write_json(staging / MANIFEST_FILE, manifest)
        staging.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
