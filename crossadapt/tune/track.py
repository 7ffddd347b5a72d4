"""W&B runs of Tune trials, written by the driver from the results Tune hands it (a Tune callback).

A trial's process never talks to W&B: ASHA stops most trials part-way, and a trial process stopped
inside W&B left an empty run and a traceback. Here each report of a trial is logged to its run as
Tune receives it, and the run is closed, with the trial's best metric, when Tune says the trial
completed, stopped or failed.
"""

from __future__ import annotations

import math
from typing import Any

from ray import tune

from crossadapt.config import ExperimentConfig, TrackingConfig, from_dict, to_dict
from crossadapt.tracking import TrackedRun, Tracker
from crossadapt.tune.space import apply_params

# Tune's own bookkeeping in every result (not the trial's metrics).
_TUNE_KEYS = {"config", "trial_id", "experiment_id", "date", "timestamp", "pid", "hostname", "node_ip", "done",
              "time_this_iter_s", "time_total_s", "time_since_restore", "iterations_since_restore",
              "checkpoint_dir_name", "should_checkpoint"}


def trial_name(trial: Any) -> str:
    """A trial's name and folder: ``trial_<id>`` (Tune's default spells out every sampled value)."""
    return f"trial_{trial.trial_id}"


class TrialTracking(tune.Callback):
    """One W&B run per trial, ``tune-<trial name>`` of type ``tune-<stage>``, logged as the trial reports.

    Args:
        tracking: the tracking section of the base config.
        out_dir: the experiment folder (offline W&B runs go under it).
        stage: ``offline`` or ``online`` (the search space's stage).
        metric: the searched metric; its best value is the run's summary.
    """

    def __init__(self, tracking: TrackingConfig, out_dir: str, stage: str, metric: str) -> None:
        self.tracking, self.out_dir, self.stage, self.metric = tracking, out_dir, stage, metric
        self._tracker: Tracker | None = None
        self._best: dict[str, float] = {}
        self._reports: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:  # Tune saves its callbacks with the experiment: no live runs
        return {**self.__dict__, "_tracker": None, "_best": {}, "_reports": {}}

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self.tracking, self.out_dir)
        return self._tracker

    def _run(self, trial: Any) -> TrackedRun:
        config = trial.config or {}
        params = config.get("params", {})
        try:
            cfg = to_dict(apply_params(from_dict(ExperimentConfig, config["base"]), params))
        except Exception:  # the run is still made, with the sampled keys only
            cfg = {}
        return self.tracker.run(f"tune-{trial_name(trial)}", f"tune-{self.stage}", {**cfg, "params": params})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """Log one report: step = the stream period for online trials, else the report's index."""
        metrics = {k: v for k, v in result.items() if k not in _TUNE_KEYS}
        step = int(result["period"]) if "period" in result else int(result.get("training_iteration", 1)) - 1
        self._run(trial).log(metrics, step=step)
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and not math.isnan(value):
            self._best[trial.trial_id] = max(value, self._best.get(trial.trial_id, -math.inf))
        self._reports[trial.trial_id] = self._reports.get(trial.trial_id, 0) + 1

    def _finish(self, trial: Any, status: str) -> None:
        run = self._run(trial)
        best = self._best.pop(trial.trial_id, None)
        run.summary({"status": status, "reports": self._reports.pop(trial.trial_id, 0),
                     **({f"best_{self.metric}": best} if best is not None else {})})
        run.finish()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Completed, or stopped by ASHA: close its run."""
        self._finish(trial, "ok")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Failed: close its run, marked so."""
        self._finish(trial, "error")
