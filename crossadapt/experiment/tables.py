"""The result tables (Markdown) of one run, from its results.json: what the README and report.md show.

Offline: per method, mean ± std over seeds of the test AUC, LogLoss, bias and train seconds, the
per-seed AUC difference to CrossAdapt (paired by seed) and whether it exceeds the seed spread.
Paired tests: DeLong per seed on the same test rows and a verdict (``crossadapt.experiment.paired``).
Online: per method, mean over periods of each seed's run, then mean ± std over seeds, with the same
difference and spread columns, and the final student's test AUC where the test periods lie after the
stream (``final_test_table``: the final student and teacher on those rows, with the per-seed
difference to CrossAdapt). ``report.md`` builds its tables with these functions.

Example::

    crossadapt tables runs/demo
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossadapt.errors import DataError
from crossadapt.experiment.paired import REFERENCE, SPREAD_RULE
from crossadapt.metrics import mean_std, paired_spread

__all__ = ["REFERENCE", "SPREAD_RULE", "final_test_table", "offline_table", "online_table", "paired_table",
           "tables_markdown"]


def _pm(xs: list[float | None], digits: int = 4, sign: bool = False) -> str:
    """``mean ± std`` over seeds (the mean alone for one seed; n/a where a figure is undefined)."""
    if not xs or any(x is None for x in xs):
        return "n/a"
    m, s = mean_std(xs)
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(m)} ± {s:.{digits}f}" if len(xs) > 1 else f.format(m)


def _spread_cells(deltas: list[float] | None) -> tuple[str, str]:
    """(Δ mean ± std, exceeds spread?) for per-seed differences; the reference row gets dashes."""
    if deltas is None:
        return "-", "-"
    if not deltas:
        return "n/a", "n/a"
    return _pm(deltas, sign=True), _yes_no(paired_spread(deltas)["exceeds_spread"])


def _yes_no(exceeds: bool | None) -> str:
    return {True: "yes", False: "no", None: "n/a (1 seed)"}[exceeds]


def _paired_deltas(values: dict[Any, float], reference: dict[Any, float] | None) -> list[float] | None:
    """Per-seed ``value - reference`` over the seeds both have; None when there is no reference."""
    if reference is None:
        return None
    return [values[s] - reference[s] for s in values
            if s in reference and values[s] is not None and reference[s] is not None]


def _offline_by_seed(block: dict[str, list]) -> dict[Any, float]:
    seeds = block.get("seed") or list(range(len(block["auc"])))
    return dict(zip(seeds, block["auc"]))


def offline_table(results: dict[str, Any], reference: str = REFERENCE) -> list[str]:
    """The offline table (Markdown lines) from ``results["offline"]``; [] when there is none."""
    offline = results.get("offline") or {}
    if not offline:
        return []
    ref = _offline_by_seed(offline[reference]) if reference in offline else None
    lines = [f"| method | test AUC | ΔAUC vs {reference} | exceeds spread? | LogLoss | bias | train s | samples |",
             "|---|---|---|---|---|---|---|---|"]
    for m, b in offline.items():
        delta, exceeds = _spread_cells(None if m == reference else _paired_deltas(_offline_by_seed(b), ref))
        lines.append(f"| {m} | {_pm(b['auc'])} | {delta} | {exceeds} | {_pm(b['logloss'])} | "
                     f"{_pm(b['bias'], 3, sign=True)} | {_pm(b['train_seconds'], 1)} | {int(np.mean(b['samples']))} |")
    return lines


def correction_note(results: dict[str, Any]) -> list[str]:
    """Under the offline table, for students trained on a positive-rate sample: their bias and LogLoss
    without the log-odds correction beside the corrected ones of the table; [] when none was."""
    per: dict[str, list[dict]] = {}
    for r in results.get("offline_records") or []:
        if r.get("bias_uncorrected") is not None:
            per.setdefault(r["method"], []).append(r)
    if not per:
        return []
    cells = [f"{m} bias {_pm([r['bias'] for r in rs], 3, sign=True)} (without: "
             f"{_pm([r['bias_uncorrected'] for r in rs], 3, sign=True)}), LogLoss {_pm([r['logloss'] for r in rs])} "
             f"(without: {_pm([r['logloss_uncorrected'] for r in rs])})" for m, rs in per.items()]
    return ["Trained on a positive-rate sample and scored with its log-odds correction (the table's figures); "
            "the same students without it: " + "; ".join(cells) + "."]


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def paired_table(results: dict[str, Any]) -> list[str]:
    """The paired-tests table (Markdown lines) from ``results["paired_tests"]``; [] when there is none."""
    block = results.get("paired_tests")
    if not block or not block.get("methods"):
        return []
    ref, alpha = block["reference"], block["alpha"]
    lines = [f"| method | ΔAUC vs {ref} per seed (DeLong p) | mean ΔAUC ± std | exceeds seed spread? | "
             f"p < {alpha:g}, sign of the mean | verdict |", "|---|---|---|---|---|---|"]
    for m, b in block["methods"].items():
        seeds = ", ".join(f"s{x['seed']}: {x['delta_auc']:+.4f} ({_p(x['p'])})" for x in b["per_seed"])
        exceeds = _yes_no(b["exceeds_spread"])
        verdict = f"**{b['verdict']}**" if b["verdict"] == "real" else b["verdict"]
        lines.append(f"| {m} | {seeds} | {_pm([x['delta_auc'] for x in b['per_seed']], sign=True)} | {exceeds} | "
                     f"{b['significant_seeds']}/{b['seeds']} seeds | {verdict} |")
    return lines


def paired_note(results: dict[str, Any]) -> list[str]:
    """What the paired table's columns mean (Markdown lines)."""
    block = results.get("paired_tests")
    if not block or not block.get("methods"):
        return []
    return [f"Δ = method − {block['reference']} (same seed, the same {block['rows']} test rows of periods "
            f"{block['test_periods']}). DeLong's test per seed covers the noise of the test rows; the seed spread "
            f"covers training noise ({block['spread_rule']}). {block['verdict_rule'][0].upper()}"
            f"{block['verdict_rule'][1:]}."]


