"""Independent driver-side work run a few at a time (Ray Train lanes, online streams), in threads.

The work itself runs in Ray actors; a driver thread only waits on them, so threads are enough.
The threads are daemons and the caller waits in short joins: a Ctrl-C reaches the main thread at
once and nothing holds the process open after it (what each unit committed stays on disk).
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def run_concurrently(calls: list[Callable[[], T]], at_once: int) -> list[T]:
    """Run ``calls`` with at most ``at_once`` running at any time, in list order; their results in
    list order. After an error no further call starts; the first error (in list order) is raised
    once the running ones have ended. ``at_once <= 1`` runs them one after another in this thread."""
    if at_once <= 1 or len(calls) <= 1:
        return [call() for call in calls]
    results: list = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)
    lock = threading.Lock()
    todo = iter(range(len(calls)))

    def worker() -> None:
        while True:
            with lock:
                if any(e is not None for e in errors):
                    return
                k = next(todo, None)
            if k is None:
                return
            try:
                results[k] = calls[k]()
            except BaseException as e:  # handed to the caller's thread below
                errors[k] = e

    threads = [threading.Thread(target=worker, name=f"crossadapt-concurrent{i}", daemon=True)
               for i in range(min(at_once, len(calls)))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.5)  # short waits: a KeyboardInterrupt reaches this thread
    for e in errors:
        if e is not None:
            raise e
    return results
