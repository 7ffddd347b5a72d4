"""Typed configs: dataclasses loaded from YAML with errors that name the bad key.

Every knob (``r``, ``tau``, ``r_enh``, thresholds, learning rates) is read here once and handed
down as a typed object; nothing deeper looks a value up in a dict.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from crossadapt.data.schema_rules import check_schema_forms  # pure parsing (no I/O, no pyarrow)
from crossadapt.errors import ConfigError
from crossadapt.paths import PATH_KEYS, absolute_location

T = TypeVar("T")


# ---------------------------------------------------------------- ranges, declared beside the fields


@dataclass(frozen=True)
class Range:
    """The values a number may take: ``ge``/``gt`` a lower bound, ``le``/``lt`` an upper one."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    note: str = ""  # why the bound is what it is, appended to the message

    def admits(self, v: float) -> bool:
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def describe(self) -> str:
        lo = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None
        hi = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else None
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return f"{'>=' if self.ge is not None else '>'} {lo[1:]}"
        return f"{'<=' if self.le is not None else '<'} {hi[:-1]}"


def ranged(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, note: str = "") -> Any:
    """A dataclass field with ``default`` whose value must lie in the given range (see ``Section``)."""
    return field(default=default, metadata={"range": Range(ge, gt, le, lt, note)})


class Section:
    """Base of the config sections: after construction every ``ranged`` field is checked (the
    error names ``<section>.<key>``, the section being the class name without ``Config``), then the
    section's rules between keys (``check``)."""

    def __post_init__(self) -> None:
        section = type(self).__name__.removesuffix("Config").lower()
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            rng, value = f.metadata.get("range"), getattr(self, f.name)
            if rng is not None and value is not None and not rng.admits(value):  # None: not set
                note = f" ({rng.note})" if rng.note else ""
                raise ConfigError(f"{section}.{f.name}: must be {rng.describe()}{note}, got {value}")
        self.check()

    def check(self) -> None:
        """Rules between keys of the section (ranges of single keys are declared with ``ranged``)."""


# ---------------------------------------------------------------- sections


@dataclass
class TableSchema:
    """How a tabular log (``data.source: table``) maps to labels, fields, time and periods.

    Read by ``crossadapt.data.converters.table``; the keys are checked here (types, forms) and the
    columns against the files' header there, each error naming ``data.schema.<key>`` or the column.

    Example (YAML)::

        schema:
          label: rating          # a 0/1 column, or any column with a rule in `positive`
          positive: ">= 4"       # >=, >, == or in [a, b]
          categorical: [user_id, item_id, site]   # empty: every column not named elsewhere
          numeric: [price]
          numeric_transform: log # none: float features; log: Criteo buckets as categorical fields
          time: event_time       # unix seconds, unix milliseconds or ISO 8601 (time_format: auto)
          period: 1d             # a duration (s, m, h, d) or a row count
          drop: [leaky_column]
    """

    label: str = ""
    # Empty: the label column holds 0/1. Else a rule that makes it 0/1: ">= 4", "> 0.5", "== click",
    # "in [click, purchase]" (numbers compare as numbers, anything else as the trimmed text).
    positive: str = ""
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    numeric_transform: Literal["none", "log"] = "none"
    time: str = ""
    time_format: Literal["auto", "unix_s", "unix_ms", "iso8601"] = "auto"
    # "30m", "6h", "1d" (UTC-aligned buckets of that length) or a row count (an integer): rows in
    # file order, that many per period. Without a time column only a row count is possible.
    period: str | int = ""
    # Duration periods only: a row may arrive this many periods after the latest period seen so far
    # (late logs) and still go to its own period; rows later than that are skipped as late_row.
    late_periods: int = 1
    drop: tuple[str, ...] = ()
    # Column separator; "": tab for .tsv/.tab files, else comma. Fields may be quoted with ".
    delimiter: str = ""
    # Column names of files without a header line (empty: the first line is the header).
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_schema_forms(self)


