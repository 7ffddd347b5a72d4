"""Fingerprints: what produced a result (config parts, data, code) as sha256 digests (no Ray here).

A fingerprint is the sha256 of the canonical JSON (sorted keys, no spaces) of everything that
determines a stage's result and of nothing else. Fingerprints depend on inputs only, so every
stage's is known before anything trains; stage folders and Ray Train storage are named by them
(``crossadapt.experiment.offline``), and they travel in outcome files, checkpoints, results.json
and the report.

In a fingerprint:

- the stage's own settings: for a training stage the whole ``TrainJob`` (model, phases, batch size,
  loss, seed, amp, ...) minus the fields listed in ``JOB_EXCLUDED``; new ``TrainJob`` fields enter
  by default;
- what its rows are: the data (below), ``valid_fraction`` and, for sampled students, ``r``, the
  sample mode and seed;
- ``resources.num_workers``: ``batch_size`` is per worker, so the global batch and the number of
  steps per epoch depend on it;
- whether the training shard was held or streamed (``TrainJob.stream_buffer_rows``, chosen from
  ``resources.cache_bytes`` by ``crossadapt.data.shard_budget``): a streamed epoch visits the rows
  in another order. ``cache_bytes`` itself is not in it: a budget that chooses the same path
  gives the same result;
- the fingerprints of the stages it starts from (teacher, projection) instead of their file paths;
- the code version, and for a user model class (``package.module:Class``) the bytes of its module file;
  an imported teacher enters as the sha256 of its program, tables and vocabularies
  (``crossadapt.models.teacher_import``).

Not in it: where things go and how often (``out_dir``, ``storage``, ``tracking``, run folders,
checkpoint intervals, ``max_failures``); placement that changes floating-point rounding but not the
computation (``use_gpu``, ``cpus_per_worker``, ``concurrent_jobs``, projection actors, online call
batching); the lists of what to run (``methods``, ``seeds``, ``online.methods``): each (method, seed)
has its own fingerprint, so a shorter list never makes the others stale.

Data: the feature map's encoding, and for each parquet file of the periods read its path under the
data root, its size and the sha256 of its bytes. Paths are relative, so a copy of the data elsewhere
(a download from storage, another disk) has the same fingerprint; a modification time would not.
Not a hash of the parquet footers only, although that reads a few kilobytes: a footer holds row
counts, chunk sizes and min/max statistics, and a small file with one label flipped kept its footer
byte for byte (tests/test_fingerprint.py). Hashing is one sequential read of each file, cheaper than
decoding the same files for training, and is done once per file per process (memoised on path,
size and mtime).

Code: the sha256 of the ``crossadapt`` package's ``.py`` sources (relative path and bytes), not
the git commit: uncommitted edits do not change a commit, and an installed wheel or a
``ray job submit --working-dir`` copy has no ``.git``. It is exact for what runs and costs a few
milliseconds; any edit to the package makes every stage stale (a change anywhere may change a result).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from crossadapt.config import ExperimentConfig, OnlineConfig, ProjectionConfig, to_dict
from crossadapt.data.arrays import period_files
from crossadapt.errors import DataError
from crossadapt.models.checkpoint import read_checkpoint
from crossadapt.train.engine import TrainJob

#: Hex digits of a fingerprint used in folder names (64 bits: no collision among a user's runs).
SHORT = 16
#: TrainJob fields that say where, how often or under which name, not what is learned. The
#: teacher checkpoint and the initial embeddings enter as their stages' fingerprints instead.
JOB_EXCLUDED = ("name", "run_dir", "fingerprint", "teacher_checkpoint", "init_embeddings", "checkpoint_interval_s",
                "train_key", "valid_key", "phase_train_keys")
#: Projection settings that place the work (actors, in-process) or size its report, not the table
#: (a reused projection keeps its report, which records the report_rows it was made with).
PROJECTION_EXCLUDED = ("num_actors", "actor_min_rows", "report_rows")
#: Online settings that list what to run, batch the calls to the actors or run streams side by side
#: (same steps, same order).
ONLINE_EXCLUDED = ("methods", "max_inflight", "steps_per_call", "concurrent_streams")
#: Top-level config sections a Tune search does not depend on (where results go, resources, the
#: offline method list); the data root and raw path enter as the data's fingerprint instead.
SEARCH_EXCLUDED = ("out_dir", "storage", "tracking", "resources", "methods")
#: Search-space keys that place trials, not what they compute.
SPACE_EXCLUDED = ("max_concurrent", "trial_cpus", "trial_gpus")


def digest(obj: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``obj`` (dicts, lists, str, int, float, bool, None)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def short(fingerprint: str) -> str:
    """The prefix of ``fingerprint`` used in folder and run names."""
    return fingerprint[:SHORT]


@functools.lru_cache(maxsize=None)
def code_fingerprint(package_dir: str | None = None) -> str:
    """sha256 over the relative path and bytes of every ``.py`` file of the package (default: crossadapt)."""
    root = Path(package_dir) if package_dir else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel:
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def parquet_sha256(path: str | os.PathLike) -> str:
    """sha256 of a parquet file's bytes (memoised per process); DataError naming a file that is not
    parquet or is truncated (no ``PAR1`` at both ends)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(max(st.st_size - 4, 0))
            tail = f.read(4)
        if st.st_size < 12 or head != b"PAR1" or tail != b"PAR1":
            raise DataError(f"{path}: not a parquet file, or truncated (no PAR1 magic at both ends)")
        _FILE_HASHES[key] = file_sha256(path)
    return _FILE_HASHES[key]


