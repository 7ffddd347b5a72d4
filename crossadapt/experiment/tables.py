"""The result tables (Markdown) of one run, from its results.json: what the README and report.md show.

Offline: per method, mean ± std over seeds of the test AUC, LogLoss, bias and train seconds, the
per-seed AUC difference to CrossAdapt (paired by seed) and whether it exceeds the seed spread.
Paired tests: DeLong per seed on the same test rows and a verdict (``crossadapt.experiment.paired``).
Online: per method, mean over periods of each seed's run, then mean ± std over seeds, with the same
difference and spread columns. ``report.md`` builds its tables with these functions.

Example::

    crossadapt tables runs/demo
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossadapt.errors import DataError
from crossadapt.experiment.paired import REFERENCE, SPREAD_RULE
from crossadapt.metrics import mean_std, paired_spread

__all__ = ["REFERENCE", "SPREAD_RULE", "offline_table", "online_table", "paired_table", "tables_markdown"]


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
             "exchange share | seeds |", "|---|---|---|---|---|---|---|---|"]
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
                     f"{share} | {seeds} |")
    return lines


def tables_markdown(results: dict[str, Any]) -> str:
    """Every table of a run that has data, with a heading each (what ``crossadapt tables`` prints)."""
    parts: list[str] = []
    for title, lines, note in (("Offline transfer", offline_table(results), []),
                               ("Paired tests against CrossAdapt (offline, same test rows)", paired_table(results),
                                paired_note(results)),
                               ("Online co-distillation", online_table(results), [])):
        if lines:
            parts += [f"### {title}", "", *lines, ""] + ([*note, ""] if note else [])
    if not parts:
        raise DataError("results.json holds no offline or online results")
    return "\n".join(parts)