@dataclass
class DataConfig(Section):
    """Where the encoded logs are and how they are split in time.

    ``teacher_periods`` are the long history the teacher saw; ``window_periods`` the retained
    recent window the student may use; ``test_periods`` the following period(s) for evaluation;
    ``stream_periods`` the periods replayed online. Periods are half-open ``[start, end)``.
    """

    root: str = "runs/synthetic/data"
    source: Literal["synthetic", "criteo", "avazu", "kdd12", "parquet", "table"] = "synthetic"
    # Raw logs: a file, or for ``table`` a path or glob of CSV/TSV/parquet files (read in name order).
    raw_path: str = ""
    # Raw logs only: split the rows, in time (file) order, into this many periods (0: the
    # converter's default, one per day for Avazu, one in all for Criteo/KDD12) and map tokens seen
    # fewer than min_count times to the OOV id.
    num_periods: int = ranged(0, ge=0)
    min_count: int = ranged(2, ge=1)
    teacher_periods: tuple[int, int] = (0, 6)
    window_periods: tuple[int, int] = (6, 8)
    test_periods: tuple[int, int] = (8, 9)
    stream_periods: tuple[int, int] = (9, 16)
    valid_fraction: float = ranged(0.1, ge=0.0, lt=0.5)
    # data.source table: the columns, label, time and periods of the log (see TableSchema).
    schema: TableSchema = field(default_factory=TableSchema)

    def check(self) -> None:
        for name in ("teacher_periods", "window_periods", "test_periods", "stream_periods"):
            a, b = getattr(self, name)
            if not 0 <= a < b:
                raise ConfigError(f"data.{name}: need 0 <= start < end, got [{a}, {b})")
        if self.source == "table":
            if not self.schema.label:
                raise ConfigError("data.schema.label: data.source table needs the label column")
            if self.schema.period in ("", 0):
                raise ConfigError("data.schema.period: data.source table needs a period (e.g. 1d, 6h or a row count)")
            if self.num_periods:
                raise ConfigError("data.num_periods: not used by data.source table (data.schema.period cuts the periods)")


#: Ranges models are trained on, and ranges models are scored on (the stream's windows are scored
#: before the online models train on them, so the stream counts as both).
TRAINED_RANGES = ("teacher_periods", "window_periods")
SCORED_RANGES = ("test_periods", "stream_periods")


def _span(data: DataConfig, name: str) -> str:
    a, b = getattr(data, name)
    return f"data.{name} [{a}, {b})"


def check_periods(data: DataConfig) -> None:
    """Raise ConfigError when the time split leaks: a model scored on periods it trained on, or on
    periods before the ones it trained on.

    Every test and stream period must come after every teacher and window period (teacher and
    window may overlap: the teacher may have seen the window), and test and stream are disjoint
    (either order: the default tests before the stream, the paper's protocol after it). The error
    names both keys and both ranges.
    """
    for scored in SCORED_RANGES:
        s0, s1 = getattr(data, scored)
        for trained in TRAINED_RANGES:
            t0, t1 = getattr(data, trained)
            if s0 < t1 and t0 < s1:
                raise ConfigError(f"{_span(data, scored)} overlaps {_span(data, trained)}: models would be "
                                  "scored on periods they were trained on")
            if s0 < t1:
                raise ConfigError(f"{_span(data, scored)} comes before {_span(data, trained)}: models would be "
                                  "trained on periods later than the ones they are scored on")
    (a0, a1), (b0, b1) = data.test_periods, data.stream_periods
    if a0 < b1 and b0 < a1:
        raise ConfigError(f"{_span(data, 'test_periods')} overlaps {_span(data, 'stream_periods')}: the online "
                          "models train on the stream, so the test periods must lie before or after it")


