"""Resident memory of this process: now, and the peak over a stretch of work (Linux ``/proc``; no Ray).

``ru_maxrss`` is the peak over the whole life of a process, and Ray reuses worker processes, so a
stage's own peak is sampled: a daemon thread reads ``VmRSS`` every ``interval_s`` while the stage
runs (a peak shorter than the interval may be missed; the high-water mark of the process, which
cannot miss it, is kept beside it).
"""

from __future__ import annotations

import resource
import threading


def rss_bytes() -> int:
    """This process's resident set size now (0 where ``/proc`` is not there)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def max_rss_bytes() -> int:
    """This process's high-water resident set size since it started (Linux reports kilobytes)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class PeakRss:
    """Context manager sampling this process's RSS; ``peak`` is the largest sample (bytes).

    Example::

        with PeakRss() as m:
            work()
        m.peak
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="crossadapt-peak-rss", daemon=True)

    def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes())
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> "PeakRss":
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
