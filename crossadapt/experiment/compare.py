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


def compare_table(run_dirs: list[str | Path]) -> str:
    """Markdown tables: offline methods (test AUC, train seconds) and online methods (mean AUC, mean |bias|),
    one column per run folder; "-" where a run lacks a method."""
    runs = [(str(d), load_results(d)) for d in run_dirs]
    header = "| method | " + " | ".join(name for name, _ in runs) + " |"
    rule = "|---|" + "---|" * len(runs)
    lines: list[str] = []
    offline = [m for _, r in runs for m in r.get("offline", {})]
    if offline:
        lines += ["Offline: test AUC (mean ± std over seeds) / train seconds", "", header, rule]
        for m in dict.fromkeys(offline):
            cells = []
            for _, r in runs:
                b = r.get("offline", {}).get(m)
                cells.append(f"{_cell(b['auc'])} / {np.mean(b['train_seconds']):.1f} s" if b else "-")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    online = [m for _, r in runs for m in r.get("online", {})]
    if online:
        lines += ["Online: mean AUC over periods / mean |bias|", "", header, rule]
        for m in dict.fromkeys(online):
            cells = []
            for _, r in runs:
                b = r.get("online", {}).get(m)
                if b:
                    w = b["windows"]
                    cells.append(f"{np.mean([x['auc'] for x in w]):.4f} / {np.mean([abs(x['bias']) for x in w]):.4f}")
                else:
                    cells.append("-")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    if not lines:
        raise DataError(f"{[n for n, _ in runs]}: no offline or online results to compare")
    return "\n".join(lines)
