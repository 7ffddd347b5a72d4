"""report.md with tables and PNG charts from a results dict (pure: matplotlib, no Ray)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crossadapt import atomic  # noqa: E402
from crossadapt.metrics import mean_std  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _bar(offline: dict, key: str, ylabel: str, path: Path, reference: tuple[str, float] | None = None) -> None:
    names = list(offline)
    stats = [mean_std(offline[m][key]) for m in names]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(names, [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=4,
           color=["#d62728" if n == "crossadapt" else "#7f7f7f" for n in names])
    if key == "auc":
        extra = [reference[1]] if reference is not None else []
        lo = min([s[0] - s[1] for s in stats] + extra)
        hi = max([s[0] + s[1] for s in stats] + extra)
        ax.set_ylim(lo - 0.3 * (hi - lo + 1e-3), hi + 0.3 * (hi - lo + 1e-3))
    if reference is not None:  # e.g. the teacher every student is measured against
        ax.axhline(reference[1], color="k", linestyle="--", linewidth=1, label=reference[0])
        ax.legend(fontsize=8, loc="lower right")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} per method (mean ± std over seeds)")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    _save(fig, path)


def _online_plots(online: dict, drift_periods: list[int], out: Path) -> list[str]:
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for m, block in online.items():
        w = block["windows"]
        ax.plot([x["period"] for x in w], [x["auc"] for x in w], marker="o", label=m,
                linewidth=2.5 if m == "crossadapt" else 1.2)
    for d in drift_periods:
        ax.axvline(d, color="k", linestyle=":", alpha=0.6)
    ax.set_xlabel("period")
    ax.set_ylabel("AUC (test-then-train)")
    ax.set_title("Online AUC per period (dotted: injected drift)")
    ax.legend(fontsize=8)
    _save(fig, out / "online_auc.png")

    ca = online.get("crossadapt", next(iter(online.values())))["windows"]
    fig, ax1 = plt.subplots(figsize=(8, 3.6))
    periods = [x["period"] for x in ca]
    ax1.plot(periods, [x["drift_score"] for x in ca], marker="o", color="#1f77b4", label="drift score (JS)")
    ax1.set_ylabel("drift score (JS divergence)", color="#1f77b4")
    ax2 = ax1.twinx()
    ax2.step(periods, [x["r_enh"] for x in ca], where="mid", color="#ff7f0e", label="r_enh")
    ax2.set_ylabel("r_enh (history share)", color="#ff7f0e")
    for d in drift_periods:
        ax1.axvline(d, color="k", linestyle=":", alpha=0.6)
    ax1.set_xlabel("period")
    ax1.set_title("Drift score and history mixing (dotted: injected drift)")
    _save(fig, out / "online_drift.png")
    return ["online_auc.png", "online_drift.png"]


def write_report(results: dict, out_dir: str | Path) -> Path:
    """Write ``report.md`` and its PNG charts into ``out_dir``; returns the report path."""
    out = Path(out_dir)
    lines = ["# CrossAdapt report", ""]
    t = results.get("teacher")
    if t:
        lines += [f"Teacher: test AUC **{t['auc']:.4f}**, LogLoss {t['logloss']:.4f}, bias {t['bias']:+.3f}, "
                  f"trained in {t['train_seconds']:.1f} s.", ""]
    offline = results.get("offline")
    if offline:
        lines += ["## Offline transfer", "",
                  "| method | AUC | LogLoss | bias | train s | samples |", "|---|---|---|---|---|---|"]
        for m, b in offline.items():
            a, la, bi, ts = mean_std(b["auc"]), mean_std(b["logloss"]), mean_std(b["bias"]), mean_std(b["train_seconds"])
            lines.append(f"| {m} | {a[0]:.4f} ± {a[1]:.4f} | {la[0]:.4f} ± {la[1]:.4f} | {bi[0]:+.3f} ± {bi[1]:.3f} "
                         f"| {ts[0]:.1f} ± {ts[1]:.1f} | {int(np.mean(b['samples']))} |")
        lines += ["", f"Mean ± sample std over seeds {offline[next(iter(offline))].get('seed', [])}. "
                  "Train seconds: teacher inference + optimisation + validation inside the workers "
                  "(+ projection for the methods that use it); Ray start-up excluded.", ""]
        _bar(offline, "auc", "test AUC", out / "offline_auc.png",
             (f"teacher {t['auc']:.4f}", t["auc"]) if t else None)
        _bar(offline, "train_seconds", "train seconds", out / "offline_time.png")
        lines += ["![AUC per method](offline_auc.png)", "", "![train time per method](offline_time.png)", ""]
    proj = results.get("projection")
    if proj:
        lines += ["## Projection", "", "| table | method | d_t → d_s | inner-product rel. error | cos before → after | energy kept |",
                  "|---|---|---|---|---|---|"]
        for name, r in proj.items():
            lines.append(f"| {name} | {r.get('method', '')} | {r.get('d_t', '')} → {r.get('d_s', '')} | "
                         f"{r['inner_product_rel_error']:.2e} | {r.get('cosine_before_mean', float('nan')):.3f} → "
                         f"{r.get('cosine_after_mean', float('nan')):.3f} | {r['energy_kept']:.4f} |")
        lines.append("")
    online = results.get("online")
    if online:
        methods = {k: v for k, v in online.items() if isinstance(v, dict) and "windows" in v}
        lines += ["## Online co-distillation", "", "| method | mean AUC | mean LogLoss | mean abs bias | AUC degradation vs first window |",
                  "|---|---|---|---|---|"]
        for m, b in methods.items():
            w = b["windows"]
            aucs = [x["auc"] for x in w]
            lines.append(f"| {m} | {np.mean(aucs):.4f} | {np.mean([x['logloss'] for x in w]):.4f} | "
                         f"{np.mean([abs(x['bias']) for x in w]):.4f} | {aucs[0] - np.mean(aucs[1:]) if len(aucs) > 1 else 0:+.4f} |")
        drift = results.get("online_meta", {}).get("drift_periods", [])
        pngs = _online_plots(methods, drift, out)
        lines += [""] + [f"![{p}]({p})" for p in pngs] + [""]
    lines += _provenance(results)
    path = out / "report.md"
    atomic.write_text(path, "\n".join(lines) + "\n")
    return path


def _provenance(results: dict) -> list[str]:
    """What produced the figures above: the fingerprints of code, data and every stage."""
    fps = results.get("fingerprints")
    if not fps:
        return []
    short = lambda fp: f"`{fp[:16]}`" if fp else "-"  # noqa: E731
    data = ", ".join(f"{k} {short(v)}" for k, v in fps.get("data", {}).items())
    reused = " (reused)" if results.get("teacher", {}).get("reused") else ""
    lines = ["## Provenance", "",
             f"Code {short(fps.get('code'))}; data {data}; teacher {short(fps.get('teacher'))}{reused}; "
             f"projection {short(fps.get('projection'))}.", "",
             "| student | fingerprint | trained |", "|---|---|---|"]
    for r in results.get("offline_records", []):
        lines.append(f"| {r['method']}-seed{r['seed']} | {short(r.get('fingerprint'))} | "
                     f"{'earlier (reused)' if r.get('reused') else 'this run'} |")
    online = {m: b for m, b in results.get("online", {}).items() if isinstance(b, dict) and b.get("fingerprint")}
    if online:
        lines += ["", "Online blocks: " + ", ".join(f"{m} {short(b['fingerprint'])}" for m, b in online.items()) + "."]
    lines += ["", "Fingerprints: sha256 of what determines each result (crossadapt/fingerprint.py); a stage is "
              "reused only when its fingerprint matches.", ""]
    return lines
