"""Everything a command can check before Ray starts: names, periods against the data, paths, files.

Every command that takes a config (``crossadapt <command>`` and ``ray_jobs/*.py``) calls
``preflight`` right after loading it and before ``init_ray``; ``crossadapt validate`` calls it and
starts nothing (no Ray, no data generation, no training). Bad input raises a ``ConfigError`` naming
the key, file or period, in seconds, instead of failing after the teacher has trained:

- model names and hyper-parameters (``teacher``, ``student``, ``zoo --models``): each model is built
  once on a one-id-per-field copy of the data's fields;
- offline ``methods`` and ``online.methods`` against their registries;
- every period range against the data on disk, or against what ``prepare`` will write (synthetic:
  ``synthetic.num_periods``; raw logs: ``data.num_periods``) when the data is not there yet;
- the raw logs to convert exist; ``out_dir`` (and a local ``storage``, and ``data.root`` when it
  will be written) can be created and written; under ``ray job submit`` none of them lies in Ray's
  temporary copy of the working dir; ``storage`` is a path or a URI pyarrow reads;
- what the command itself needs: the checkpoints of ``online``, the offline results an online
  stage starts from, the search space of ``tune``.

``paths=False`` (``crossadapt validate --no-paths``) skips what looks at the filesystem (data,
raw logs, out_dir, storage, checkpoints, earlier results): for checking a cluster's command, whose
``/mnt/shared/...`` paths exist only there, from another machine.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crossadapt.config import ExperimentConfig, ModelConfig
from crossadapt.errors import ConfigError
from crossadapt.featuremap import FEATURE_MAP_FILE, FeatureMap, FieldSpec
from crossadapt.paths import SUBMIT_DIR_ENV, is_uri, job_working_dir, temporary_area

#: The commands that take a config, and what each one does with it.
COMMANDS = ("prepare", "train", "transfer", "online", "demo", "zoo", "tune")
RAW_SOURCES = ("criteo", "avazu", "kdd12")
#: URI schemes ``pyarrow.fs.FileSystem.from_uri`` opens (storage).
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


@dataclass(frozen=True)
class Request:
    """What a command will do with its config, beyond the config itself.

    Attributes:
        command: one of ``COMMANDS``.
        models: ``zoo --models`` (registry names).
        space: ``tune --space`` (a search-space file).
        teacher, student: ``online --teacher`` / ``--student`` checkpoints.
        num_periods: ``prepare --num-periods`` (overrides ``data.num_periods``).
        force: ``prepare --force``: the data is rebuilt whatever is on disk.
    """

    command: str
    models: tuple[str, ...] = ()
    space: str | None = None
    teacher: str | None = None
    student: str | None = None
    num_periods: int | None = None
    force: bool = False


def preflight(cfg: ExperimentConfig, request: Request, paths: bool = True) -> None:
    """Raise ``ConfigError`` naming the key, file or period when ``request`` on ``cfg`` would fail
    later for a reason knowable now (see the module docstring); starts and writes nothing."""
    if request.command not in COMMANDS:
        raise ConfigError(f"preflight: unknown command {request.command!r}; one of {list(COMMANDS)}")
    if request.command == "train" and cfg.teacher_import.program:
        raise ConfigError(f"teacher_import.program: the teacher is imported ({cfg.teacher_import.program}), "
                          "not trained here; `crossadapt transfer` uses it as it is")
    if cfg.data.source == "synthetic":
        from crossadapt.data.synthetic_world import check_config

        check_config(cfg.synthetic)  # the generator's own rules, named synthetic.<key>
    fm = _feature_map(cfg, request) if paths else None
    check_models(cfg, fm, request.models)
    check_methods(cfg, request)
    check_storage_form(cfg.storage)
    check_job_locations(cfg)
    space = _space(request)
    if not paths:
        _check_declared_periods(cfg, request)
        return
    _check_data(cfg, request, fm)
    if request.command != "prepare":
        check_writable(Path(cfg.out_dir), "out_dir")
    if cfg.storage and not is_uri(cfg.storage):
        check_writable(Path(cfg.storage), "storage")
        out, copy = Path(cfg.out_dir), Path(cfg.storage) / Path(cfg.out_dir).name
        if out in copy.parents:  # the copy of out_dir would land inside out_dir (storage.upload refuses it)
            raise ConfigError(f"storage: {cfg.storage} lies inside out_dir {out}, the folder it would receive")
    if request.command == "online":
        _check_online_inputs(cfg, request)
    if space is not None and space.stage == "online":
        _offline_results(cfg, "an online search starts from an offline run's teacher and student")


# ---------------------------------------------------------------- names


def _shape_only(fm: FeatureMap) -> FeatureMap:
    """``fm``'s fields with one id each: a model built on it has the real model's layers, cheaply."""
    fields = [FieldSpec(f.name, type=f.type, vocab_size=1 if f.type == "numeric" else 2) for f in fm.fields]
    return FeatureMap(fm.dataset, tuple(fields))


def _stand_in(cfg: ExperimentConfig) -> FeatureMap:
    """Fields to build the models on before the data exists: the synthetic generator's, else two
    categorical and one numeric field (enough for every model's own checks)."""
    if cfg.data.source == "synthetic":
        syn = cfg.synthetic
        return FeatureMap("stand-in", (*(FieldSpec(f"f{i}", vocab_size=2) for i in range(syn.num_fields)),
                                       *(FieldSpec(f"n{i}", type="numeric") for i in range(syn.numeric_fields))))
    return FeatureMap("stand-in", (FieldSpec("a", vocab_size=2), FieldSpec("b", vocab_size=2),
                                   FieldSpec("x", type="numeric")))


def check_models(cfg: ExperimentConfig, fm: FeatureMap | None, zoo_models: tuple[str, ...] = ()) -> None:
    """Build the teacher, the student and every zoo model once on a stand-in of the data's fields:
    an unknown name or a hyper-parameter the model refuses is named under its config key."""
    from crossadapt.models import build_model

    shape = _shape_only(fm) if fm is not None else _stand_in(cfg)
    models: list[tuple[str, ModelConfig]] = [("teacher", cfg.teacher), ("student", cfg.student)]
    for key, model in models:
        if model.logit_offset:
            raise ConfigError(f"{key}.logit_offset: set by training on a distill.sample_mode positive_rate sample "
                              f"(saved with the student's checkpoint), not in a config; got {model.logit_offset}")
    if zoo_models:
        from crossadapt.experiment.zoo import model_config

        models += [(f"--models {name}", model_config(name)) for name in zoo_models]
    for key, model in models:
        try:
            build_model(model, shape)
        except ConfigError as e:
            msg = str(e)
            if key in ("teacher", "student") and msg.startswith("model."):
                raise ConfigError(f"{key}.{msg[len('model.'):]}") from None  # e.g. student.name: unknown model
            raise ConfigError(f"{key}: {msg.removeprefix('model.name: ')}") from None


def check_methods(cfg: ExperimentConfig, request: Request) -> None:
    """Every offline and online method name is in its registry (and the demo's online stage has the
    offline CrossAdapt students it starts from)."""
    from crossadapt.experiment.methods import get_method
    from crossadapt.online.methods import get_online_method

    for key, names, get in (("methods", cfg.methods, get_method), ("online.methods", cfg.online.methods,
                                                                   get_online_method)):
        for name in names:
            try:
                get(name)
            except ConfigError as e:
                raise ConfigError(f"{key}: {e}") from None
    if request.command == "demo" and "crossadapt" not in cfg.methods:
        raise ConfigError(f"methods: {list(cfg.methods)} lacks crossadapt, whose offline students the demo's online "
                          "stage starts from; add it, or run `transfer` and then `online --student CHECKPOINT`")


def _space(request: Request):
    """The search space of ``tune`` (validated), or ``None``."""
    if request.command != "tune":
        return None
    from crossadapt.tune.space import load_space

    if not request.space:
        raise ConfigError("tune: --space is required")
    return load_space(request.space)


# ---------------------------------------------------------------- locations


def check_storage_form(storage: str) -> None:
    """``storage`` is empty, a local path or a URI with a scheme pyarrow opens and a bucket or host
    (the form only: no network is touched)."""
    if not is_uri(storage):
        return
    scheme, rest = storage.split("://", 1)
    if scheme.lower() not in STORAGE_SCHEMES:
        raise ConfigError(f"storage: {storage!r} has scheme {scheme!r}; use a local path or one of "
                          f"{[s + '://' for s in STORAGE_SCHEMES]}")
    if scheme.lower() == "file":
        if not rest.startswith("/"):
            raise ConfigError(f"storage: {storage!r}: a file:// URI needs an absolute path (file:///...)")
    elif not rest.split("/", 1)[0]:
        raise ConfigError(f"storage: {storage!r} names no bucket or host after {scheme}://")


def check_job_locations(cfg: ExperimentConfig) -> None:
    """Under ``ray job submit``, nothing is written into Ray's temporary copy of the working dir (it
    goes with the Ray session, and other nodes have their own copy): a relative ``out_dir``,
    ``data.root`` or ``storage`` resolved there is an error naming the key."""
    job = job_working_dir()
    if job is None:
        return
    area = temporary_area(job)
    keys = {"out_dir": cfg.out_dir, "data.root": cfg.data.root, "storage": cfg.storage}
    for key, value in keys.items():
        if value and not is_uri(value) and (Path(value) == area or area in Path(value).parents):
            raise ConfigError(
                f"{key}: {value} lies in Ray's temporary copy of the job's working dir ({job}), which goes with the "
                f"Ray session: under `ray job submit` give {key} as an absolute path every node sees (e.g. --set "
                f"{key}=/mnt/shared/...), or set {SUBMIT_DIR_ENV} to the folder you submitted in the job's env_vars "
                f"(--runtime-env-json '{{\"env_vars\": {{\"{SUBMIT_DIR_ENV}\": \"'$PWD'\"}}}}'; a local head, or a "
                "checkout every node mounts) to resolve relative paths there, as in a local run")


def check_writable(path: Path, key: str) -> None:
    """``path`` is a folder that exists and can be written, or can be created: its nearest existing
    ancestor is a writable folder (probed with an unnamed temporary file)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file, not a folder" if existing == path else f"cannot be created: {existing} is a file"
        raise ConfigError(f"{key}: {path} {what}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        where = "" if existing == path else f" (its nearest existing folder {existing})"
        raise ConfigError(f"{key}: {path} is not writable{where}: {e.strerror or e}") from None


# ---------------------------------------------------------------- data


def _feature_map(cfg: ExperimentConfig, request: Request) -> FeatureMap | None:
    """The feature map of ``data.root`` when the data there is what the run will use (not rebuilt)."""
    root = Path(cfg.data.root)
    if request.force or not (root / FEATURE_MAP_FILE).is_file() or cfg.data.source == "table":
        return None  # a table is converted again whenever its schema, files or options change
    if cfg.data.source == "synthetic":
        from crossadapt.data.synthetic import is_current

        if not is_current(root, cfg.synthetic):
            return None
    return FeatureMap.load(root)


def _check_data(cfg: ExperimentConfig, request: Request, fm: FeatureMap | None) -> None:
    """Periods against the data on disk (``fm`` given) or against what ``prepare`` will write."""
    from crossadapt.experiment.prepare import check_data_periods

    root, source = Path(cfg.data.root), cfg.data.source
    if fm is not None:
        if request.command != "prepare":  # prepare writes the data; it warns about the split after
            check_data_periods(cfg, fm)
            check_sample(cfg, fm)
        return
    if source == "parquet":
        raise ConfigError(f"data.root: {root} holds no {FEATURE_MAP_FILE}; run `crossadapt prepare` first "
                          "(or set data.source to the raw format and data.raw_path)")
    check_writable(root, "data.root")
    if source == "table":
        from crossadapt.data.converters.table import table_files

        if not cfg.data.raw_path:
            raise ConfigError(f"data.raw_path: needed to convert the table logs into {root}")
        table_files(cfg.data.raw_path)  # a path or glob naming no file is an error naming it
    if source in RAW_SOURCES:
        if not cfg.data.raw_path:
            raise ConfigError(f"data.raw_path: needed to convert {source} logs into {root}")
        raw = Path(cfg.data.raw_path)
        if not raw.exists():
            hint = (" (under `ray job submit` only the working dir is uploaded: give an absolute path, or set "
                    f"{SUBMIT_DIR_ENV})") if job_working_dir() else ""
            raise ConfigError(f"data.raw_path: {raw} not found{hint}")
    _check_declared_periods(cfg, request)


def check_sample(cfg: ExperimentConfig, fm: FeatureMap) -> None:
    """A ``distill.sample_mode: positive_rate`` sample the window's pool can give (enough clicks for
    ``distill.r`` at ``distill.positive_rate``); ConfigError naming ``distill.r`` otherwise. Reads
    the label column of the window's files only."""
    from crossadapt.experiment.methods import get_method
    from crossadapt.experiment.offline import sample_plan

    if cfg.distill.sample_mode == "positive_rate" and any(get_method(m).sample for m in cfg.methods):
        sample_plan(cfg, fm)


