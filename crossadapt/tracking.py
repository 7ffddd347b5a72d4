"""Experiment tracking with W&B: one run per method x seed (and per Tune trial), grouped by experiment.

Tracking never fails a run. Without ``WANDB_API_KEY`` (or with ``tracking.wandb: offline``, the
default) runs are written offline under ``<out_dir>/wandb`` for a later ``wandb sync``; without the
wandb package, with ``tracking.wandb: disabled`` or ``WANDB_MODE=disabled``, or when W&B raises,
tracking is off and says so once. The JSON results are written by the pipeline either way.

A run stays open from its first metrics to the end of its stage: the stage logs each epoch or period
as it happens (``tracker.run(name, ...)`` returns the open run of that name), then the figures of
the finished stage go to the same run, steps already logged are not logged twice.

Every run opened is listed in ``<out_dir>/wandb_runs.json`` (name, group, job type, folder), so a
user without W&B can still see what would sync; each command adds its runs to the list left by the
earlier ones. No environment variable, and so no API key, is
ever logged.

Example::

    tracker = Tracker(cfg.tracking, cfg.out_dir)
    with tracker.run("kd-seed0", job_type="kd", config={...}) as run:
        run.log({"valid_auc": 0.71}, step=0)
        run.summary({"auc": 0.72})
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from crossadapt import atomic
from crossadapt.config import TrackingConfig

INDEX_FILE = "wandb_runs.json"


class TrackedRun:
    """A run that records nothing (W&B off); :class:`WandbRun` is the live one."""

    name = ""

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Metrics of one step (epoch, period, trial iteration)."""

    def summary(self, metrics: Mapping[str, Any]) -> None:
        """Final figures of the run."""

    def image(self, key: str, path: str | os.PathLike) -> None:
        """A PNG (a report plot)."""

    def finish(self) -> None:
        """Close the run (idempotent)."""

    def __enter__(self) -> "TrackedRun":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


class WandbRun(TrackedRun):
    """A live W&B run; any W&B error turns the tracker off instead of failing the caller."""

    def __init__(self, tracker: "Tracker", run: Any, name: str) -> None:
        self.tracker, self.run, self.name = tracker, run, name
        self.last_step: int | None = None  # W&B drops a step below its current one (with a warning)

    def _guard(self, fn, *args: Any) -> None:
        if self.run is None:
            return
        try:
            fn(*args)
        except Exception as e:  # tracking must never fail the pipeline
            self.tracker.disable(f"W&B call failed ({type(e).__name__}: {e})")
            self.run = None

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Metrics of ``step``; a step at or below one already logged is skipped (it was logged live)."""
        if step is not None:
            if self.last_step is not None and step <= self.last_step:
                return
            self.last_step = step
        self._guard(lambda: self.run.log({k: v for k, v in metrics.items() if _scalar(v)}, step=step))

    def summary(self, metrics: Mapping[str, Any]) -> None:
        self._guard(lambda: self.run.summary.update({k: v for k, v in metrics.items() if _scalar(v)}))

    def image(self, key: str, path: str | os.PathLike) -> None:
        def put() -> None:
            import wandb

            self.run.log({key: wandb.Image(str(path))})

        self._guard(put)

    def finish(self) -> None:
        self._guard(lambda: self.run.finish())
        self.run = None
        self.tracker._closed(self)


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str)) and not isinstance(v, bool)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX; Tune trials add to one list at once); no lock elsewhere."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_index(path: Path) -> list[dict[str, Any]]:
    """The runs listed by earlier commands (an unreadable list is started over, with a warning)."""
    if not path.exists():
        return []
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        warnings.warn(f"crossadapt: {path} is unreadable ({e}); starting a new list of W&B runs", stacklevel=3)
        return []
    return [r for r in index if isinstance(r, dict)] if isinstance(index, list) else []


class Tracker:
    """Opens W&B runs for one experiment (``tracking.project``, group ``tracking.experiment``).

    Args:
        cfg: the tracking section of the config.
        out_dir: the experiment folder; offline runs go to ``<out_dir>/wandb``.
    """

    def __init__(self, cfg: TrackingConfig, out_dir: str | os.PathLike) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.group = cfg.experiment if cfg.experiment != "default" else self.out.name
        self.index: list[dict[str, Any]] = _read_index(self.out / INDEX_FILE)
        self._open: dict[str, WandbRun] = {}  # runs that a stage logs to as it goes, by name
        self._lock = threading.Lock()  # stages log epochs from a watcher thread
        self.mode = self._mode()
        self.off_reason = "" if self.mode != "disabled" else "tracking.wandb or WANDB_MODE is disabled"
        if self.mode != "disabled":
            try:
                import wandb  # noqa: F401
            except Exception as e:  # absent or broken: metrics still go to JSON
                self.disable(f"wandb cannot be imported ({type(e).__name__}: {e})")

    def _mode(self) -> str:
        if os.environ.get("WANDB_MODE") == "disabled" or self.cfg.wandb == "disabled":
            return "disabled"
        if os.environ.get("WANDB_MODE") == "offline" or self.cfg.wandb == "offline":
            return "offline"
        # "online" needs a key; without one, offline rather than a prompt or an error
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def disable(self, reason: str) -> None:
        """Turn tracking off for the rest of the experiment (said once)."""
        if self.mode != "disabled":
            warnings.warn(f"crossadapt: W&B tracking off: {reason}; results are still written as JSON", stacklevel=2)
        self.mode, self.off_reason = "disabled", reason

    def _add_to_index(self, entry: dict[str, Any]) -> None:
        """Add ``entry`` to ``wandb_runs.json`` as it is on disk now (other processes may have added theirs)."""
        path = self.out / INDEX_FILE
        with _locked(self.out / (INDEX_FILE + ".lock")):
            self.index = [*(r for r in _read_index(path) if r.get("id") != entry["id"]), entry]
            atomic.write_json(path, self.index)

    def _closed(self, run: WandbRun) -> None:
        with self._lock:
            if self._open.get(run.name) is run:
                del self._open[run.name]

    def run(self, name: str, job_type: str, config: Mapping[str, Any]) -> TrackedRun:
        """The run named ``name`` of type ``job_type`` in this experiment's group: the open one of that
        name when there is one, else a new one (a no-op run when tracking is off)."""
        with self._lock:
            if name in self._open:
                return self._open[name]
            new = self._new_run(name, job_type, config)
            if isinstance(new, WandbRun):
                self._open[name] = new
            return new

    def _new_run(self, name: str, job_type: str, config: Mapping[str, Any]) -> TrackedRun:
        if not self.enabled:
            return TrackedRun()
        try:
            import wandb

            self.out.mkdir(parents=True, exist_ok=True)
            settings = wandb.Settings(mode=self.mode, silent=True, console="off", x_disable_stats=True,
                                      x_disable_meta=True)
            run = wandb.init(project=self.cfg.project, group=self.group, job_type=job_type, name=name,
                             dir=str(self.out), config=dict(config), settings=settings, reinit="create_new")
        except Exception as e:
            self.disable(f"wandb.init failed ({type(e).__name__}: {e})")
            return TrackedRun()
        self._add_to_index({"name": name, "group": self.group, "job_type": job_type, "mode": self.mode,
                            "id": run.id, "dir": str(Path(run.dir).parent)})
        return WandbRun(self, run, name)
