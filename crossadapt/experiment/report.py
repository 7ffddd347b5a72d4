"""report.md with tables and PNG charts from a results dict (pure: matplotlib, no Ray)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crossadapt import atomic  # noqa: E402
from crossadapt.experiment import tables  # noqa: E402
from crossadapt.metrics import mean_std  # noqa: E402
from crossadapt.online.summary import paired_difference  # noqa: E402


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


def _online_plots(online: dict, meta: dict, out: Path) -> list[str]:
    """AUC per period (mean over seeds, band: ± std) and the drift score over the stream."""
    drift_periods = meta.get("drift_periods", [])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for m, block in online.items():
        s = block["summary"]
        x = np.asarray(s["periods"], dtype=float)
        mean = np.array([np.nan if v is None else v for v in s["per_period"]["auc"]["mean"]])
        std = np.array([0.0 if v is None else v for v in s["per_period"]["auc"]["std"]])
        line, = ax.plot(x, mean, marker="o", label=f"{m} (n={len(s['seeds'])})",
                        linewidth=2.5 if m == "crossadapt" else 1.2)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    for d in drift_periods:
        ax.axvline(d, color="k", linestyle=":", alpha=0.6)
    ax.set_xlabel("period")
    ax.set_ylabel("AUC (test-then-train)")
    ax.set_title("Online AUC per period, mean ± std over seeds (dotted: injected drift)")
    ax.legend(fontsize=8)
    _save(fig, out / "online_auc.png")

    pngs = ["online_auc.png"]
    trace = meta.get("drift_trace")
    if trace and trace.get("ends"):
        fig, ax = plt.subplots(figsize=(8, 3.6))
        ax.plot(trace["ends"], trace["scores"], color="#1f77b4", linewidth=1.2,
                label=f"drift score (W = {meta.get('drift_window_rows', '?')} rows)")
        for name, key, style in (("theta_low", "theta_low", "--"), ("theta_high", "theta_high", "-.")):
            if key in meta:
                ax.axhline(meta[key], color="#7f7f7f", linestyle=style, linewidth=1, label=name)
        for i, e in enumerate(trace.get("shift_ends", [])):
            ax.axvline(e, color="#d62728", alpha=0.7, label="shift declared" if i == 0 else None)
        # period boundaries and injected drifts, from the first run's windows
        first = next(iter(online.values()))["runs"][0]["windows"]
        starts = np.cumsum([0] + [w["rows"] for w in first])[:-1]
        for w, x0 in zip(first, starts):
            if w["period"] in drift_periods:
                ax.axvline(x0, color="k", linestyle=":", alpha=0.6)
        ax.set_xticks(starts, [str(w["period"]) for w in first])
        ax.set_xlabel("stream position (ticks: period starts; dotted: injected drift)")
        ax.set_ylabel("JS above the no-drift level")
        ax.set_title("Causal drift score over the stream (refreshed every batch of traffic)")
        ax.legend(fontsize=8)
        _save(fig, out / "online_drift.png")
        pngs.append("online_drift.png")
    return pngs


def _pm(stat: dict, digits: int = 4, sign: bool = False) -> str:
    """``mean ± std`` of a summary statistic (``-`` when undefined)."""
    if stat is None or stat.get("mean") is None:
        return "-"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(stat['mean'])} ± {(stat.get('std') or 0.0):.{digits}f}"


def _online_section(online: dict, meta: dict, out: Path) -> list[str]:
    """The report's online part: overall table, paired comparisons, per-period tables and plots."""
    methods = {k: v for k, v in online.items() if isinstance(v, dict) and v.get("runs") and "summary" in v}
    if not methods:
        return []
    periods = next(iter(methods.values()))["summary"]["periods"]
    other = [m for m, b in methods.items() if b["summary"]["periods"] != periods]  # merged from another stream
    methods = {m: b for m, b in methods.items() if m not in other}
    seeds = sorted({s for b in methods.values() for s in b["summary"]["seeds"]})
    lines = ["## Online co-distillation", "",
             f"Mean ± sample std over seeds {seeds}; each seed's streams start from that seed's offline "
             "CrossAdapt student. Figures per seed are first averaged over the stream's periods "
             "(prequential: each period is scored before it is trained on). Degradation: AUC of the "
             "first period minus the mean AUC of the later ones (positive: AUC fell).", "",
             "| method | mean AUC | mean LogLoss | mean abs bias | AUC degradation | steps | rows trained (current + history) | exchange share of training time | final test AUC |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, b in methods.items():
        ov = b["summary"]["overall"]
        cur, hist = ov["rows_trained"]["mean"], ov["history_rows"]["mean"]
        rows = f"{cur:.0f} + {hist:.0f}" if cur is not None and hist is not None else "-"
        share = ov["exchange_share"]
        lines.append(f"| {m} | {_pm(ov['auc'])} | {_pm(ov['logloss'])} | {_pm(ov['abs_bias'])} | "
                     f"{_pm(ov['degradation'], sign=True)} | {ov['steps']['mean']:.0f} | {rows} | "
                     f"{100 * (share['mean'] or 0):.2f} % | {_pm((b['summary'].get('final_test') or {}).get('auc'))} |")
    final = tables.final_test_table({"online": methods})
    if final:
        lines += ["", "Final models (student and teacher at the end of the stream) scored once on the test periods "
                  "after the stream, mean ± std over seeds:", "", *final]
    batch = next(iter(methods.values()))["runs"][0].get("batch_size")
    lines += ["", f"Compute: every step of every method trains on exactly {batch} rows; methods with history "
              "replace a share r_enh of each batch by reservoir rows, so they take more steps to consume the "
              "same stream. student_replay has CrossAdapt's exact batches and steps: crossadapt vs "
              "student_replay is the gain of co-distillation at equal compute.", ""]
    if "crossadapt" in methods:
        lines += ["Paired by seed, mean AUC of crossadapt minus each method (mean ± std over seeds). The "
                  "difference exceeds the spread when its absolute mean is larger than the larger of the two "
                  "methods' std over seeds.", "", "| vs | Δ mean AUC | seeds | every seed same sign | exceeds spread |",
                  "|---|---|---|---|---|"]
        for m, b in methods.items():
            if m == "crossadapt":
                continue
            d = paired_difference(methods["crossadapt"], b, "auc")
            if d is None:
                continue
            lines.append(f"| {m} | {_pm(d, sign=True)} | {len(d['seeds'])} | {'yes' if d['same_sign'] else 'no'} | "
                         f"{'**yes**' if d['exceeds_spread'] else 'no'} |")
        lines.append("")
    if other:
        lines += [f"Left out (another stream's periods than {periods}): {', '.join(other)}.", ""]
    drift = set(meta.get("drift_periods", []))
    for key, title, digits, sign in (("auc", "AUC", 4, False), ("logloss", "LogLoss", 4, False),
                                     ("bias", "bias", 3, True)):
        lines += [f"Per period: {title} (mean ± std over seeds; * injected drift)", "",
                  "| period | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for j, k in enumerate(periods):
            cells = []
            for b in methods.values():
                pp = b["summary"]["per_period"][key]
                cells.append(_pm({"mean": pp["mean"][j], "std": pp["std"][j]}, digits, sign))
            lines.append(f"| {k}{'*' if k in drift else ''} | " + " | ".join(cells) + " |")
        lines.append("")
    first = next(iter(methods.values()))["runs"][0]["windows"]
    lines += ["Drift (causal: the score in force at a period's first row was measured on earlier rows only)", "",
              "| period | score at start | max score in period | shifts declared |", "|---|---|---|---|"]
    for w in first:
        lines.append(f"| {w['period']}{'*' if w['period'] in drift else ''} | {w['drift_score']:.4f} | "
                     f"{w['drift_score_max']:.4f} | {w['shifts']} |")
    lines.append("")
    pngs = _online_plots(methods, meta, out)
    return lines + [f"![{p}]({p})" for p in pngs] + [""]


def _fmt(x: float | None, spec: str) -> str:
    """``x`` formatted, or a dash where a figure is undefined (``None``: one row, one table)."""
    return "–" if x is None else format(x, spec)


def _projection_lines(results: dict) -> list[str]:
    """The projection table: per table, then for the whole projection (``projection_summary``, on a
    pooled sample of all tables), the relative inner-product error within fields and across fields,
    cosines and energy kept."""
    proj, summary = results.get("projection"), results.get("projection_summary")
    if not proj:
        return []

    def row(name: str, r: dict, within: str, cos: str) -> str:
        return (f"| {name} | {r.get('method', '')} | {r.get('basis', '')} | {r.get('d_t', '')} → {r.get('d_s', '')} | "
                f"{_fmt(r.get(within), '.2e')} | {_fmt(r.get('cross_field_rel_error'), '.2e')} | {cos} | "
                f"{_fmt(r.get('energy_kept'), '.4f')} |")

    lines = ["## Projection", "", "| table | method | basis | d_t → d_s | inner-product rel. error within fields "
             "| across fields | cos before → after | energy kept |", "|---|---|---|---|---|---|---|---|"]
    for name, r in proj.items():
        cos = f"{_fmt(r.get('cosine_before_mean'), '.3f')} → {_fmt(r.get('cosine_after_mean'), '.3f')}"
        lines.append(row(name, r, "inner_product_rel_error", cos))
    if summary:
        lines.append(row(f"**all** ({summary.get('cross_sample_rows', '')} rows pooled)", summary,
                         "within_field_rel_error", "–"))
    return lines + ["", "Relative error: ||S S^T - S_s S_s^T||_F / ||S S^T||_F over sampled pairs of rows, S before "
                    "and S_s after projection; across fields: pairs of rows of different fields.", ""]


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
        lines += ["## Offline transfer", "", *tables.offline_table(results)]
        lines += ["", f"Mean ± sample std over seeds {offline[next(iter(offline))].get('seed', [])}; ΔAUC per seed "
                  f"against {tables.REFERENCE} of the same seed; exceeds spread: {tables.SPREAD_RULE}. "
                  "Train seconds: teacher inference + optimisation + validation inside the workers "
                  "(+ projection for the methods that use it); Ray start-up excluded.", ""]
        paired = tables.paired_table(results)
        if paired:  # which differences are real, on the same test rows
            lines += ["### Paired tests against CrossAdapt", "", *paired, "", *tables.paired_note(results), ""]
        _bar(offline, "auc", "test AUC", out / "offline_auc.png",
             (f"teacher {t['auc']:.4f}", t["auc"]) if t else None)
        _bar(offline, "train_seconds", "train seconds", out / "offline_time.png")
        lines += ["![AUC per method](offline_auc.png)", "", "![train time per method](offline_time.png)", ""]
    lines += _projection_lines(results)
    online = results.get("online")
    if online:
        lines += _online_section(online, results.get("online_meta", {}), out)
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