def _check_declared_periods(cfg: ExperimentConfig, request: Request) -> None:
    """Every period range within the periods ``prepare`` writes: ``synthetic.num_periods`` for
    synthetic logs, ``data.num_periods`` (or ``--num-periods``) for raw ones; nothing is known before
    conversion when that is 0 (the converter's default, e.g. one period per day) or for parquet."""
    if request.command == "prepare":
        return
    if cfg.data.source == "synthetic":
        count, key = cfg.synthetic.num_periods, "synthetic.num_periods"
    elif cfg.data.source in RAW_SOURCES and (request.num_periods or cfg.data.num_periods):
        count = request.num_periods or cfg.data.num_periods
        key = "--num-periods" if request.num_periods else "data.num_periods"
    else:
        return
    for name in ("teacher_periods", "window_periods", "test_periods", "stream_periods"):
        a, b = getattr(cfg.data, name)
        if b > count:
            lo, hi = max(a, count), b - 1
            raise ConfigError(f"data.{name} [{a}, {b}): period(s) {lo if lo == hi else f'{lo}-{hi}'} beyond the "
                              f"{count} period(s) that {key}={count} gives {cfg.data.root}")


# ---------------------------------------------------------------- what a command starts from


def _offline_results(cfg: ExperimentConfig, why: str) -> dict:
    """``<out_dir>/results.json`` with offline checkpoints, or ConfigError saying ``why`` it is needed."""
    from crossadapt.experiment.compare import RESULTS_FILE

    path = Path(cfg.out_dir) / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        results = {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None
    if "offline_checkpoints" not in results:
        raise ConfigError(f"{path}: no offline results; {why}: run `crossadapt transfer` with this config first")
    return results


def _check_online_inputs(cfg: ExperimentConfig, request: Request) -> None:
    """``--teacher``/``--student`` are checkpoint files of the models the config describes; without
    them, the offline results are there."""
    from crossadapt.models.checkpoint import check_model_matches, saved_model_config

    given = [(flag, key, Path(path)) for flag, key, path in (("--teacher", "teacher", request.teacher),
                                                             ("--student", "student", request.student)) if path]
    for flag, _, path in given:
        if path.is_dir():
            raise ConfigError(f"{flag}: {path} is a folder, not a checkpoint file")
        if not path.is_file():
            raise ConfigError(f"{flag}: {path}: checkpoint not found")
    for _, key, path in given:  # the model in the file is the one the config (and so results.json) names
        check_model_matches(path, saved_model_config(path), key, getattr(cfg, key))
    if not (request.teacher and request.student):
        _offline_results(cfg, "the online stage starts from its teacher and crossadapt students (or pass "
                              "--teacher and --student)")

