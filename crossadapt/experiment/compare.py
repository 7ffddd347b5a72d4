"""Side-by-side comparison of experiment folders from their ``results.json`` (no W&B needed).

Example::

    crossadapt compare runs/quick runs/quick-r02
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crossadapt.errors import DataError
from crossadapt.metrics import mean_std

RESULTS_FILE = "results.json"


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """``<run_dir>/results.json``; DataError naming the folder when it is missing or unreadable."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: no {RESULTS_FILE} (not an experiment folder, or its first stage did not finish)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e


def _cell(xs: list[float], digits: int = 4) -> str:
    m, s = mean_std(xs)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(xs) > 1 else f"{m:.{digits}f}"


def _offline_cell(block: dict[str, Any]) -> str:
    return f"{_cell(block['auc'])} / {np.mean(block['train_seconds']):.1f} s"


def _online_cell(block: dict[str, Any]) -> str:
    if "summary" in block:  # one run per seed: mean ± std over seeds
        ov = block["summary"]["overall"]
        return f"{ov['auc']['mean']:.4f} ± {ov['auc']['std']:.4f} / {ov['abs_bias']['mean']:.4f}"
    w = block["windows"]  # results.json written before online runs covered every seed
    return f"{np.mean([x['auc'] for x in w]):.4f} / {np.mean([abs(x['bias']) for x in w]):.4f}"


#: (results.json block, table title, cell of one method in one run)
_SECTIONS = (
    ("offline", "Offline: test AUC (mean ± std over seeds) / train seconds", _offline_cell),
    ("online", "Online: mean AUC over periods (± std over seeds) / mean |bias|", _online_cell),
)


def compare_table(run_dirs: list[str | Path]) -> str:
    """Markdown tables: offline methods (test AUC, train seconds) and online methods (mean AUC, mean |bias|),
    one column per run folder; "-" where a run lacks a method."""
    runs = [(str(d), load_results(d)) for d in run_dirs]
    header = "| method | " + " | ".join(name for name, _ in runs) + " |"
    rule = "|---|" + "---|" * len(runs)
    lines: list[str] = []
    for key, title, cell in _SECTIONS:
        methods = dict.fromkeys(m for _, r in runs for m in r.get(key, {}))  # first-seen order, no repeats
        if not methods:
            continue
        lines += [title, "", header, rule]
        for m in methods:
            cells = [cell(r[key][m]) if m in r.get(key, {}) else "-" for _, r in runs]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    if not lines:
        raise DataError(f"{[n for n, _ in runs]}: no offline or online results to compare")
    return "\n".join(lines)
