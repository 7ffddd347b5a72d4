"""Markdown tables of the latest benchmark results (``benchmarks/results/*.json``), for the README.

Usage::

    python benchmarks/summary.py            # after `make bench`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _si(x: float | None) -> str:
    """3 significant digits with a k/M/G suffix."""
    if x is None:
        return "-"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {suf}"
    return f"{x:.3g}"


def _r(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _machine(res: dict[str, Any]) -> str:
    m = res["machine"]
    dev = m.get("cuda_device") or "CPU"
    mem = f", {m['memory_gib']} GiB" if m.get("memory_gib") else ""
    return f"{m['cpu_count']} CPU cores{mem}, {dev}, torch {m['torch']}, Ray {m['ray']}"


def train(res: dict[str, Any]) -> str:
    """Samples/s of the distillation step: bare loops, the engine in process, Ray Data + Ray Train."""
    c = res["config"]
    rows = []
    for batch, runs in res["runs"].items():
        # the reference loop: "bare:1thr" on CPU (one thread, like the Ray worker), "bare:fp32" on GPU
        bare = next(r for n, r in runs.items() if n.startswith("bare"))["joint_samples_per_s"]["median"]
        for name, run in runs.items():
            joint = run["joint_samples_per_s"]["median"]
            rows.append([batch, name, _si(run["frozen_samples_per_s"]["median"]), _si(joint), _r(joint / bare),
                         _si(run.get("e2e_samples_per_s")), _r(run.get("wall_seconds"), 1)])
    title = (f"DNN({c['teacher']['embed_dim']}) teacher -> DCNv2({c['student']['embed_dim']}) student, "
             f"{c['fields']} fields, {_si(c['ids'])} ids, {_si(c['rows'])} rows, device {c['device']}")
    return title + "\n\n" + _table(
        ["batch", "loop", "frozen phase samples/s", "joint phase samples/s", "joint vs bare", "end to end samples/s",
         "wall s"], rows)


def projection(res: dict[str, Any]) -> str:
    """Rows/s of each path against ``torch.svd_lowrank`` and the memory-copy floor; actors' scaling and memory."""
    rows = []
    for name, t in res["tables"].items():
        spec = next(s for s in res["config"]["tables"] if s["name"] == name)
        label = f"{name} {_si(spec['cpu_rows'])} x {spec['d_t']} -> {spec['d_s']}"
        ref = t["svd_lowrank"]["rows_per_s"]
        floor = t["floor"]["floor_rows_per_s"]
        for key, what in (("gram_pass", "Gram pass"), ("basis", f"basis ({t['basis']['method']})"),
                          ("project", "basis + projected table, in process"), ("svd_lowrank", "torch.svd_lowrank"),
                          ("numpy_svd", "numpy SVD (subsample)")):
            if key in t and not (key == "gram_pass" and spec["method"] != "gram"):
                rps = t[key]["rows_per_s"]
                rows.append([label, what, _si(rps), _r(rps / ref), _r(rps / floor, 3), "-", "-"])
        for k, a in t["actors"].items():
            rows.append([label, f"{k} actor(s), from the checkpoint to the .npy", _si(a["rows_per_s"]),
                         _r(a["rows_per_s"] / ref), "-", _r(a.get("efficiency_vs_cores")),
                         _r(a["max_peak_over_shard"])])
    return _table(["table", "path", "rows/s", "vs svd_lowrank", "vs copy floor", "scaling eff. (per core)",
                   "peak mem / shard"], rows)


def online(res: dict[str, Any]) -> str:
    """Online samples/s and the exchange share at each ``tau``, Ray actor pair against the bare loop."""
    rows = []
    for tau, r in res["runs"].items():
        ray_, bare = r["ray"], r["bare"]
        rows.append([tau, _si(ray_["samples_per_s"]), _si(bare["samples_per_s"]),
                     _r(ray_["samples_per_s"] / bare["samples_per_s"]), f"{100 * ray_['exchange_share']:.1f} %",
                     f"{100 * bare['exchange_share']:.1f} %", str(ray_["teacher_updates"])])
    return _table(["tau", "Ray actors samples/s", "bare samples/s", "Ray vs bare", "exchange share (Ray)",
                   "exchange share (bare)", "teacher updates"], rows)


def scale(res: dict[str, Any]) -> str:
    """Per size and offline stage: rows, seconds, rows/s and peak RSS (``benchmarks/scale.py``)."""
    rows = []
    for size in res["sizes"]:
        for name, st in size["stages"].items():
            held = (st.get("data") or {}).get("train", {}).get("mode", "-")
            train_rps = st["rows"] / st["train_seconds"] if st.get("train_seconds") else None
            rows.append([_si(size["rows"]), name, _si(st["rows"]), _r(st["seconds"], 1), _si(st["rows_per_s"]),
                         _si(train_rps), _si(st["driver_peak_rss_bytes"]) + "B",
                         _si(st["worker_peak_rss_bytes"]) + "B" if st.get("worker_peak_rss_bytes") else "-", held])
    out = _table(["world rows", "stage", "rows", "wall s", "rows/s (wall)", "rows/s (training)", "driver peak RSS",
                  "largest worker peak RSS", "shard"], rows)
    c = res.get("checks") or {}
    if c:
        lines = [f"Largest size / smallest: {c['rows_ratio']:.0f}x rows."]
        for name in ("teacher", "projection", "crossadapt", "kd"):
            if name in c:
                x = c[name]
                lines.append(f"{name}: rows/s {_r(x['rows_per_s_ratio'])}x, driver RSS {_r(x['driver_rss_ratio'])}x, "
                             f"worker RSS {_r(x['worker_rss_ratio'])}x")
        out += "\n\n" + "\n".join(f"- {x}" for x in lines)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    for name, fn in (("train_throughput", train), ("projection", projection), ("online", online), ("scale", scale)):
        path = args.results / f"{name}.json"
        if not path.exists():
            print(f"### {name}\n\n(no {path}: run `python benchmarks/{name}.py --quick`)\n")
            continue
        res = json.loads(path.read_text())
        cfg = res.get("config", {})
        how = "--quick" if cfg.get("quick", True) else f"--device {cfg.get('device', 'cpu')}"
        if name == "scale" and not cfg.get("quick"):
            how = "--rows " + ",".join(str(r) for r in cfg.get("rows", []))
        print(f"### {name} (`python benchmarks/{name}.py {how}`, {res.get('runtime_s', 0):.0f} s)\n")
        print(f"Machine: {_machine(res)}.\n")
        print(fn(res) + "\n")


if __name__ == "__main__":
    main()
