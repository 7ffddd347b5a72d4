"""Sampling a ratio ``r`` of the retained window (pure numpy, no Ray): uniform, stratified by period,
and positive-rate-targeted, with the log-odds correction the last one needs.

Positive-rate-targeted sampling (the released CrossAdapt code's "biased sample", target 50 %)
keeps a positive row with probability ``keep_pos = r * pi_t / pi`` and a negative one with
``keep_neg = r * (1 - pi_t) / (1 - pi)``, where ``pi`` is the pool's positive rate and ``pi_t``
the target: the sample then holds ``r * n`` rows in expectation, ``pi_t`` of them positive.

Why the correction, and which way. For a row with true click probability ``p(x)``, the sample
keeps it with ``keep_pos`` if it clicked and ``keep_neg`` if not, so within the sample

    P(y = 1 | x, kept) / P(y = 0 | x, kept) = p(x) keep_pos / ((1 - p(x)) keep_neg)

i.e. every log-odds grows by the same ``shift = log(keep_pos / keep_neg)
= log(pi_t / (1 - pi_t)) - log(pi / (1 - pi))``. A model fitted to the sample learns
``z(x) + shift``; **subtract** ``shift`` from its logits to predict the population's
probabilities again (``shift > 0`` when the target rate is above the base rate, as for 50 % on
Criteo's 25 %: ``shift = log 3 = 1.10``, so the uncorrected model over-predicts clicks).

With distillation the student also fits the teacher's logits, which were learned on the
population: add ``shift`` to the teacher's logits during training on the sample (both targets
then live on the sample's scale) and subtract it from the student's afterwards; otherwise the
two terms pull toward different priors and no single shift calibrates the result.

Example:
    >>> import numpy as np
    >>> plan = positive_rate_plan(base_rate=0.25, r=0.1, target_rate=0.5)
    >>> round(plan.keep_pos, 3), round(plan.keep_neg, 4), round(plan.logit_shift, 4)
    (0.2, 0.0667, 1.0986)
    >>> labels = np.array([1, 0, 0, 0] * 1000)
    >>> keep = label_mask(labels, plan, np.random.default_rng(0))
    >>> round(float(labels[keep].mean()), 1)
    0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np

from crossadapt.errors import ConfigError, DataError

ArrayT = TypeVar("ArrayT")


def _check_ratio(r: float) -> None:
    if not 0 < r <= 1:
        raise ConfigError(f"distill.r: sample ratio must be in (0, 1], got {r}")


def uniform_mask(n: int, r: float, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli(``r``) keep-mask over ``n`` rows (what ``ray.data.Dataset.random_sample`` draws)."""
    _check_ratio(r)
    return np.ones(n, dtype=bool) if r == 1 else rng.random(n) < r


def stratified_counts(period_counts: Sequence[int], r: float) -> list[int]:
    """Rows kept from each period: ``round(r * n_k)``, at least one from a non-empty period."""
    _check_ratio(r)
    return [0 if n == 0 else min(n, max(1, int(round(r * n)))) for n in period_counts]


def stratified_index(period_counts: Sequence[int], r: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices (periods laid end to end in order) of exactly ``stratified_counts`` rows
    of each period, drawn without replacement: every period keeps its share of the sample."""
    out, start = [], 0
    for n, k in zip(period_counts, stratified_counts(period_counts, r)):
        out.append(start + rng.choice(n, size=k, replace=False))
        start += n
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class PositiveRatePlan:
    """Per-class keep probabilities of a positive-rate-targeted sample (see the module docstring)."""

    base_rate: float
    target_rate: float
    r: float
    keep_pos: float
    keep_neg: float

    @property
    def logit_shift(self) -> float:
        """``log(keep_pos / keep_neg) = logit(target_rate) - logit(base_rate)``: what a model fitted to
        the sample adds to every log-odds; subtract it (``correct_logits``) to undo."""
        return math.log(self.keep_pos / self.keep_neg)


def positive_rate_plan(base_rate: float, r: float, target_rate: float) -> PositiveRatePlan:
    """Keep probabilities that give a sample of ``r * n`` rows (in expectation) with ``target_rate``
    positives from a pool whose positive rate is ``base_rate``.

    Raises:
        ConfigError: ``r`` outside (0, 1], ``target_rate`` outside (0, 1), or a pool with too few
            positives (or negatives) for that sample: a keep probability above 1 would need rows
            drawn twice, which this sampler refuses rather than duplicating rows silently.
        DataError: ``base_rate`` is 0 or 1 (a pool of one class cannot be re-balanced).
    """
    _check_ratio(r)
    if not 0 < target_rate < 1:
        raise ConfigError(f"distill.positive_rate: must be in (0, 1), got {target_rate}")
    if not 0 < base_rate < 1:
        raise DataError(f"positive-rate sampling needs both classes in the pool; its positive rate is {base_rate}")
    keep_pos = r * target_rate / base_rate
    keep_neg = r * (1 - target_rate) / (1 - base_rate)
    if keep_pos > 1 or keep_neg > 1:
        which, have = ("positives", base_rate) if keep_pos > 1 else ("negatives", 1 - base_rate)
        raise ConfigError(
            f"distill.r = {r} at a target positive rate of {target_rate} needs {max(keep_pos, keep_neg):.3f} of the "
            f"pool's {which} (they are {have:.4f} of its rows); lower distill.r or move the target toward {base_rate:.4f}"
        )
    return PositiveRatePlan(float(base_rate), float(target_rate), float(r), keep_pos, keep_neg)


def label_mask(labels: np.ndarray, plan: PositiveRatePlan, rng: np.random.Generator) -> np.ndarray:
    """Keep-mask drawing each row with ``plan.keep_pos`` (label 1) or ``plan.keep_neg`` (label 0).

    Row-independent, so it applies batch by batch to a stream (one generator per batch, seeded
    from the run's seed and the batch's index) once the pool's ``base_rate`` is known.
    """
    y = np.asarray(labels)
    return rng.random(y.shape[0]) < np.where(y > 0, plan.keep_pos, plan.keep_neg)


def correct_logits(logits: ArrayT, plan: PositiveRatePlan) -> ArrayT:
    """Logits (numpy or torch) of a model fitted to a ``plan`` sample, moved back to the pool's
    prior: ``logits - plan.logit_shift``."""
    return logits - plan.logit_shift
