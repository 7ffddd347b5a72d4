"""Where a config's local paths point (pure: no Ray import).

- A relative path written in a config file is relative to that file's folder; one given with
  ``--set`` (or a default) is relative to the current folder. URIs (``s3://...``) stay as given.
- Under ``ray job submit --working-dir DIR`` the driver runs in Ray's temporary copy of ``DIR``
  (``/tmp/ray/session_*/runtime_resources/working_dir_files/_ray_pkg_*``), deleted with the session.
  Relative paths resolve inside that copy, which is right for inputs shipped with the job and wrong
  for anything written (``crossadapt.experiment.preflight`` refuses those), unless the job's
  environment names the folder it was submitted from, ``CROSSADAPT_SUBMIT_DIR``: relative paths
  then resolve there, as they would in a local run of the same command (a local head, or a checkout
  on a filesystem every node mounts at the same path).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Names the folder a job was submitted from (the local path of ``--working-dir``).
SUBMIT_DIR_ENV = "CROSSADAPT_SUBMIT_DIR"
#: Set by Ray's job supervisor for the driver of a submitted job (its runtime env, as JSON).
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
#: The config keys that hold local paths or URIs.
PATH_KEYS = ("out_dir", "storage", "data.root", "data.raw_path", "teacher_import.program",
             "teacher_import.tables", "teacher_import.vocabularies")


def is_uri(location: str) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: a location for pyarrow, not a local path."""
    return "://" in location


def job_working_dir() -> Path | None:
    """Under ``ray job submit --working-dir``, the driver's folder (Ray's temporary copy of the
    working dir); ``None`` otherwise.

    Known from the runtime env Ray's job supervisor hands the driver (``RAY_JOB_CONFIG_JSON_ENV_VAR``
    with a ``working_dir``), or from the folder itself lying in a session's ``runtime_resources``.
    """
    cwd = Path.cwd()
    raw = os.environ.get(RAY_JOB_ENV)
    if raw:
        try:
            runtime_env = (json.loads(raw) or {}).get("runtime_env") or {}
        except (ValueError, AttributeError):
            runtime_env = {}
        if runtime_env.get("working_dir"):
            return cwd
    return cwd if "runtime_resources" in cwd.parts else None


def temporary_area(job_dir: Path) -> Path:
    """The part of the disk a submitted job's relative paths must not land in: the Ray session's
    ``runtime_resources`` (every unpacked working dir), or the job's folder itself."""
    parts = job_dir.parts
    if "runtime_resources" in parts:
        return Path(*parts[: parts.index("runtime_resources") + 1])
    return job_dir


def submit_dir() -> Path | None:
    """The folder named by ``CROSSADAPT_SUBMIT_DIR`` (absolute), or ``None``."""
    value = os.environ.get(SUBMIT_DIR_ENV, "")
    return Path(value).expanduser().absolute() if value else None


def rebase(folder: Path) -> Path:
    """``folder``, or under a submitted job with ``CROSSADAPT_SUBMIT_DIR`` the submitted folder it is
    a copy of (``<job dir>/configs`` -> ``<submit dir>/configs``)."""
    job, origin = job_working_dir(), submit_dir()
    if job is None or origin is None:
        return folder
    try:
        return origin / folder.relative_to(job)
    except ValueError:  # not inside the job's copy: an absolute path given on purpose
        return folder


def absolute_location(location: str, base: str | os.PathLike | None = None) -> str:
    """``location`` made absolute against ``base`` (default: the current folder), both rebased under a
    submitted job (see ``rebase``); URIs and ``""`` unchanged."""
    if not location or is_uri(location):
        return location
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = rebase(Path(base).absolute() if base is not None else Path.cwd()) / path
    return str(path.resolve())
