"""Shared storage for results and checkpoints: a local folder or any pyarrow filesystem URI.

A run writes into its local ``out_dir``; when a stage has finished, :func:`upload` copies that
folder to ``<storage>/<name of out_dir>``, where ``storage`` is a path (``/mnt/shared/runs``) or a
URI pyarrow understands (``file:///...``, ``s3://bucket/prefix``, ``gs://...``). On a cluster the
head node's disk goes away with ``ray down``; the copy does not. Pure pyarrow: no Ray needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from crossadapt import log
from crossadapt.config import absolute_location
from crossadapt.errors import ConfigError

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
    """Copy the finished folder ``local_dir`` (recursively) to ``<storage>/<its name>``.

    Returns that destination, or ``None`` when ``storage`` is empty (nothing to do). Files already
    there are overwritten, others are kept, so calling it again after the next stage is safe.
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
    pafs.copy_files(str(src), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    _say(f"copied {src} to {dest}")
    return dest


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