def online_runs(block: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-seed runs of one online method: ``block["runs"]`` (``[{"seed", "windows", ...}]``), or the
    older one-run shape (``block["windows"]``) as a single run without a seed."""
    if "runs" in block:
        return list(block["runs"])
    return [{"seed": None, **block}]


def online_methods(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The method blocks of ``results["online"]`` (other entries, if any, are skipped)."""
    return {m: b for m, b in (results.get("online") or {}).items()
            if isinstance(b, dict) and ("runs" in b or "windows" in b)}


def _run_means(run: dict[str, Any]) -> dict[str, float]:
    w = run["windows"]
    return {"auc": float(np.mean([x["auc"] for x in w])), "logloss": float(np.mean([x["logloss"] for x in w])),
            "abs_bias": float(np.mean([abs(x["bias"]) for x in w]))}


def online_table(results: dict[str, Any], reference: str = REFERENCE) -> list[str]:
    """The online table (Markdown lines): per seed the mean over periods, then mean ± std over seeds."""
    methods = online_methods(results)
    if not methods:
        return []
    per_seed = {m: {r["seed"]: _run_means(r) for r in online_runs(b)} for m, b in methods.items()}
    ref = {s: v["auc"] for s, v in per_seed[reference].items()} if reference in per_seed else None
    lines = [f"| method | mean AUC | ΔAUC vs {reference} | exceeds spread? | mean LogLoss | mean \\|bias\\| | "
             "exchange share | final test AUC | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for m, b in methods.items():
        runs = per_seed[m]
        auc = {s: v["auc"] for s, v in runs.items()}
        delta, exceeds = _spread_cells(None if m == reference else _paired_deltas(auc, ref))
        # exchange share where the teacher updates (tau set), per run or for the method as a whole
        holders = [r for r in online_runs(b) if "exchange_share" in r] or [b]
        shares = [h["exchange_share"] for h in holders if h.get("exchange_share") is not None and h.get("tau")]
        share = f"{100 * np.mean(shares):.1f} %" if shares else "-"
        seeds = ", ".join(str(s) for s in runs) if None not in runs else "1"
        lines.append(f"| {m} | {_pm(list(auc.values()))} | {delta} | {exceeds} | "
                     f"{_pm([v['logloss'] for v in runs.values()])} | {_pm([v['abs_bias'] for v in runs.values()])} | "
                     f"{share} | {_final_cell(b)} | {seeds} |")
    return lines


def _finals(block: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every seed's ``final_test`` of one online method, or None when some seed has none."""
    finals = [r.get("final_test") for r in online_runs(block)]
    return None if not finals or any(f is None for f in finals) else finals


def _final_cell(block: dict[str, Any]) -> str:
    """The final student's test AUC over seeds ("-" without a final test: test periods before the stream)."""
    finals = _finals(block)
    return "-" if finals is None else _pm([f["auc"] for f in finals])


def final_test_table(results: dict[str, Any], reference: str = REFERENCE) -> list[str]:
    """The online methods' final models on the test periods after the stream (Markdown lines; [] when no
    method has a final test): per method mean ± std over seeds of the student's AUC, LogLoss and bias,
    its per-seed AUC difference to ``reference`` with the spread rule, and the final teacher's AUC and bias."""
    finals = {m: f for m, b in online_methods(results).items() if (f := _finals(b)) is not None}
    if not finals:
        return []
    by_seed = {m: {r["seed"]: r["final_test"]["auc"] for r in online_runs(online_methods(results)[m])} for m in finals}
    ref = by_seed.get(reference)
    lines = [f"| method | student AUC | ΔAUC vs {reference} | exceeds spread? | LogLoss | bias | teacher AUC | "
             "teacher bias | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for m, fs in finals.items():
        delta, exceeds = _spread_cells(None if m == reference else _paired_deltas(by_seed[m], ref))
        teachers = [f.get("teacher") for f in fs]
        t_auc, t_bias = ("-", "-") if any(t is None for t in teachers) else (
            _pm([t["auc"] for t in teachers]), _pm([t["bias"] for t in teachers], 3, sign=True))
        seeds = ", ".join(str(s) for s in by_seed[m]) if None not in by_seed[m] else "1"
        lines.append(f"| {m} | {_pm([f['auc'] for f in fs])} | {delta} | {exceeds} | {_pm([f['logloss'] for f in fs])} | "
                     f"{_pm([f['bias'] for f in fs], 3, sign=True)} | {t_auc} | {t_bias} | {seeds} |")
    return lines


def tables_markdown(results: dict[str, Any]) -> str:
    """Every table of a run that has data, with a heading each (what ``crossadapt tables`` prints)."""
    parts: list[str] = []
    for title, lines, note in (("Offline transfer", offline_table(results), correction_note(results)),
                               ("Paired tests against CrossAdapt (offline, same test rows)", paired_table(results),
                                paired_note(results)),
                               ("Online co-distillation", online_table(results), []),
                               ("Online: final models on the test periods after the stream",
                                final_test_table(results), [])):
        if lines:
            parts += [f"### {title}", "", *lines, ""] + ([*note, ""] if note else [])
    if not parts:
        raise DataError("results.json holds no offline or online results")
    return "\n".join(parts)
