"""Shared pieces of the benchmark scripts: arguments, devices, timing, machine facts, results, tables.

Every benchmark measures CrossAdapt against a bare-PyTorch baseline *in the same run* and writes
raw figures plus ratios as JSON (``crossadapt.atomic.write_json``). Timings on a shared machine are
noisy: the load average before and after is recorded so a reader can tell a quiet run from a busy one.

The scripts follow the shape of Ray Train's release benchmarks: a *factory* (model, data, loss)
apart from *runners* (setup, step / epoch, run) so that the bare loop and the Ray path are fed the
very same model, data and loss.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/<name>.py` from a checkout without install
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from crossadapt import atomic  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
MiB = 1024**2


# ---------------------------------------------------------------- arguments and devices


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: ``--quick``, ``--out``, ``--device``, ``--repeats``, ``--warmup``."""
    p = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (minutes on a 2-core CPU machine)")
    p.add_argument("--out", default=str(RESULTS_DIR / f"{name}.json"), help="JSON results path (written atomically)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (median reported); default per size")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs before the timed repeats")
    return p


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU) so that wall-clock timings mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` intra-op threads (``None``: leave as is), restoring the previous count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- timing


def time_repeats(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: torch.device | None = None) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (device synced around each)."""
    dev = device or torch.device("cpu")
    for _ in range(max(warmup, 0)):
        fn()
        sync(dev)
    out = []
    for _ in range(max(repeats, 1)):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        out.append(time.perf_counter() - t0)
    return out


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw values (rounded for the JSON)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals),
            "values": [round(v, 6) for v in vals]}


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` or ``None`` when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---------------------------------------------------------------- machine facts


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # not installed, or no __version__
        return None


def machine_facts(device: torch.device) -> dict[str, Any]:
    """CPU count, library versions, the CUDA device (or none) and the load average right now."""
    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": _version("ray"),
        "numpy": _version("numpy"),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda_version": torch.version.cuda,
        "loadavg_start": _loadavg(),
    }
    try:
        import psutil

        facts["memory_gib"] = round(psutil.virtual_memory().total / 1024**3, 1)
    except ImportError:
        pass
    return facts


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def contention_note(facts: dict[str, Any]) -> str:
    """A one-line warning when the 1-minute load exceeded the CPU count at the start or the end."""
    cpus = facts.get("cpu_count") or 1
    loads = [x[0] for x in (facts.get("loadavg_start"), facts.get("loadavg_end")) if x]
    if loads and max(loads) > cpus:
        return (f"busy machine: 1-min load average up to {max(loads):.1f} on {cpus} CPUs; "
                "absolute figures are pessimistic, re-run on a quiet machine")
    return ""


# ---------------------------------------------------------------- results


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tuples lists, torch/numpy scalars Python numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and getattr(x, "shape", None) == ():
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_results(path: str | os.PathLike, result: dict[str, Any]) -> Path:
    """Write ``result`` atomically as JSON (the folder is created) and return the path."""
    path = Path(path)
    atomic.write_json(path, _clean(result))
    return path


def fmt(x: Any, digits: int = 3) -> str:
    """Compact cell text: SI suffixes for large numbers, ``-`` for missing values."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int) and abs(x) < 10_000:
        return str(x)
    x = float(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def finish(path: str | os.PathLike, result: dict[str, Any], headers: Sequence[str], rows: Sequence[Sequence[Any]],
           started: float) -> None:
    """Stamp the end load average and run time, write the JSON, print the table and notes."""
    facts = result.setdefault("machine", {})
    facts["loadavg_end"] = _loadavg()
    result["runtime_s"] = round(time.perf_counter() - started, 2)
    note = contention_note(facts)
    if note:
        result.setdefault("notes", []).append(note)
    out = write_results(path, result)
    print()
    print(table(headers, rows))
    for n in result.get("notes", []):
        print(f"note: {n}")
    print(f"[{result.get('benchmark')}] {result['runtime_s']:.1f} s, results in {out}")


# ---------------------------------------------------------------- Ray


@contextlib.contextmanager
def ray_session(num_cpus: int, object_store_memory: int) -> Iterator[None]:
    """Start a local Ray (``crossadapt.ray_init.init_ray``) and shut it down afterwards.

    Never ``ray stop``: other Ray sessions may run on the same machine. An already initialised Ray
    (``RAY_ADDRESS`` or a caller's session) is used and left running.
    """
    import ray

    from crossadapt.ray_init import init_ray

    owned = not ray.is_initialized()
    init_ray(num_cpus=num_cpus, object_store_memory=int(object_store_memory))
    try:
        yield
    finally:
        if owned:
            ray.shutdown()


# ---------------------------------------------------------------- process memory


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM``, ``RssAnon``, ``RssFile``, ``RssShmem`` of ``pid`` in bytes (Linux ``/proc``)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) of ``pid``; False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryPoller:
    """Polls ``/proc/<pid>/status`` of some processes in a thread and keeps each one's peak ``RssAnon``.

    ``RssAnon`` is the process's own (anonymous) memory: it leaves out pages of memory-mapped files
    (a checkpoint read through ``mmap``) and the shared-memory object store, which ``VmHWM`` counts.
    A poll can miss a peak shorter than ``interval_s``; the kernel's ``VmHWM`` (exact, all pages) is
    read as well.
    """

    def __init__(self, pids: Sequence[int], interval_s: float = 0.005) -> None:
        self.pids = list(pids)
        self.interval_s = interval_s
        self.baseline = {p: proc_status(p) for p in self.pids}
        self.hwm_reset = {p: reset_peak(p) for p in self.pids}
        self.peak_anon = {p: self.baseline[p].get("RssAnon", 0) for p in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.pids:
                a = proc_status(p).get("RssAnon")
                if a is not None and a > self.peak_anon[p]:
                    self.peak_anon[p] = a
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "MemoryPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.end = {p: proc_status(p) for p in self.pids}

    def report(self, pid: int) -> dict[str, Any]:
        """Baseline and peak figures of ``pid`` in bytes (``peak_anon_delta``: peak minus the baseline)."""
        base, end = self.baseline[pid], getattr(self, "end", {}).get(pid, {})
        return {
            "baseline_anon": base.get("RssAnon"),
            "peak_anon": self.peak_anon[pid],
            "peak_anon_delta": self.peak_anon[pid] - base.get("RssAnon", 0),
            "vm_hwm": end.get("VmHWM") if self.hwm_reset[pid] else None,
            "vm_hwm_delta": (end.get("VmHWM", 0) - base.get("VmRSS", 0)) if self.hwm_reset[pid] else None,
        }