@dataclass
class SyntheticConfig:
    """Shape of the synthetic logs (the embedded default).

    The defaults are the small world of the demo. ``vocab_sizes``, ``rare_ids`` and
    ``numeric_fields`` make a long-tailed, Criteo-shaped world (``configs/criteo_like.yaml``) from
    the same click model; at their defaults the generator writes the small world unchanged.
    Validated by ``crossadapt.data.synthetic_world.check_config`` (before Ray starts:
    ``crossadapt.experiment.preflight``).
    """

    num_fields: int = 12
    vocab_size: int = 2000
    rows_per_period: int = 60_000
    num_periods: int = 16
    zipf_a: float = 1.1
    latent_dim: int = 2
    base_ctr: float = 0.12
    drift_periods: tuple[int, ...] = (11, 14)
    seed: int = 0
    # One vocabulary size per categorical field (OOV id 0 included); empty: ``num_fields`` fields of
    # ``vocab_size``. When given, its length must equal ``num_fields``.
    vocab_sizes: tuple[int, ...] = ()
    # "oov": ids never among a field's most popular are written as the OOV id 0 with zero effect (a
    # min-count vocabulary over a short tail); "keep": every id is written and has its own effect.
    rare_ids: Literal["oov", "keep"] = "oov"
    # Numeric (float32) fields n0.. beside the categorical ones: log1p of a long-tailed count.
    numeric_fields: int = 0
    # Rows drawn and written at a time: bounds the generator's memory whatever rows_per_period is.
    # Part of the data's identity (rows are drawn chunk by chunk); a period that fits in one chunk
    # is drawn exactly as before chunking existed.
    chunk_rows: int = 65_536


@dataclass
class ModelConfig(Section):
    """A model from the registry and its hyper-parameters (each model reads what it needs)."""

    name: str = "dnn"
    embed_dim: int = ranged(16, ge=1)
    hidden_units: tuple[int, ...] = (256, 128, 64)
    dropout: float = ranged(0.0, ge=0.0, lt=1.0)
    batch_norm: bool = False
    # Linear -> LayerNorm -> ReLU in every hidden layer of the DNN tower, as the released CrossAdapt
    # code's MLP. Off by default: on synthetic 26-field worlds the narrow teacher (d=8, [64, 32, 4])
    # trained on every seed without it; with it, it learned slower on 80 k rows (valid AUC after 2
    # epochs 0.616 +- 0.001 vs 0.597 +- 0.020, 12 seeds) and was within the spread on 400 k rows
    # (0.706 +- 0.008 vs 0.712 +- 0.003, 3 seeds); benchmarks/narrow_tower.py.
    layer_norm: bool = False
    num_cross_layers: int = 3
    cin_layer_units: tuple[int, ...] = (64, 64)
    num_attention_layers: int = 2
    num_heads: int = 2
    attention_dim: int = 16
    # FiBiNET: SENET hidden size max(1, F // senet_reduction) (the paper's and the released code's 3);
    # bilinear weights shared by all fields, one per field or one per field pair (the released code
    # uses field_all); "paper": LR + MLP[bilinear(E), bilinear(SENET(E))], "released": the released
    # code's MLP[E, bilinear(SENET(E))] with a sigmoid excitation (see crossadapt/models/fibinet.py).
    senet_reduction: int = ranged(3, ge=1)
    bilinear_type: Literal["field_all", "field_each", "field_interaction"] = "field_all"
    fibinet_variant: Literal["paper", "released"] = "paper"
    # Added to every logit the model outputs (a forward hook of ``build_model``). Not set by hand:
    # a student trained on a positive-rate sample is saved with minus that sample's log-odds shift
    # here, so every place its checkpoint is loaded predicts on the population's prior
    # (crossadapt.data.sampling; preflight refuses a non-zero value in a config file).
    logit_offset: float = 0.0

    def check(self) -> None:
        if self.batch_norm and self.layer_norm:
            raise ConfigError("model.batch_norm and model.layer_norm: choose at most one normalisation")