def data_fingerprint(root: str | os.PathLike, feature_map: Mapping[str, Any], periods: Iterable[int]) -> str:
    """The identity of ``periods`` of the encoded logs under ``root`` and of their feature map.

    Paths are taken relative to ``root``: the same files elsewhere have the same fingerprint.
    """
    root = Path(root)
    periods = list(periods)
    files = [{"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size, "sha256": parquet_sha256(p)}
             for p in period_files(root, periods)]
    encoding = {k: v for k, v in dict(feature_map).items() if k != "meta"}  # meta: provenance notes, not the encoding
    return digest({"feature_map": encoding, "periods": periods, "files": files})


def train_fingerprint(job: TrainJob, data: Mapping[str, Any], num_workers: int, code: str,
                      upstream: Mapping[str, str] | None = None) -> str:
    """A Ray Train stage (teacher, student, zoo model): its job, its rows, its workers and what it starts from.

    Args:
        job: the job; the fields in ``JOB_EXCLUDED`` are left out.
        data: what the training and validation rows are (a data fingerprint, ``valid_fraction``, a sample's
            ``r``, mode and seed): whatever decides which rows the job's datasets hold.
        num_workers: Ray Train workers (``batch_size`` is per worker).
        code: ``code_fingerprint()``.
        upstream: fingerprints of the stages whose files the job reads (``teacher``, ``projection``).
    """
    fields = {k: v for k, v in to_dict(job).items() if k not in JOB_EXCLUDED}
    doc = {"stage": "train", "job": fields, "data": dict(data), "num_workers": num_workers, "code": code,
           "upstream": dict(upstream or {})}
    user = model_code_fingerprint(job.model.name)
    if user:  # a user class (package.module:Class): its code is part of what the stage computes
        doc["model_code"] = user
    return digest(doc)


def projection_fingerprint(teacher: str, embed_dim: int, projection: ProjectionConfig, code: str) -> str:
    """The projected student table: the teacher it comes from, the student's dimension and the method."""
    settings = {k: v for k, v in to_dict(projection).items() if k not in PROJECTION_EXCLUDED}
    return digest({"stage": "projection", "teacher": teacher, "embed_dim": embed_dim, "projection": settings,
                   "code": code})


def online_fingerprint(online: OnlineConfig, method: str, seeds: Sequence[int], teacher: str,
                       student: str | Mapping[str, str], data: str, code: str) -> str:
    """One online method's block: its settings, seeds, starting checkpoints (their identities; ``student`` per
    seed when each seed starts from its own) and stream data."""
    settings = {k: v for k, v in to_dict(online).items() if k not in ONLINE_EXCLUDED}
    return digest({"stage": "online", "method": method, "seeds": list(seeds), "online": settings,
                   "teacher": teacher, "student": student, "data": data, "code": code})


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_code_fingerprint(name: str) -> str:
    """``""`` for a zoo model; for a user class ``package.module:Class`` the sha256 of its qualified
    name and of its module file's bytes (the file that defines it; modules it imports are not
    followed: keep a class and what it computes with in one file, or version them together)."""
    if ":" not in name:
        return ""
    from crossadapt.models.registry import user_model_class

    cls = user_model_class(name)
    source = inspect.getsourcefile(cls)
    body = Path(source).read_bytes() if source and Path(source).is_file() else b""
    return hashlib.sha256(f"{cls.__module__}:{cls.__qualname__}".encode() + b"\0" + body).hexdigest()


def checkpoint_identity(path: str | os.PathLike) -> str:
    """The fingerprint a checkpoint was saved with (``extra["fingerprint"]``), else the sha256 of its bytes
    (a checkpoint made elsewhere); an imported teacher's manifest gives its import fingerprint."""
    from crossadapt.models.teacher_import import is_imported, read_manifest

    if is_imported(path):
        return read_manifest(path)["fingerprint"]
    fp = read_checkpoint(path, mmap=True)["extra"].get("fingerprint")
    return fp if isinstance(fp, str) and fp else file_sha256(path)


def search_fingerprint(base: ExperimentConfig, space: Mapping[str, Any], data: str, code: str,
                       upstream: Mapping[str, str]) -> str:
    """A Tune search: its base config (minus ``SEARCH_EXCLUDED``), its space, data, code and the
    checkpoints its trials share (teacher, projection or starting student)."""
    cfg = {k: v for k, v in to_dict(base).items() if k not in SEARCH_EXCLUDED}
    cfg["data"] = {k: v for k, v in cfg["data"].items() if k not in ("root", "raw_path")}
    cfg["online"] = {k: v for k, v in cfg["online"].items() if k != "methods"}
    space = {k: v for k, v in dict(space).items() if k not in SPACE_EXCLUDED}
    return digest({"stage": "search", "base": cfg, "space": space, "data": data, "code": code,
                   "upstream": dict(upstream)})
