"""Make sure the encoded logs a config names exist: generate synthetic logs or convert raw ones."""

from __future__ import annotations

from pathlib import Path

from crossadapt import log
from crossadapt.config import SCORED_RANGES, TRAINED_RANGES, ExperimentConfig, check_periods
from crossadapt.data.arrays import label_counts, list_periods
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FEATURE_MAP_FILE, FeatureMap

_say = log.sayer(__name__)


def prepare_data(cfg: ExperimentConfig, force: bool = False, num_periods: int | None = None,
                 min_count: int | None = None, check: bool = True) -> FeatureMap:
    """Return the feature map of ``cfg.data.root``, creating the data first when needed.

    ``check``: then also ``check_data_periods`` (a time split that leaks, or periods the data lacks,
    is an error here, before anything trains).

    Synthetic logs are regenerated when the saved generator version, config or scales differ from
    this code's and ``cfg.synthetic`` (cached data is keyed by everything that shapes it). Raw logs
    are converted once unless ``force``.
    """
    root = Path(cfg.data.root)
    have = (root / FEATURE_MAP_FILE).exists()
    source = cfg.data.source
    if source == "synthetic":
        from crossadapt.data.synthetic import generate, is_current

        if force or not have or not is_current(root, cfg.synthetic):
            _say(f"generating synthetic logs in {root}")
            generate(cfg.synthetic, root)
    elif source in ("criteo", "avazu", "kdd12"):
        if force or not have:
            if not cfg.data.raw_path:
                raise ConfigError(f"data.raw_path: needed to convert {source} logs into {root}")
            from crossadapt.data.converters import convert

            convert(source, cfg.data.raw_path, root, min_count=min_count or cfg.data.min_count,
                    num_periods=num_periods or cfg.data.num_periods or None, overwrite=force)
    elif not have:
        raise ConfigError(f"data.root: {root} holds no {FEATURE_MAP_FILE}; run `crossadapt prepare` first")
    fm = FeatureMap.load(root)
    if check:
        check_data_periods(cfg, fm)
    return fm


def check_data_periods(cfg: ExperimentConfig, fm: FeatureMap) -> None:
    """ConfigError unless the time split is sound (``config.check_periods``), every teacher, window,
    test and stream period is a ``period=<k>`` folder of ``data.root``, and the test periods hold
    both classes (AUC is undefined on one: every comparison the run exists for would be empty)."""
    check_periods(cfg.data)
    have = list_periods(cfg.data.root)
    for name in (*TRAINED_RANGES, *SCORED_RANGES):
        a, b = getattr(cfg.data, name)
        missing = sorted(set(range(a, b)) - set(have))
        if missing:
            hint = {"synthetic": " (set synthetic.num_periods)", "parquet": ""}.get(
                cfg.data.source, " (set data.num_periods and run `crossadapt prepare --force`)")
            raise ConfigError(f"data.{name} [{a}, {b}): period(s) {_spans(missing)} not in data.root "
                              f"{cfg.data.root}, which holds periods {_spans(have)}{hint}")
    rows, clicks = label_counts(cfg.data.root, range(*cfg.data.test_periods), fm.label)
    if clicks in (0, rows):
        a, b = cfg.data.test_periods
        raise ConfigError(f"data.test_periods [{a}, {b}): its {rows} rows in {cfg.data.root} hold {clicks} clicks, "
                          "one class only: AUC is undefined there; choose test periods with both classes")


def _spans(periods: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2, 5``: a long list of periods stays readable."""
    runs: list[list[int]] = []
    for k in periods:
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)
