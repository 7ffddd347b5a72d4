"""Pause points for fault tests: a process stops at a named step so that a test can kill it there.

A test writes ``<dir>/pause_at.json`` (``{"at": {"phase": 1, "epoch": 0}, "timeout_s": 120}``). The
first process that reaches a matching :func:`pause_point` records its pid in ``<dir>/paused.json``
and waits, so the test's kill lands exactly at that step, never early or late by a race. Later
passes over the same point (the replay after the kill) run through. Without ``pause_at.json`` a
pause point costs one ``stat``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from crossadapt import atomic

PAUSE_FILE = "pause_at.json"
PAUSED_FILE = "paused.json"

log = logging.getLogger(__name__)


def request_pause(directory: str | os.PathLike, timeout_s: float = 120.0, **at: Any) -> None:
    """Ask the next process that reaches a pause point matching ``at`` in ``directory`` to wait there."""
    atomic.write_json(Path(directory) / PAUSE_FILE, {"at": at, "timeout_s": timeout_s})


def pause_point(directory: str | os.PathLike, **where: Any) -> None:
    """Wait here (up to the request's ``timeout_s``) if a test asked for a pause at ``where``, once."""
    d = Path(directory)
    request = d / PAUSE_FILE
    if not request.exists():
        return
    spec = json.loads(request.read_text())
    if any(where.get(k) != v for k, v in spec["at"].items()) or (d / PAUSED_FILE).exists():
        return
    atomic.write_json(d / PAUSED_FILE, {"pid": os.getpid(), "at": where})
    log.warning("pid %d paused at %s for a fault test (%s)", os.getpid(), where, request)
    time.sleep(float(spec.get("timeout_s", 120.0)))  # the test kills this process before the time is up
    log.warning("pid %d: nobody killed it at %s; going on", os.getpid(), where)