@dataclass
class TeacherImportConfig:
    """A deployed model brought as the teacher instead of one trained here (``program`` set).

    ``program``: a TorchScript file (``torch.jit.save``) or a ``torch.export`` program (``.pt2``,
    ``torch.export.save``) whose forward takes ``(ids int64 [B, F_cat], dense float32 [B, F_num])``
    in feature-map order (the schema's categorical fields as listed, then log-bucketed numeric
    ones; ``dense``: the numeric columns with ``numeric_transform: none``) and returns logits [B].
    ``tables``: a ``torch.save`` file of ``{field name: tensor (rows, d_f)}``, the embedding table
    of each categorical field (dims may differ per field), and optionally ``(d,)`` vectors of
    numeric fields. ``vocabularies``: JSON ``{"oov_index": 0, "fields": {name: {raw value: row}}}``
    (``oov_index`` an int or a per-field mapping), or ``{name: [values]}`` where value i has row
    i + 1 and OOV is row 0 (the ``vocab.json`` a conversion or ``crossadapt export`` writes).
    Checked by ``crossadapt.models.teacher_import`` before any training; needs ``data.source: table``,
    whose encoder then adopts these vocabularies.
    """

    program: str = ""
    tables: str = ""
    vocabularies: str = ""
    format: Literal["auto", "torchscript", "export"] = "auto"

    def __post_init__(self) -> None:
        if self.program and not (self.tables and self.vocabularies):
            missing = [k for k in ("tables", "vocabularies") if not getattr(self, k)]
            raise ConfigError(f"teacher_import.{missing[0]}: needed with teacher_import.program (the projection reads "
                              "the tables, the encoder adopts the vocabularies)")
        if not self.program and (self.tables or self.vocabularies):
            raise ConfigError("teacher_import.program: tables and vocabularies are given without the teacher's program")


@dataclass
class OptimConfig(Section):
    """Plain supervised training (teacher, baselines)."""

    # 2e-3: at 1e-3 students from random init sat on the first-order plateau (AUC 0.64) for 5+
    # epochs on the small window; 2e-3 leaves it on every seed and trains the teacher as well.
    lr: float = ranged(2e-3, gt=0.0)
    weight_decay: float = ranged(0.0, ge=0.0)
    # The embedding table's own Adam settings (the released code: lr 0.1 for the embeddings, 1e-3 for
    # the rest); None: lr / weight_decay. embed_weight_decay applies in every stage that trains
    # embeddings offline (teacher, baselines, students), as weight_decay does.
    embed_lr: float | None = ranged(None, gt=0.0)
    embed_weight_decay: float | None = ranged(None, ge=0.0)
    # Measured on the synthetic default: batch 512 converges in ~6-10 epochs; 2048 needed twice as many.
    batch_size: int = ranged(512, ge=1)
    # Interaction models sit on a plateau for several epochs before they learn the pairwise terms;
    # patience 3 keeps the baselines from stopping inside it (patience 2 cut some seeds at AUC 0.64).
    epochs: int = ranged(15, ge=1)
    patience: int = ranged(3, ge=1)
    seed: int = 0


@dataclass
class DistillConfig(Section):
    """Progressive distillation: phase 1 (embeddings frozen) then phase 2 (joint)."""

    alpha: float = ranged(1.0, ge=0.0)
    temperature: float = ranged(1.0, gt=0.0)
    # Logit MSE: on the synthetic default it beat soft-label BCE at T=1 by 0.02 AUC for the sampled
    # student (0.726 vs 0.705), and matched it for standard KD.
    kind: Literal["bce", "mse"] = "mse"
    phase1_epochs: int = ranged(8, ge=0)
    phase2_epochs: int = ranged(12, ge=0)
    phase1_lr: float = ranged(2e-3, gt=0.0)
    phase2_lr: float = ranged(1e-3, gt=0.0)
    r: float = ranged(0.1, gt=0.0, le=1.0, note="the sample ratio of the retained window")
    # uniform: Bernoulli(r) per row; stratified: round(r * n_k) rows of each period; positive_rate:
    # r * n rows in expectation of which positive_rate are clicks (the released code's "biased
    # sample"). The student's logits are then moved back by the sample's log-odds shift (its
    # checkpoint's logit_offset), and the teacher's soft labels moved onto the sample's prior while
    # it trains (crossadapt.data.sampling).
    sample_mode: Literal["uniform", "stratified", "positive_rate"] = "uniform"
    positive_rate: float = ranged(0.5, gt=0.0, lt=1.0, note="the target click rate of a positive_rate sample")
    # Each phase of a sampled method trains on its own seeded sample (phase 1 on the one it has
    # without this option), as the released code; false: every phase on the same sample.
    fresh_sample_per_phase: bool = False
    # "additive": BCE + alpha KD; "convex": (1 - alpha) BCE + alpha KD (the released code's; alpha <= 1).
    loss_form: Literal["additive", "convex"] = "additive"
    # The embeddings' lr in the distillation phases that train them (phase 2, and the one joint
    # phase of crossadapt_no_phases); None: that phase's lr. Phase 1 freezes them.
    embed_lr: float | None = ranged(None, gt=0.0)
    # A sample of r = 0.1 is small: at batch 256 phase 1 got ~70 steps and stalled (AUC 0.70);
    # batch 64 reaches the teacher's level in a few epochs at the same cost.
    batch_size: int = ranged(64, ge=1)
    # A teacher whose validation AUC is within chance's reach of 0.5, or not above a per-field
    # click-rate model's on the same rows, stops the transfer before any student trains; true goes on.
    allow_weak_teacher: bool = False

    def check(self) -> None:
        if self.phase1_epochs + self.phase2_epochs < 1:
            raise ConfigError("distill.phase1_epochs/phase2_epochs: need >= 0 each and >= 1 in total")
        if self.loss_form == "convex" and self.alpha > 1:
            raise ConfigError(f"distill.alpha: distill.loss_form convex needs 0 <= alpha <= 1, got {self.alpha}")


