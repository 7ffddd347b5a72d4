"""Synthetic generator throughput and memory: rows/s and peak RSS against the number of rows.

Each size runs in a fresh process (so its peak RSS is its own): the world is built once (timed
apart: it does not depend on the rows), then ``generate`` writes ``rows`` rows as 4 periods. Peak
memory should not grow with rows (rows are drawn and written ``chunk_rows`` at a time). Wall time on
a shared machine is noisy: the process CPU time is reported beside it, with the load average.

Example::

    python benchmarks/synthetic_gen.py --config configs/criteo_like.yaml --rows 1000000 4000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(config: str, rows: int, periods: int, out: str) -> dict:
    """Generate ``rows`` rows in this process; returns its figures."""
    sys.path.insert(0, str(ROOT))
    from crossadapt.config import load_config, replace
    from crossadapt.data.synthetic import generate
    from crossadapt.data.synthetic_world import build_world

    syn = load_config(config).synthetic
    syn = replace(syn, rows_per_period=rows // periods, num_periods=periods,
                  drift_periods=tuple(d for d in syn.drift_periods if d < periods) or (periods - 1,))
    c0, t0 = time.process_time(), time.perf_counter()
    build_world(syn)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    c0, t0 = time.process_time(), time.perf_counter()
    generate(syn, out)  # builds the world again, then writes the rows
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rows": syn.rows_per_period * periods, "chunk_rows": syn.chunk_rows, "build_world_s": build_s,
            "build_world_cpu_s": build_cpu, "generate_s": wall, "generate_cpu_s": cpu,
            "rows_per_s": syn.rows_per_period * periods / max(wall - build_s, 1e-9),
            "rows_per_cpu_s": syn.rows_per_period * periods / max(cpu - build_cpu, 1e-9),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "loadavg": list(os.getloadavg())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/criteo_like.yaml")
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--periods", type=int, default=4)
    ap.add_argument("--out", default="")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.config, args.one, args.periods, args.dir)))
        return
    results = []
    for rows in args.rows:
        tmp = tempfile.mkdtemp(prefix="synthetic_gen-")
        try:
            cmd = [sys.executable, __file__, "--config", args.config, "--periods", str(args.periods),
                   "--one", str(rows), "--dir", tmp]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        results.append(r)
        print(f"{r['rows']:>11,} rows: {r['rows_per_s']:,.0f} rows/s ({r['rows_per_cpu_s']:,.0f} per CPU s), "
              f"world {r['build_world_s']:.1f} s, peak RSS {r['peak_rss_bytes'] / 2**20:,.0f} MiB, "
              f"load {r['loadavg'][0]:.1f}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"config": args.config, "sizes": results}, indent=1))


if __name__ == "__main__":
    main()
