"""The project's logging: one ``crossadapt`` logger tree, one console handler, set up by the command line.

Library modules log through ``logging.getLogger(__name__)``; the modules that print progress keep
their one-line ``_say(msg)`` calls with ``_say = log.sayer(__name__)`` (INFO on the module's logger).
A library caller sees nothing unless it sets logging up (``setup``, or its own handlers): only the
command line (``crossadapt.cli.main``, and the ``ray_jobs/`` scripts through it) decides what is
printed. Levels: ``--quiet`` WARNING (results and problems only), default INFO (one line per
stage, job or stream, with progress), ``--verbose`` DEBUG (every epoch and period too).

Ray worker processes inherit the level through ``LEVEL_ENV`` (see ``crossadapt.ray_logs``), so a
line logged on a worker is shown or not by the same rule as on the driver.

Example::

    from crossadapt import log
    _say = log.sayer(__name__)
    _say("teacher: 3 of 10 epochs")
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, TextIO

ROOT = "crossadapt"
#: The level the command line chose, for Ray workers (they inherit the driver's environment).
LEVEL_ENV = "CROSSADAPT_LOG_LEVEL"
QUIET, NORMAL, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


def sayer(name: str) -> Callable[[str], None]:
    """A module's ``_say``: INFO on ``logging.getLogger(name)``."""
    return logging.getLogger(name).info


class Formatter(logging.Formatter):
    """``[crossadapt] message``; warnings and errors say so; other libraries' records name their logger."""

    def format(self, record: logging.LogRecord) -> str:
        source = ROOT if record.name == ROOT or record.name.startswith(ROOT + ".") else record.name
        kind = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        text = f"[{source}] {kind}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _Handler(logging.StreamHandler):
    """The one console handler (a class of its own, so that ``setup`` replaces it rather than adding one).
    Without a stream of its own it writes to ``sys.stdout`` as it is at each record (tests swap it)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stdout)
        self.follow_stdout = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self.follow_stdout:
            self.stream = sys.stdout
        super().emit(record)


def level_from_env(default: int = NORMAL) -> int:
    """The level named by ``LEVEL_ENV`` (a number or a name), else ``default``."""
    value = os.environ.get(LEVEL_ENV, "")
    if value.isdigit():
        return int(value)
    level = logging.getLevelName(value.upper()) if value else default
    return level if isinstance(level, int) else default


def setup(level: int = NORMAL, stream: TextIO | None = None, propagate_env: bool = True) -> logging.Handler:
    """Send ``crossadapt`` records of ``level`` and above to ``stream``, one line each (default: stdout, as
    it is at each record, where the ``[crossadapt]`` lines always went).

    Other libraries' records reach the same handler through the root logger from WARNING up. Calling
    it again replaces the handler (tests, or a second ``main`` in one process). ``propagate_env``:
    export the level to Ray workers started after this call (``LEVEL_ENV``).
    """
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(h)
    handler = _Handler(stream)
    handler.setFormatter(Formatter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger(ROOT).setLevel(level)
    if propagate_env:
        os.environ[LEVEL_ENV] = logging.getLevelName(level)
    return handler


def setup_worker() -> None:
    """In a Ray worker process: ``crossadapt`` records at the driver's level (``LEVEL_ENV``) to stderr,
    which Ray forwards to the driver. Not propagated: Ray Train's own root handler would print them twice."""
    logger = logging.getLogger(ROOT)
    logger.setLevel(level_from_env())
    if not any(isinstance(h, _Handler) for h in logger.handlers):
        handler = _Handler(sys.stderr)
        handler.setFormatter(Formatter())
        logger.addHandler(handler)
    logger.propagate = False