@dataclass
class ProjectionConfig(Section):
    """How teacher embeddings are projected to the student's dimension."""

    method: Literal["auto", "gram", "rsvd"] = "auto"
    # Reduction (d_s < d_t) only: one PCA basis for all fields ("shared", keeps cross-field inner
    # products) or one per field (each field's own geometry, cross-field products scrambled).
    # Quick world, teacher DNN(32) -> student d=16, crossadapt, seeds 0-2: shared won on every seed,
    # DeepFM 0.7223 +- 0.0012 vs 0.7158 +- 0.0006, DCNv2 0.7250 +- 0.0012 vs 0.7217 +- 0.0011 AUC
    # (inner-product error across fields 0.37 vs 2.78, within fields 0.12 vs 0.07).
    basis: Literal["shared", "per_field"] = "shared"
    num_actors: int = ranged(2, ge=1)
    oversample: int = ranged(10, ge=0)
    power_iters: int = ranged(2, ge=0)
    rsvd_min_dim: int = ranged(512, ge=1)
    seed: int = 0
    # Below this many table rows one process is faster than starting actors (their start-up dominates).
    actor_min_rows: int = ranged(1_000_000, ge=0)
    # Rows sampled per field for the distortion report (pairwise matrices grow with its square).
    report_rows: int = ranged(1000, ge=2)


@dataclass
class ResourcesConfig(Section):
    """Ray Train resources.

    ``use_gpu``: ``auto`` takes GPUs when the cluster has them; ``true`` requires them (an error when
    none are there or arrive through the autoscaler); ``false`` never uses them. YAML ``true`` and
    ``false`` are accepted; ``crossadapt.ray_init.resolve_use_gpu`` decides, in one place.
    """

    num_workers: int = ranged(2, ge=1)
    use_gpu: Literal["auto", "true", "false"] = "auto"
    cpus_per_worker: float = ranged(1.0, gt=0.0)
    # Independent jobs (the students of other methods and seeds, the zoo's models) trained at once on
    # CPU, each lane in its own group of num_workers workers: 2 keeps both cores of a 2-core machine
    # busy, where one worker runs one torch thread. A job trains alone in its group, so its result
    # does not depend on this (not in fingerprints). On GPU jobs keep one lane.
    concurrent_jobs: int = ranged(1, ge=1)
    amp: Literal["none", "bf16"] = "none"
    max_failures: int = ranged(2, ge=0)
    # A resumable checkpoint at most this often (and at the end of every job): one per epoch cost
    # ~1 s each through Ray Train and doubled the wall time of the small demo runs.
    checkpoint_interval_s: float = ranged(30.0, ge=0.0)
    # use_gpu=true on a cluster that has no GPU yet: how long to wait for the autoscaler to add one.
    gpu_wait_s: float = ranged(300.0, ge=0.0)
    # Bytes of training rows a Ray Train worker keeps resident (on its GPU when it has one): a
    # job whose shard is estimated larger is streamed from the files every epoch through a seeded
    # local shuffle buffer of stream_buffer_rows rows (crossadapt.data.shard_budget decides, on the
    # driver, before the job's fingerprint: the streamed batch order differs). The validation
    # split and the driver's test split are held under the same budget or streamed (same result).
    # 0: stream everything.
    cache_bytes: int = ranged(2 * 1024**3, ge=0)
    stream_buffer_rows: int = ranged(65_536, ge=1)


