"""The online methods: CrossAdapt and its baselines, as explicit data (pure, no Ray).

Every method replays the same stream with the same student start and seed; they differ only in the
three switches below.

**Compute.** Every step of every method trains the student on exactly ``online.batch_size`` rows
(and, with ``kd``, the teacher serves soft labels for exactly those rows). Methods with ``history``
replace a share ``r_enh`` of each batch by reservoir rows instead of adding rows, so they need
``1 / (1 - mean r_enh)`` times the steps to consume a period's rows: equal compute per step, more
steps per period (``steps``, ``rows_trained`` and ``history_rows`` are reported per run).
``student_replay`` has exactly CrossAdapt's history, batches and steps (same drift trace, reservoir
and mixing draws), so ``crossadapt`` vs ``student_replay`` is the gain of co-distillation at equal
compute, and ``student_replay`` vs ``student_only`` the gain (or cost) of replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crossadapt.config import OnlineConfig
from crossadapt.errors import ConfigError

TeacherUpdates = Literal["never", "every_step", "every_tau"]


@dataclass(frozen=True)
class OnlineMethodSpec:
    """How one online method trains.

    Attributes:
        kd: the student adds the teacher's soft labels to its label loss.
        teacher_updates: when the teacher's weights change: ``never`` (frozen), ``every_step``
            (synchronous co-distillation) or ``every_tau`` steps (asymmetric).
        history: mix a drift-adapted share ``r_enh`` of reservoir samples into every batch.
    """

    kd: bool
    teacher_updates: TeacherUpdates
    history: bool


ONLINE_METHODS: dict[str, OnlineMethodSpec] = {
    "student_only": OnlineMethodSpec(kd=False, teacher_updates="never", history=False),
    "student_replay": OnlineMethodSpec(kd=False, teacher_updates="never", history=True),
    "frozen_teacher_kd": OnlineMethodSpec(kd=True, teacher_updates="never", history=False),
    "sync_codistill": OnlineMethodSpec(kd=True, teacher_updates="every_step", history=False),
    "crossadapt": OnlineMethodSpec(kd=True, teacher_updates="every_tau", history=True),
}


def get_online_method(name: str) -> OnlineMethodSpec:
    """The spec of online method ``name``; ConfigError listing the valid names otherwise."""
    try:
        return ONLINE_METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown online method {name!r}; valid methods: {sorted(ONLINE_METHODS)}") from None


def teacher_interval(spec: OnlineMethodSpec, cfg: OnlineConfig) -> int | None:
    """Steps between teacher updates (``None``: the teacher never changes)."""
    return {"never": None, "every_step": 1, "every_tau": cfg.tau}[spec.teacher_updates]
