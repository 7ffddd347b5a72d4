"""Make sure the encoded logs a config names exist: generate synthetic logs or convert raw ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from crossadapt import log
from crossadapt.config import SCORED_RANGES, TRAINED_RANGES, DataConfig, ExperimentConfig, check_periods
from crossadapt.data import file_checks
from crossadapt.data.arrays import label_counts, list_periods
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FEATURE_MAP_FILE, FeatureMap
from crossadapt.metrics import chance_auc_sd

#: Warn when the test AUC of a scorer unrelated to the labels has a standard deviation above this
#: (about 3,000 test rows at a 12 % click rate): AUC differences below twice it are then noise, and
#: the differences between methods this project measures are 0.002-0.02 AUC.
TEST_AUC_SD_WARN = 0.01
_warned: set[str] = set()

_say = log.sayer(__name__)


def prepare_data(cfg: ExperimentConfig, force: bool = False, num_periods: int | None = None,
                 min_count: int | None = None, check: bool = True) -> FeatureMap:
    """Return the feature map of ``cfg.data.root``, creating the data first when needed.

    ``check``: then also ``check_data_periods`` (a time split that leaks, or periods the data lacks,
    is an error here, before anything trains).

    Synthetic logs are regenerated when the saved generator version, config or scales differ from
    this code's and ``cfg.synthetic`` (cached data is keyed by everything that shapes it). Raw logs
    are converted once unless ``force``; a tabular log (``data.source: table``) again whenever its
    schema, files, options or the adopted teacher vocabularies changed.
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
    elif source == "table":
        if num_periods:
            raise ConfigError("--num-periods: not used by data.source table (data.schema.period cuts the periods)")
        data = cfg.data if min_count is None else replace(cfg.data, min_count=min_count)
        _prepare_table(cfg, data, force or not have)
    elif not have:
        raise ConfigError(f"data.root: {root} holds no {FEATURE_MAP_FILE}; run `crossadapt prepare` first")
    fm = FeatureMap.load(root)
    if check:
        check_data_periods(cfg, fm)
    return fm


def _prepare_table(cfg: ExperimentConfig, data: DataConfig, force: bool) -> None:
    """Convert a tabular log unless ``data.root`` holds this exact conversion (same schema, files,
    options and adopted vocabularies: ``crossadapt.data.converters.table.is_current``)."""
    from crossadapt.data.converters.table import convert_table, is_current, table_spec

    teacher = {}
    if cfg.teacher_import.program:  # the encoder adopts the deployed teacher's vocabularies
        from crossadapt.fingerprint import file_sha256
        from crossadapt.models.teacher_import import check_teacher_files

        files = check_teacher_files(cfg.teacher_import)
        teacher = {"teacher_vocab": files.vocab, "teacher_rows": files.rows,
                   "teacher_vocab_sha256": file_sha256(cfg.teacher_import.vocabularies)}
    spec = table_spec(data, **teacher)
    if force or not is_current(data.root, spec):
        _say(f"converting {data.raw_path} into {data.root}")
        convert_table(spec, data.root, overwrite=True)


def check_data_periods(cfg: ExperimentConfig, fm: FeatureMap) -> None:
    """ConfigError unless the time split is sound (``config.check_periods``), every teacher, window,
    test and stream period is a ``period=<k>`` folder of ``data.root``, and the test periods hold
    both classes (AUC is undefined on one: every comparison the run exists for would be empty).

    DataError naming the file, column and row when a file of those periods breaks the data contract
    (``crossadapt.data.file_checks``): found here, before anything trains; each file is checked
    once per process, so the training stages' own checks of these files cost nothing more."""
    check_periods(cfg.data)
    have = list_periods(cfg.data.root)
    for name in (*TRAINED_RANGES, *SCORED_RANGES):
        a, b = getattr(cfg.data, name)
        missing = sorted(set(range(a, b)) - set(have))
        if missing:
            hint = {"synthetic": " (set synthetic.num_periods)", "parquet": "",
                    "table": " (a shorter data.schema.period cuts more periods)"}.get(
                cfg.data.source, " (set data.num_periods and run `crossadapt prepare --force`)")
            raise ConfigError(f"data.{name} [{a}, {b}): period(s) {_spans(missing)} not in data.root "
                              f"{cfg.data.root}, which holds periods {_spans(have)}{hint}")
    file_checks.check_periods(cfg.data.root, sorted({k for name in (*TRAINED_RANGES, *SCORED_RANGES)
                                                     for k in range(*getattr(cfg.data, name))}), fm)
    rows, clicks = label_counts(cfg.data.root, range(*cfg.data.test_periods), fm.label)
    a, b = cfg.data.test_periods
    if clicks in (0, rows):
        raise ConfigError(f"data.test_periods [{a}, {b}): its {rows} rows in {cfg.data.root} hold {clicks} clicks, "
                          "one class only: AUC is undefined there; choose test periods with both classes")
    sd = chance_auc_sd(clicks, rows - clicks)
    if sd > TEST_AUC_SD_WARN:
        _warn_once(f"data.test_periods [{a}, {b}) holds only {rows} rows ({clicks} clicks): there the AUC of scores "
                   f"unrelated to the labels is 0.5 ± {sd:.3f} (1 sd), so test AUCs and differences between methods "
                   f"within {2 * sd:.3f} are noise; use more test rows for any comparison")


def _warn_once(msg: str) -> None:
    """Print a warning the first time only (the periods are checked before and after data is prepared)."""
    if msg not in _warned:
        _warned.add(msg)
        print(f"[crossadapt] warning: {msg}", flush=True)


def _spans(periods: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2, 5``: a long list of periods stays readable."""
    runs: list[list[int]] = []
    for k in periods:
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)