@dataclass
class OnlineConfig(Section):
    """Online asymmetric co-distillation on a stream of periods.

    The student takes one step per batch on ``BCE + alpha * KD(teacher)``; the teacher updates only
    every ``tau`` steps, on the batches it served, with ``BCE + teacher_alpha * KD(student)`` where
    the student's weights arrive through the object store at that moment (``teacher_alpha = 0``:
    labels only, and no weights move).
    """

    # Defaults measured on the quick synthetic stream (7 periods, 2 injected drifts): batch 256 and
    # student lr 1e-3 adapt after a drift far faster than 1024 / 5e-4 (mean AUC 0.707 vs 0.667 for
    # online fine-tuning); the teacher needs 2e-3 to keep up every tau steps; alpha 0.1 (MSE) keeps
    # the student as plastic as fine-tuning while halving its bias against frozen-teacher KD;
    # teacher_alpha 0 (labels only) cost 0.001 AUC and raised the mean |bias| from 0.153 to 0.193.
    tau: int = ranged(10, ge=1)
    batch_size: int = ranged(256, ge=1)
    student_lr: float = ranged(1e-3, gt=0.0)
    teacher_lr: float = ranged(2e-3, gt=0.0)
    alpha: float = ranged(0.1, ge=0.0)
    temperature: float = ranged(1.0, gt=0.0)
    kd_kind: Literal["bce", "mse"] = "mse"
    teacher_alpha: float = ranged(0.5, ge=0.0)
    # As distill.loss_form, for the student's loss and the teacher's (alpha, teacher_alpha <= 1 if convex).
    loss_form: Literal["additive", "convex"] = "additive"
    # The embeddings' lr of the online student and teacher; None: student_lr / teacher_lr.
    student_embed_lr: float | None = ranged(None, gt=0.0)
    teacher_embed_lr: float | None = ranged(None, gt=0.0)
    # Adam weight decay of the online student and teacher: weight_decay on the dense layers,
    # embed_weight_decay on the embeddings (None: weight_decay), as optim.* offline.
    weight_decay: float = ranged(0.0, ge=0.0)
    embed_weight_decay: float | None = ranged(None, ge=0.0)
    r_enh_max: float = 0.5
    r_enh_min: float = 0.0
    theta_low: float = 0.02
    theta_high: float = 0.1
    reservoir_size: int = ranged(20_000, ge=0)
    # On a detected shift (score >= theta_high) the reservoir forgets what came before: otherwise
    # the stable periods right after a shift mix r_enh_max of the previous regime into every batch.
    reset_history_on_shift: bool = True
    top_k: int = ranged(100, ge=1)
    # Rows W of each drift window (selection, reference, recent; crossadapt.online.drift). The
    # score is corrected for window size (no-drift score measured below 0.01 from W = 500 to
    # 100,000, where raw JS was 0.069 at 500), so W sets only the time resolution: a shift is seen
    # within about W rows and the detector re-arms 3 W rows after it (shifts closer than that merge).
    # 2000 rows is a tenth of a quick-demo period; the score is refreshed every batch_size rows.
    drift_window_rows: int = ranged(2000, ge=500, note="the no-drift score is checked from 500 rows up")
    # Steps submitted ahead of the one the coordinator waits for (bounds object-store use).
    max_inflight: int = ranged(8, ge=1)
    # Consecutive steps sent to the actors in one call (never across an exchange, so the order of
    # steps, soft labels and teacher updates is the same): one call per step spent more time in
    # Ray's per-call overhead than in training at batch 256 on 2 cores.
    steps_per_call: int = ranged(10, ge=1)
    # Streams (method, seed) replayed at once, each with its own actors: 2 keeps both cores of a
    # 2-core machine busy. Streams share nothing, so their results do not depend on it.
    concurrent_streams: int = ranged(1, ge=1)
    # Names from crossadapt.online.methods.ONLINE_METHODS (checked by crossadapt.experiment.preflight).
    methods: tuple[str, ...] = ("student_only", "student_replay", "frozen_teacher_kd", "sync_codistill", "crossadapt")

    def check(self) -> None:
        _check_names("online.methods", self.methods)
        if self.loss_form == "convex":
            for key in ("alpha", "teacher_alpha"):
                if getattr(self, key) > 1:
                    raise ConfigError(f"online.{key}: online.loss_form convex needs 0 <= {key} <= 1, "
                                      f"got {getattr(self, key)}")
        if not self.theta_low < self.theta_high:
            raise ConfigError(
                f"online.theta_low ({self.theta_low}) must be < online.theta_high ({self.theta_high})"
            )
        if not 0.0 <= self.r_enh_min <= self.r_enh_max < 1.0:
            raise ConfigError(
                f"online.r_enh_min/r_enh_max: need 0 <= min <= max < 1, got {self.r_enh_min}, {self.r_enh_max}"
            )


