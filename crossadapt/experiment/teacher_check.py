"""Is the trained teacher worth distilling? Its validation AUC against chance and a click-rate model.

One pass over the history (``data.teacher_periods``) in record batches: the rows before the
validation tail count clicks per id (``crossadapt.click_rates``), the tail rows are scored by the
teacher and by the per-field click-rate model. Both AUCs are on exactly the same rows: the tail
the teacher's early stopping saw, which neither was fit on.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from crossadapt import click_rates, log
from crossadapt.config import ExperimentConfig
from crossadapt.data import arrays as A
from crossadapt.data.file_checks import period_row_counts
from crossadapt.errors import WeakTeacherError
from crossadapt.featuremap import FeatureMap
from crossadapt.metrics import UndefinedMetricWarning, auc, chance_auc_sd
from crossadapt.models.teacher_import import load_teacher_model
from crossadapt.train import engine

#: How many chance standard deviations above 0.5 a teacher's AUC must reach (about 2.3 % of
#: label-blind scores would get that far by luck).
CHANCE_SDS = 2.0


_say = log.sayer(__name__)


def score_history_tail(cfg: ExperimentConfig, fm: FeatureMap, teacher_ckpt: str) -> dict:
    """Labels, teacher logits and click-rate scores of the history's validation tail (one streamed pass)."""
    periods = A.period_range(cfg.data.teacher_periods)
    total = sum(period_row_counts(cfg.data.root, periods))
    cut = A.tail_start(total, cfg.data.valid_fraction)
    model = load_teacher_model(teacher_ckpt, fm)
    counts = click_rates.ClickCounts.zeros(fm.vocab_sizes)
    log_odds = None
    labels, teacher, baseline = [], [], []
    for start, a in A.iter_period_batches(cfg.data.root, periods, fm):
        n = A.num_rows(a)
        k = min(max(cut - start, 0), n)  # rows of this batch before the tail
        if k:
            counts.add(a["ids"][:k], a["label"][:k])
        if k == n:
            continue
        if log_odds is None:  # every training row precedes the tail: the counts are complete
            log_odds = counts.log_odds()
        tail = A.take(a, slice(k, n))
        labels.append(tail["label"])
        teacher.append(engine.predict_logits(model, engine.to_tensors(tail)).double().numpy())
        baseline.append(click_rates.score(tail["ids"], log_odds, fm.vocab_sizes))
    if not labels:
        return {"rows": 0, "train_rows": counts.rows}
    return {"rows": total - cut, "train_rows": counts.rows, "label": np.concatenate(labels),
            "teacher": np.concatenate(teacher), "baseline": np.concatenate(baseline)}


def judge_teacher(cfg: ExperimentConfig, fm: FeatureMap, teacher_ckpt: str) -> dict:
    """Figures of the check; raises ``WeakTeacherError`` when the teacher is no better than chance or
    than the click-rate model (or cannot be judged: validation rows of one class), unless
    ``distill.allow_weak_teacher``. Without validation rows (``data.valid_fraction`` 0) it is skipped."""
    s = score_history_tail(cfg, fm, teacher_ckpt) if cfg.data.valid_fraction > 0 else {"rows": 0}
    rows = s["rows"]
    if rows == 0:
        _say(f"teacher check skipped: data.valid_fraction {cfg.data.valid_fraction:g} leaves no held-out history "
             "rows to judge the teacher on")
        return {"checked": False}
    clicks = int(s["label"].sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one class is judged below, in words
        t_auc = auc(s["label"], s["teacher"])
        b_auc = auc(s["label"], s["baseline"])
    margin = CHANCE_SDS * chance_auc_sd(clicks, rows - clicks) if t_auc is not None else None
    figures = {"checked": True, "valid_rows": rows, "valid_clicks": clicks, "teacher_valid_auc": t_auc,
               "click_rate_valid_auc": b_auc, "chance_margin": margin}
    t = cfg.teacher
    a, b = cfg.data.teacher_periods
    where = (f"its {rows} validation rows (the last {cfg.data.valid_fraction:g} of data.teacher_periods "
             f"[{a}, {b}), {clicks} clicks)")
    if t_auc is None:
        problem = f"teacher {t.name}(d={t.embed_dim}) cannot be judged: {where} hold one class, AUC is undefined"
    elif 0.5 + margin >= 1.0:
        problem = (f"teacher {t.name}(d={t.embed_dim}) cannot be judged: {where} are too few to tell any model "
                   f"from chance (0.5 + {CHANCE_SDS:g} sd = {0.5 + margin:.4f}); its validation AUC is "
                   f"{t_auc:.4f}, the per-field click-rate model's {b_auc:.4f}")
    elif t_auc <= 0.5 + margin:
        problem = (f"teacher {t.name}(d={t.embed_dim}) validation AUC {t_auc:.4f} is no better than chance "
                   f"(0.5 + {CHANCE_SDS:g} sd = {0.5 + margin:.4f} on {where}); the per-field click-rate "
                   f"model reaches {b_auc:.4f} on the same rows")
    elif t_auc <= b_auc:
        problem = (f"teacher {t.name}(d={t.embed_dim}) validation AUC {t_auc:.4f} is no better than the per-field "
                   f"click-rate model's {b_auc:.4f} on the same rows ({where})")
    else:
        _say(f"teacher check: validation AUC {t_auc:.4f} > per-field click rates {b_auc:.4f} and chance "
             f"0.5 + {margin:.4f} ({rows} rows): ok")
        return {**figures, "weak": False}
    if not cfg.distill.allow_weak_teacher:
        raise WeakTeacherError(f"{problem}. Distilling it would transfer nothing: no student was trained. "
                               "Train a better teacher, or set distill.allow_weak_teacher: true to go on.")
    logging.getLogger(__name__).warning(f"{problem}; going on (distill.allow_weak_teacher)")
    return {**figures, "weak": True}
