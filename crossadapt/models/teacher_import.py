"""A deployed model as the teacher: checked, bound to a fingerprint, loaded like a zoo teacher.

The team brings three files (``teacher_import`` in the config):

- ``program``: a TorchScript file (``torch.jit.save``) or a ``torch.export`` program (``.pt2``)
  whose forward takes ``(ids int64 [B, F_cat], dense float32 [B, F_num])`` in feature-map order and
  returns logits ``[B]``;
- ``tables``: ``torch.save({field: tensor (rows, d_f)})``, the embedding table of every categorical
  field (dims may differ per field), optionally ``(d,)`` or ``(1, d)`` vectors of numeric fields;
- ``vocabularies``: raw value -> row of the field's table, and the OOV row (formats:
  :func:`crossadapt.data.converters.vocab.load_vocabularies`).

:func:`check_teacher_files` runs before the logs are converted (the encoder adopts the
vocabularies: a table without a vocabulary, a vocabulary without a table, or a row outside its
table is an error naming the field and the file). :func:`import_teacher` runs once the feature map
exists, before any training: the program must load and answer a probe batch at two batch sizes
with finite logits of shape ``[B]`` (else an error naming the file and the signature), and is
probed for trainability (a backward pass reaches some parameter). It writes
``<out_dir>/teacher/imported-<fingerprint>/``: a copy of the program (what every later stage
loads, so a file changed afterwards cannot leak in), ``embedding.pt`` (the tables stacked in
feature-map order as one ``embedding.table.weight``, narrower fields zero-padded to the widest:
padding keeps every inner product, so the projection of ``crossadapt.projection`` applies
unchanged, in-process or on actors) and, last, ``teacher.json`` (the manifest). The fingerprint is
the sha256 of the three files' bytes, the format and the feature map.

:func:`load_teacher_model` is what every stage calls with a teacher path: a zoo checkpoint or an
imported teacher's ``teacher.json``. An imported program that is not trainable (no parameter a
gradient reaches, e.g. ``torch.jit.freeze``) stays frozen online; :func:`teacher_trainable` tells.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crossadapt import atomic
from crossadapt.config import TeacherImportConfig
from crossadapt.data.converters.vocab import FieldVocab, load_vocabularies
from crossadapt.errors import CheckpointError, DataError, FeatureMapMismatch
from crossadapt.featuremap import FeatureMap
from crossadapt.models.checkpoint import load_checkpoint

FORMAT = "crossadapt-imported-teacher-v1"
MANIFEST_FILE = "teacher.json"
EMBEDDING_FILE = "embedding.pt"
TABLE_KEY = "embedding.table.weight"  # as crossadapt.projection.math.TABLE_KEY (the zoo's state-dict key)
NUMERIC_KEY = "embedding.numeric"
#: Batch sizes of the probe: two, so that a program exported with a fixed batch size fails here.
PROBE_BATCHES = (3, 5)


@dataclass
class TeacherFiles:
    """The checked tables and vocabularies of an imported teacher.

    Attributes:
        vocab: field -> its vocabulary, in the vocabularies file's order.
        rows: field -> rows of its table (the field's vocabulary size).
        dims: field -> width of its table.
        numeric: numeric field -> its vector (tables of names without a vocabulary).
    """

    vocab: dict[str, FieldVocab]
    rows: dict[str, int]
    dims: dict[str, int]
    numeric: dict[str, torch.Tensor]
    tables_path: Path


def _load_tables(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"teacher_import.tables: {path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - zip, pickle and EOF errors all mean "unreadable"
        raise DataError(f"teacher_import.tables: {path}: not a readable torch.save file of tensors "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise DataError(f"teacher_import.tables: {path}: expected a dict {{field name: tensor}}")
    return obj


def check_teacher_files(ti: TeacherImportConfig) -> TeacherFiles:
    """The tables and vocabularies of ``ti``, checked against each other (no program run, nothing written).

    Raises:
        DataError: unreadable files; a vocabulary field without a table or a table without a
            vocabulary (that is not a numeric vector); a table that is not 2-D float with finite
            values; a vocabulary row (OOV included) outside its table. Each names the field and file.
    """
    tables_path, vocab_path = Path(ti.tables), Path(ti.vocabularies)
    if not Path(ti.program).is_file():
        raise DataError(f"teacher_import.program: {ti.program}: file not found")
    tables = _load_tables(tables_path)
    vocab = load_vocabularies(vocab_path)
    rows, dims, numeric = {}, {}, {}
    for name, t in tables.items():
        if name in vocab:
            continue
        if t.dim() == 1 or (t.dim() == 2 and t.shape[0] == 1):
            numeric[name] = t.reshape(-1).float()
            continue
        raise DataError(f"teacher_import.tables: {tables_path}: table {name!r} ({tuple(t.shape)}) has no vocabulary in "
                        f"{vocab_path} (fields there: {list(vocab)})")
    for name, v in vocab.items():
        t = tables.get(name)
        if t is None:
            raise DataError(f"teacher_import.vocabularies: field {name!r} of {vocab_path} has no table in {tables_path} "
                            f"(tables: {sorted(tables)})")
        if t.dim() != 2 or not t.is_floating_point() or t.shape[0] < 1 or t.shape[1] < 1:
            raise DataError(f"teacher_import.tables: {tables_path}: table {name!r} must be a 2-D float tensor "
                            f"(rows, dim), got {t.dtype} {tuple(t.shape)}")
        if v.max_row >= t.shape[0]:
            row, tok = (v.oov_index, "the OOV row") if v.oov_index == v.max_row else \
                next((r, f"value {k!r}") for k, r in v.ids.items() if r == v.max_row)
            raise DataError(f"teacher_import: field {name!r}: {tok} maps to row {row} of {vocab_path}, but its table in "
                            f"{tables_path} has {t.shape[0]} rows")
        if not bool(torch.isfinite(t).all()):
            raise DataError(f"teacher_import.tables: {tables_path}: table {name!r} holds non-finite values")
        rows[name], dims[name] = int(t.shape[0]), int(t.shape[1])
    return TeacherFiles(vocab, rows, dims, numeric, tables_path)


# ---------------------------------------------------------------- the program


def program_format(path: str | os.PathLike, fmt: str = "auto") -> str:
    """``"export"`` for ``.pt2`` files (``torch.export.save``), else ``"torchscript"``, unless ``fmt`` says."""
    if fmt != "auto":
        return fmt
    return "export" if Path(path).suffix == ".pt2" else "torchscript"


def load_program(path: str | os.PathLike, fmt: str = "auto") -> nn.Module:
    """The program as a module on the CPU; ``CheckpointError`` naming the file when it cannot be loaded."""
    path, fmt = Path(path), program_format(path, fmt)
    if not path.is_file():
        raise CheckpointError(f"teacher_import.program: {path}: file not found")
    try:
        if fmt == "export":
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - each loader raises its own kinds
        raise CheckpointError(f"teacher_import.program: {path}: not a loadable {fmt} program ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300] if str(e) else ''}); set teacher_import.format if "
                              "the file is of the other kind") from e


class ImportedTeacher(nn.Module):
    """A loaded program behind the zoo's call convention: ``forward(ids, dense=None) -> logits (B,)``.

    ``dense`` may be ``None`` (no numeric fields): the program then gets a ``(B, 0)`` float tensor.
    ``train``/``eval`` reach a TorchScript program; a ``torch.export`` program runs as exported
    (it refuses mode changes).
    """

    def __init__(self, program: nn.Module, num_numeric: int, fmt: str) -> None:
        super().__init__()
        self.program = program
        self.num_numeric = int(num_numeric)
        self.fmt = fmt

    def forward(self, ids: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        if dense is None:
            dense = torch.zeros(ids.shape[0], self.num_numeric, dtype=torch.float32, device=ids.device)
        return self.program(ids, dense.to(torch.float32))

    def train(self, mode: bool = True) -> ImportedTeacher:
        self.training = mode
        if self.fmt != "export":
            self.program.train(mode)
        return self


def _probe(teacher: ImportedTeacher, fm: FeatureMap, path: Path, batch: int, seed: int) -> torch.Tensor:
    """Logits of a probe batch of in-range ids (OOV rows included) and unit-scale numeric values."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(0, f.vocab_size, (batch,), generator=g) for f in fm.categorical_fields], 1)
    ids[0] = torch.tensor([f.oov_index for f in fm.categorical_fields])
    dense = torch.randn(batch, len(fm.numeric_fields), generator=g)
    signature = (f"forward(ids int64 [{batch}, {len(fm.categorical_fields)}], dense float32 [{batch}, "
                 f"{len(fm.numeric_fields)}]) -> logits [{batch}]")
    try:
        z = teacher(ids, dense)
    except Exception as e:  # noqa: BLE001 - whatever the program raises, the answer is the same
        raise CheckpointError(f"teacher_import.program: {path}: the program does not run as {signature}, fields in "
                              f"feature-map order {[f.name for f in fm.fields]}: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}") from e
    if not torch.is_tensor(z) or not z.is_floating_point() or tuple(z.shape) != (batch,):
        got = f"{z.dtype} {tuple(z.shape)}" if torch.is_tensor(z) else type(z).__name__
        raise CheckpointError(f"teacher_import.program: {path}: returns {got}, expected float logits of shape [{batch}] "
                              f"({signature})")
    if not bool(torch.isfinite(z).all()):
        raise CheckpointError(f"teacher_import.program: {path}: returns non-finite logits on a probe batch")
    return z


def _trainable(teacher: ImportedTeacher, fm: FeatureMap, path: Path) -> bool:
    """Whether a backward pass from the logits reaches some parameter (grads are cleared after)."""
    params = [p for p in teacher.parameters() if p.is_floating_point()]
    if not params:
        return False
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            z = _probe(teacher, fm, path, PROBE_BATCHES[0], 0)
            if not z.requires_grad:
                return False
            z.sum().backward()
        return any(p.grad is not None for p in params)
    except RuntimeError:
        return False
    finally:
        for p, f in zip(params, flags):
            p.grad = None
            p.requires_grad_(f)


# ---------------------------------------------------------------- importing


def check_against_feature_map(files: TeacherFiles, fm: FeatureMap, ti: TeacherImportConfig) -> None:
    """The converted data's fields are the teacher's: same categorical fields in order, sizes and OOV rows."""
    names = fm.categorical_names
    if list(files.vocab) != names:
        raise FeatureMapMismatch(f"teacher_import.vocabularies: fields {list(files.vocab)} of {ti.vocabularies} differ "
                                 f"from the data's categorical fields {names} (order matters: the program takes ids "
                                 "in feature-map order)")
    for f in fm.categorical_fields:
        if (f.vocab_size, f.oov_index) != (files.rows[f.name], files.vocab[f.name].oov_index):
            raise FeatureMapMismatch(f"teacher_import: field {f.name!r}: the data encodes {f.vocab_size} ids with OOV "
                                     f"{f.oov_index}, the teacher's table has {files.rows[f.name]} rows with OOV "
                                     f"{files.vocab[f.name].oov_index}; run `crossadapt prepare --force`")
    extra = sorted(set(files.numeric) - set(fm.numeric_names))
    if extra:
        raise DataError(f"teacher_import.tables: {ti.tables}: vector(s) {extra} name no numeric field of the data "
                        f"(numeric fields: {fm.numeric_names})")


def stacked_embedding(files: TeacherFiles, fm: FeatureMap) -> tuple[dict[str, torch.Tensor], int]:
    """The tables as one zoo-style embedding state (feature-map order, zero-padded to the widest
    table or vector), and that width. The numeric vectors enter only when every numeric field has one."""
    tables = _load_tables(files.tables_path)
    with_numeric = bool(fm.numeric_names) and all(n in files.numeric for n in fm.numeric_names)
    numeric = [files.numeric[n] for n in fm.numeric_names] if with_numeric else []
    width = max([*files.dims.values(), *(v.numel() for v in numeric)])
    pad = torch.nn.functional.pad
    state = {TABLE_KEY: torch.cat([pad(tables[n].float(), (0, width - files.dims[n])) for n in fm.categorical_names])}
    if numeric:
        state[NUMERIC_KEY] = torch.stack([pad(v, (0, width - v.numel())) for v in numeric])
    return state, width


def import_teacher(ti: TeacherImportConfig, fm: FeatureMap, out_dir: str | os.PathLike,
                   files: TeacherFiles | None = None) -> str:
    """Check the deployed teacher against ``fm``, bind it to its fingerprint and return its manifest path.

    A finished import of the same fingerprint in ``out_dir`` is reused. See the module docstring.
    """
    from crossadapt import fingerprint as F  # fingerprint imports the training layer: import it late

    files = files or check_teacher_files(ti)
    check_against_feature_map(files, fm, ti)
    fmt = program_format(ti.program, ti.format)
    sha = {k: F.file_sha256(getattr(ti, k)) for k in ("program", "tables", "vocabularies")}
    fp = F.digest({"stage": "teacher_import", "format": fmt, "sha256": sha, "feature_map": fm.fingerprint()})
    folder = Path(out_dir) / "teacher" / f"imported-{F.short(fp)}"
    manifest_path = folder / MANIFEST_FILE
    if manifest_path.is_file():
        try:
            if json.loads(manifest_path.read_text()).get("fingerprint") == fp:
                return str(manifest_path)
        except ValueError:
            pass
    program = load_program(ti.program, fmt)
    teacher = ImportedTeacher(program, len(fm.numeric_fields), fmt).eval()
    with torch.no_grad():
        for i, b in enumerate(PROBE_BATCHES):
            _probe(teacher, fm, Path(ti.program), b, i)
    trainable = _trainable(teacher, fm, Path(ti.program))
    state, width = stacked_embedding(files, fm)
    folder.mkdir(parents=True, exist_ok=True)
    program_copy = folder / ("program.pt2" if fmt == "export" else "program.pt")
    with atomic.atomic_path(program_copy) as tmp:
        shutil.copyfile(ti.program, tmp)
    with atomic.atomic_path(folder / EMBEDDING_FILE) as tmp:
        torch.save(state, tmp)
    atomic.write_json(manifest_path, {
        "format": FORMAT,
        "fingerprint": fp,
        "program": program_copy.name,
        "program_format": fmt,
        "source": {"program": ti.program, "tables": ti.tables, "vocabularies": ti.vocabularies},
        "sha256": sha,
        "feature_map_fingerprint": fm.fingerprint(),
        "num_numeric": len(fm.numeric_fields),
        "dims": files.dims,
        "embed_dim": width,
        "padded_fields": sorted(n for n, d in files.dims.items() if d < width),
        "numeric_projected": NUMERIC_KEY in state,
        "trainable": trainable,
    })
    return str(manifest_path)


# ---------------------------------------------------------------- loading


def is_imported(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an imported teacher's manifest (not a zoo checkpoint)."""
    return Path(path).name == MANIFEST_FILE


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest at ``path``; ``CheckpointError`` naming it when missing or not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable imported-teacher manifest ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} manifest")
    return doc


def teacher_embedding_path(path: str | os.PathLike) -> str:
    """The file holding the teacher's ``embedding.table.weight`` (a zoo checkpoint is its own)."""
    return str(Path(path).parent / EMBEDDING_FILE) if is_imported(path) else str(path)


def teacher_trainable(path: str | os.PathLike) -> bool:
    """Whether the teacher at ``path`` can be updated online (zoo checkpoints always can)."""
    return bool(read_manifest(path)["trainable"]) if is_imported(path) else True


def teacher_embed_dim(path: str | os.PathLike) -> int | None:
    """The imported teacher's (widest) table width, ``None`` for a zoo checkpoint."""
    return int(read_manifest(path)["embed_dim"]) if is_imported(path) else None


def load_teacher_model(path: str | os.PathLike, fm: FeatureMap, map_location: str | torch.device = "cpu") -> nn.Module:
    """The teacher at ``path`` in eval mode on ``map_location``: a zoo checkpoint (its feature map
    must be ``fm``'s) or an imported teacher's manifest (imported for ``fm``)."""
    if not is_imported(path):
        return load_checkpoint(path, expected_feature_map=fm, map_location=map_location).model
    doc = read_manifest(path)
    if doc["feature_map_fingerprint"] != fm.fingerprint():
        raise FeatureMapMismatch(f"{path}: the teacher was imported for feature map {doc['feature_map_fingerprint']}, "
                                 f"the data's is {fm.fingerprint()}")
    program = load_program(Path(path).parent / doc["program"], doc["program_format"])
    return ImportedTeacher(program, doc["num_numeric"], doc["program_format"]).to(map_location).eval()