@dataclass
class TrackingConfig(Section):
    """Experiment tracking. W&B is optional; JSON results are always written."""

    wandb: Literal["offline", "online", "disabled"] = "offline"
    project: str = "crossadapt"
    experiment: str = "default"


@dataclass
class ExperimentConfig:
    """Everything one run of ``crossadapt`` needs."""

    # Local paths relative to the config file they are written in; from --set or a default, relative
    # to the current folder (see load_config).
    out_dir: str = "runs/default"
    # Where results and checkpoints are copied when a run ends (into <storage>/<name of out_dir>):
    # a local folder or a pyarrow URI such as s3://bucket/prefix; empty: only out_dir. On a cluster
    # out_dir is the head node's disk, gone after `ray down`; the copy is not.
    storage: str = ""
    seeds: tuple[int, ...] = (0, 1, 2)
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig(name="dnn", embed_dim=16))
    student: ModelConfig = field(default_factory=lambda: ModelConfig(name="dcnv2", embed_dim=32))
    # A deployed teacher to import (then ``teacher`` is not trained; see TeacherImportConfig).
    teacher_import: TeacherImportConfig = field(default_factory=TeacherImportConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # Names from crossadapt.experiment.methods.METHODS (checked by crossadapt.experiment.preflight).
    methods: tuple[str, ...] = (
        "scratch",
        "kd",
        "crossadapt",
        "crossadapt_no_projection",
        "crossadapt_no_phases",
        "crossadapt_full_window",
    )

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("seeds: empty; every result is a mean over seeds, give at least one")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: {list(self.seeds)} repeats a seed (its runs would overwrite each other)")
        _check_names("methods", self.methods)


def _check_names(key: str, names: tuple[str, ...]) -> None:
    """A list of method names must be non-empty and name each method once (which names exist is the
    registries' business: ``crossadapt.experiment.preflight``)."""
    if not names:
        raise ConfigError(f"{key}: empty; a run with no methods would train and compare nothing")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{key}: {repeated} listed more than once")


# ---------------------------------------------------------------- loading


def _check_type(value: Any, tp: Any, key: str, base: Any = None) -> Any:
    """Coerce ``value`` to annotation ``tp`` or raise ConfigError naming ``key``.

    ``base``: for a dataclass ``tp``, the instance a partial mapping is merged over.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, prefix=key, base=base if isinstance(base, tp) else None)
    if origin is Literal:
        if isinstance(value, bool) and str(value).lower() in args:  # YAML reads `true` as a boolean
            value = str(value).lower()
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
        return tuple(_check_type(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _field_default(f: dataclasses.Field) -> Any:
    """The value a field takes when its key is absent (``MISSING`` when it is required)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def from_dict(cls: type[T], d: dict[str, Any], prefix: str = "", base: T | None = None) -> T:
    """Build dataclass ``cls`` from a (nested) dict; unknown keys and bad types raise ConfigError.

    Keys absent from ``d`` keep ``base``'s values (``None``: the field defaults). A mapping given for
    a dataclass field is merged over that field's own default the same way, so a partial ``student:``
    section changes only the keys it names and the student stays the student's default model
    (``ExperimentConfig.student``'s factory), not ``ModelConfig``'s class defaults.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key(s) {[where + k for k in unknown]}; valid keys under "
            f"{prefix or 'top level'}: {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        default = getattr(base, k) if base is not None else _field_default(fields[k])
        kwargs[k] = _check_type(v, hints[k], f"{prefix}.{k}" if prefix else k, base=default)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ConfigError as e:
        msg, section = str(e), cls.__name__.removesuffix("Config").lower()
        if prefix and msg.startswith(section + ".") and not msg.startswith(prefix):
            # a section's own keys under the name it is given: model.dropout -> student.dropout
            raise ConfigError(msg.replace(section + ".", prefix + ".")) from None
        if prefix and not msg.startswith(prefix):
            raise ConfigError(f"{prefix}: {msg}") from None
        raise


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict (JSON/YAML-safe) form of a config dataclass; tuples become lists."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load an ``ExperimentConfig`` from YAML (``None``: defaults), then apply dotted overrides.

    Local paths (``PATH_KEYS``) come back absolute: relative ones written in the file are taken
    relative to the file's folder, those from ``overrides`` or the defaults relative to the current
    folder (under ``ray job submit``, see ``crossadapt.paths``).

    Example: ``load_config("configs/quick.yaml", {"distill.r": 0.2})``.
    """
    d: dict[str, Any] = {}
    bases: dict[str, Path] = {}  # path key -> the folder its relative value is relative to
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: config file not found")
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from e
        if not isinstance(d, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
        bases = {key: p.absolute().parent for key in PATH_KEYS if isinstance(_lookup(d, key), str)}
    for dotted, value in (overrides or {}).items():
        bases = {key: base for key, base in bases.items() if not (key + ".").startswith(dotted + ".")}
        node = d
        parts = dotted.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # e.g. YAML `distill: 0.5` and the override `distill.r`
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"{where}: expected a mapping to apply override {dotted!r}, got {node!r}")
        node[parts[-1]] = value
    try:
        cfg = from_dict(ExperimentConfig, d)
        check_periods(cfg.data)
        if cfg.teacher_import.program and cfg.data.source != "table":
            raise ConfigError(f"teacher_import: needs data.source table (the encoder adopts the teacher's "
                              f"vocabularies), got data.source {cfg.data.source!r}")
        return absolute_paths(cfg, bases)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def _lookup(d: dict[str, Any], dotted: str) -> Any:
    """``d["a"]["b"]`` for ``"a.b"``; ``None`` where a level is missing or not a mapping."""
    node: Any = d
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def absolute_paths(cfg: ExperimentConfig, bases: dict[str, Path] | None = None) -> ExperimentConfig:
    """``cfg`` with its local paths absolute: Ray workers and actors do not run in the driver's folder.

    ``bases``: per key of ``PATH_KEYS``, the folder a relative value is relative to (absent: the
    current folder)."""
    bases = bases or {}
    where = {key: absolute_location(_lookup(to_dict(cfg), key), bases.get(key)) for key in PATH_KEYS}
    data = dataclasses.replace(cfg.data, root=where["data.root"], raw_path=where["data.raw_path"])
    teacher_import = dataclasses.replace(cfg.teacher_import, program=where["teacher_import.program"],
                                         tables=where["teacher_import.tables"],
                                         vocabularies=where["teacher_import.vocabularies"])
    return dataclasses.replace(cfg, out_dir=where["out_dir"], storage=where["storage"], data=data,
                               teacher_import=teacher_import)


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` re-exported so callers need not import dataclasses."""
    return dataclasses.replace(cfg, **changes)
