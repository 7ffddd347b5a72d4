"""Search spaces: declarative YAML files in ``tune_spaces/``, validated into typed specs (no Ray here).

A space file::

    stage: offline            # offline: trials train CrossAdapt students; online: trials replay the stream
    num_samples: 8
    max_concurrent: 0         # 0: as many as fit the cluster's CPUs (or GPUs)
    trial_cpus: 1.0
    trial_gpus: 0.0
    asha: {grace_period: 2, reduction_factor: 2}
    params:
      distill.r: {type: uniform, low: 0.05, high: 0.3}
      distill.phase1_lr: {type: loguniform, low: 5.0e-4, high: 5.0e-3}
      online.tau: {type: choice, values: [1, 5, 10, 20]}

Parameter names are dotted config keys (validated against ``ExperimentConfig``); types are
``choice`` (``values``), ``uniform`` / ``loguniform`` (``low`` < ``high``, loguniform > 0) and
``randint`` (``low`` <= x < ``high``). ``online.theta_low`` < ``online.theta_high`` must hold for
every point of the space, so the two ranges may not overlap.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from crossadapt.config import ExperimentConfig, load_config, to_dict
from crossadapt.errors import ConfigError

ParamType = Literal["choice", "uniform", "loguniform", "randint"]
_KEYS = {"choice": {"values"}, "uniform": {"low", "high"}, "loguniform": {"low", "high"}, "randint": {"low", "high"}}
#: The metric each stage's trials report (higher is better).
METRICS = {"offline": "valid_auc", "online": "online_auc"}


@dataclass(frozen=True)
class ParamSpec:
    """One searched config key and its distribution."""

    key: str
    type: ParamType
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()

    def bounds(self) -> tuple[float, float]:
        """Smallest and largest value the parameter can take."""
        if self.type == "choice":
            return min(self.values), max(self.values)
        return float(self.low), float(self.high) - (1 if self.type == "randint" else 0)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see the module docstring for the file format)."""

    name: str
    stage: Literal["offline", "online"]
    params: tuple[ParamSpec, ...]
    num_samples: int = 8
    max_concurrent: int = 0
    trial_cpus: float = 1.0
    trial_gpus: float = 0.0
    asha: dict[str, Any] = field(default_factory=lambda: {"grace_period": 2, "reduction_factor": 2})

    @property
    def metric(self) -> str:
        return METRICS[self.stage]

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]


def _param(key: str, spec: Any, where: str) -> ParamSpec:
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"{where}: params.{key}: expected a mapping with a 'type' key, got {spec!r}")
    kind = spec["type"]
    if kind not in _KEYS:
        raise ConfigError(f"{where}: params.{key}.type: must be one of {sorted(_KEYS)}, got {kind!r}")
    extra = set(spec) - _KEYS[kind] - {"type"}
    missing = _KEYS[kind] - set(spec)
    if extra or missing:
        raise ConfigError(f"{where}: params.{key}: a {kind} takes {sorted(_KEYS[kind])}; "
                          f"unknown {sorted(extra)}, missing {sorted(missing)}")
    if kind == "choice":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: params.{key}.values: expected a non-empty list, got {values!r}")
        return ParamSpec(key, kind, values=tuple(values))
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: params.{key}: low and high must be numbers, got {spec['low']!r}, {spec['high']!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"{where}: params.{key}: need finite low < high, got {low}, {high}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: params.{key}: loguniform needs low > 0, got {low}")
    if kind == "randint" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{where}: params.{key}: randint needs integer bounds, got {low}, {high}")
    return ParamSpec(key, kind, low=low, high=high)


def _check_against_config(params: tuple[ParamSpec, ...], where: str) -> None:
    """Every key must be a config key, and every corner of the space must make a valid config."""
    by_key = {p.key: p for p in params}
    lo, hi = by_key.get("online.theta_low"), by_key.get("online.theta_high")
    default = ExperimentConfig().online
    lo_max = lo.bounds()[1] if lo else default.theta_low
    hi_min = hi.bounds()[0] if hi else default.theta_high
    if (lo or hi) and not lo_max < hi_min:
        raise ConfigError(f"{where}: online.theta_low must stay below online.theta_high everywhere in the space: "
                          f"largest theta_low {lo_max} >= smallest theta_high {hi_min}")
    # The two thresholds are checked together above; each corner of one is tried with the other
    # at its most permissive value, so the message names the key that is really out of range.
    partner = {"online.theta_low": {"online.theta_high": hi.bounds()[1] if hi else default.theta_high},
               "online.theta_high": {"online.theta_low": lo.bounds()[0] if lo else default.theta_low}}
    for p in params:
        for value in {p.bounds()[0], p.bounds()[1], *p.values}:
            if p.type == "randint":
                value = int(value)
            try:
                load_config(None, {**partner.get(p.key, {}), p.key: value})
            except ConfigError as e:
                raise ConfigError(f"{where}: params.{p.key}: {e}") from None


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file; ConfigError naming the file and key otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: search space file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    allowed = {f.name for f in dataclasses.fields(SearchSpace)} - {"name"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {unknown}; valid: {sorted(allowed)}")
    stage = raw.get("stage", "offline")
    if stage not in METRICS:
        raise ConfigError(f"{p}: stage: must be one of {sorted(METRICS)}, got {stage!r}")
    params_raw = raw.get("params")
    if not isinstance(params_raw, dict) or not params_raw:
        raise ConfigError(f"{p}: params: expected a non-empty mapping of config keys to distributions")
    shared = [k for k in params_raw if k.split(".")[0] in ("teacher", "student", "data")]
    if shared:
        raise ConfigError(f"{p}: params {shared}: trials share one teacher, projection and data layout, "
                          "so teacher.*, student.* and data.* cannot be searched")
    params = tuple(_param(k, v, str(p)) for k, v in params_raw.items())
    _check_against_config(params, str(p))
    num_samples, max_conc = raw.get("num_samples", 8), raw.get("max_concurrent", 0)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"{p}: num_samples: must be an integer >= 1, got {num_samples!r}")
    if not isinstance(max_conc, int) or max_conc < 0:
        raise ConfigError(f"{p}: max_concurrent: must be an integer >= 0, got {max_conc!r}")
    cpus, gpus = float(raw.get("trial_cpus", 1.0)), float(raw.get("trial_gpus", 0.0))
    if cpus <= 0 or gpus < 0:
        raise ConfigError(f"{p}: trial_cpus must be > 0 and trial_gpus >= 0, got {cpus}, {gpus}")
    asha = raw.get("asha", {"grace_period": 2, "reduction_factor": 2})
    if not isinstance(asha, dict) or set(asha) - {"grace_period", "reduction_factor", "max_t"}:
        raise ConfigError(f"{p}: asha: takes grace_period, reduction_factor and max_t, got {asha!r}")
    return SearchSpace(p.stem, stage, params, num_samples, max_conc, cpus, gpus, dict(asha))


def apply_params(base: ExperimentConfig, params: dict[str, Any]) -> ExperimentConfig:
    """``base`` with the dotted overrides of one trial, validated like any config."""
    return load_config(None, {**_flatten(to_dict(base)), **params})


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out
