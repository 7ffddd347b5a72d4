"""Progress of long loops as one line per finished item: ``students: job 3 of 18 done (kd-seed1), 2m10s
elapsed, ETA 10m50s``; and a heartbeat that lets a per-step line through at most once a minute.

Pure (no Ray, no logging set-up): callers log the lines. The ETA assumes the items left take as long
as the mean of those done, which is what a sweep of same-sized jobs or periods does.

Example::

    progress = Progress("students", total=len(jobs), unit="job")
    for job in jobs:
        train(job)
        log.info(progress.done(job.name))
"""

from __future__ import annotations

import time
from typing import Callable


def duration(seconds: float) -> str:
    """``45s``, ``2m05s``, ``1h02m``: seconds rounded to the unit shown (negative counts as 0)."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    m = (s + 30) // 60
    return f"{m // 60}h{m % 60:02d}m"


def progress_line(what: str, k: int, n: int, elapsed_s: float, detail: str = "", unit: str = "job") -> str:
    """``{what}: {unit} {k} of {n} done ({detail}), {elapsed} elapsed, ETA {eta}``; the last item says
    ``done in {elapsed}`` instead. The ETA is the mean time of the ``k`` items done times the ``n - k`` left."""
    head = f"{what}: {unit} {k} of {n} done" + (f" ({detail})" if detail else "")
    if k >= n:
        return f"{head}, all done in {duration(elapsed_s)}"
    if k <= 0:
        return f"{head}, {duration(elapsed_s)} elapsed"
    return f"{head}, {duration(elapsed_s)} elapsed, ETA {duration(elapsed_s / k * (n - k))}"


class Progress:
    """Counts finished items of a loop of ``total`` and words the progress line of each.

    Args:
        what: the loop's name, first in the line (``students``, ``online``).
        total: the number of items.
        unit: what an item is called (``job``, ``stream``, ``pass``).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, what: str, total: int, unit: str = "job",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit, self.clock = what, total, unit, clock
        self.k = 0
        self.t0 = clock()

    def done(self, detail: str = "") -> str:
        """One more item finished: its progress line."""
        self.k += 1
        return progress_line(self.what, self.k, self.total, self.clock() - self.t0, detail, self.unit)


class Heartbeat:
    """``due()`` is True when ``interval_s`` passed since it was last True (or since it was created): a
    per-epoch or per-period line is shown by default only when such steps are long (at most one a
    minute), and kept for ``--verbose`` otherwise."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self.last: float | None = None
        self.start = clock()

    def due(self) -> bool:
        """Whether ``interval_s`` passed since the last due call (or, for the first, since creation)."""
        now = self.clock()
        if now - (self.start if self.last is None else self.last) >= self.interval_s:
            self.last = now
            return True
        return False
