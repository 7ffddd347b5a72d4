"""Shared storage for results and checkpoints: a local folder or any pyarrow filesystem URI.

A run writes into its local ``out_dir``; when a stage has finished, :func:`upload` copies that
folder to ``<storage>/<name of out_dir>``, where ``storage`` is a path (``/mnt/shared/runs``) or a
URI pyarrow understands (``file:///...``, ``s3://bucket/prefix``, ``gs://...``). On a cluster the
head node's disk goes away with ``ray down``; the copy does not. Pure pyarrow: no Ray needed.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from crossadapt import atomic, log
from crossadapt.errors import ConfigError
from crossadapt.paths import absolute_location
from crossadapt.tracking import INDEX_FILE

_say = log.sayer(__name__)


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a local path or a URI."""
    if not location:
        raise ConfigError("storage: empty location")
    location = absolute_location(location)  # pyarrow refuses relative local paths
    try:
        return pafs.FileSystem.from_uri(location)
    except (ValueError, OSError) as e:  # unknown scheme, missing credentials, bad bucket name
        raise ConfigError(f"storage: cannot open {location!r} ({e})") from e


def destination(local_dir: str | Path, storage: str) -> str:
    """Where :func:`upload` puts ``local_dir``: ``<storage>/<local_dir's name>``."""
    return absolute_location(storage).rstrip("/") + "/" + Path(local_dir).resolve().name


def upload(local_dir: str | Path, storage: str) -> str | None:
    """Copy the finished folder ``local_dir`` (recursively) to ``<storage>/<its name>``, merged into what is there.

    Returns that destination, or ``None`` when ``storage`` is empty (nothing to do). Nothing in the copy
    is lost to a later upload (calling it again after the next stage, or from another machine's
    ``out_dir`` of the same name, is safe): files only in the copy stay, the W&B index is the union of
    both lists, and a ``results.json`` there with results the local one lacks (fingerprints it does not
    hold) is kept beside it as ``results.<UTC time>.json`` before the local one replaces it. The lock
    file and half-written temp files are not copied; ``results.json`` and the index go last, once the
    checkpoints they name are there.
    """
    if not storage:
        return None
    src = Path(local_dir).resolve()
    if not src.is_dir():
        raise ConfigError(f"storage: {src} is not a folder to upload")
    dest = destination(src, storage)
    fs, path = resolve(dest)
    if isinstance(fs, pafs.LocalFileSystem):
        target = Path(path).resolve()
        if target == src:
            return dest  # storage is out_dir's own parent: already in place
        if src in target.parents:  # copying a folder into itself would never end
            raise ConfigError(f"storage: {dest} lies inside the folder it would receive ({src})")
    fs.create_dir(path, recursive=True)
    files = sorted(f.relative_to(src).as_posix() for f in src.rglob("*") if f.is_file() and not _transient(f.name))
    local = pafs.LocalFileSystem()
    for rel in (f for f in files if f not in MERGED):
        if "/" in rel:
            fs.create_dir(f"{path}/{rel.rsplit('/', 1)[0]}", recursive=True)
        pafs.copy_files(str(src / rel), f"{path}/{rel}", source_filesystem=local, destination_filesystem=fs)
    for rel in (f for f in MERGED if f in files):
        MERGED[rel](fs, f"{path}/{rel}", json.loads((src / rel).read_bytes()))
    _say(f"copied {src} to {dest}")
    return dest


RESULTS_FILE = "results.json"  # crossadapt.experiment.compare.RESULTS_FILE (a layer above: not imported)
LOCK_PREFIX = ".crossadapt.lock"  # crossadapt.experiment.lock.LOCK_FILE and its temp files


def _transient(name: str) -> bool:
    """Files that belong to a running command, not to its results: locks and atomic writes' temp files."""
    return name.startswith(LOCK_PREFIX) or name == INDEX_FILE + ".lock" or (name.startswith(".") and name.endswith(".tmp"))


def _read_json(fs: pafs.FileSystem, path: str) -> Any:
    """The JSON at ``path`` in ``fs``; None when absent or unreadable."""
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _write_json(fs: pafs.FileSystem, path: str, obj: Any) -> None:
    """Write ``obj`` to ``path`` whole: beside it, then moved over it (an object store's put is whole anyway)."""
    data = atomic.json_text(obj).encode()
    if not isinstance(fs, pafs.LocalFileSystem):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    atomic.write_bytes(path, data)


def _fingerprints(obj: Any) -> set[str]:
    """Every ``fingerprint`` string anywhere in a results.json: what its results were made from."""
    if isinstance(obj, dict):
        found = {obj["fingerprint"]} if isinstance(obj.get("fingerprint"), str) else set()
        return found.union(*(_fingerprints(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_fingerprints(v) for v in obj))
    return set()


def _contained(stored: Any, local: Any) -> bool:
    """Whether the results ``stored`` are all in ``local``: every fingerprint, or without fingerprints
    (a results.json from before them), every top-level block unchanged."""
    fps = _fingerprints(stored)
    if fps:
        return fps <= _fingerprints(local)
    return isinstance(stored, dict) and isinstance(local, dict) and all(local.get(k) == v for k, v in stored.items())


def _merge_results(fs: pafs.FileSystem, path: str, local: Any) -> None:
    """Write the local results.json over the copy's; the copy's is kept aside first when it holds results
    the local one lacks (another machine's run of this name, or results a rerun dropped)."""
    stored = _read_json(fs, path)
    if stored is not None and stored != local:
        if not _contained(stored, local):
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            aside = f"{path.rsplit('/', 1)[0]}/results.{stamp}.json"
            fs.copy_file(path, aside)
            _say(f"storage: the copy's {RESULTS_FILE} held results this run's does not; kept as {aside}")
    _write_json(fs, path, local)


def _merge_index(fs: pafs.FileSystem, path: str, local: Any) -> None:
    """The copy's W&B run list plus the local one (the local entry wins for a run id in both)."""
    stored = _read_json(fs, path)
    local = [r for r in local if isinstance(r, dict)] if isinstance(local, list) else []
    ids = {r.get("id") for r in local}
    kept = [r for r in stored if isinstance(r, dict) and r.get("id") not in ids] if isinstance(stored, list) else []
    _write_json(fs, path, [*kept, *local])


#: Files merged into the copy rather than copied over it, in this order (after every other file).
MERGED = {RESULTS_FILE: _merge_results, INDEX_FILE: _merge_index}


def read_bytes(location: str) -> bytes:
    """The content of one file given as a local path or a URI."""
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_json(location: str) -> Any:
    """One JSON file (e.g. ``<storage>/demo/results.json``) from a local path or a URI."""
    return json.loads(read_bytes(location))


def list_files(location: str) -> list[str]:
    """Paths of all files under a folder, relative to it and sorted (``[]`` when it is absent)."""
    fs, path = resolve(location)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    base = path.rstrip("/") + "/"
    return sorted(i.path[len(base):] for i in infos if i.type == pafs.FileType.File)
