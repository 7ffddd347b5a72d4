"""The online stream cut into training batches, with drift-aware history mixing (pure, no Ray).

:class:`StreamBatcher` turns the periods of the stream, in time order, into batches of exactly
``online.batch_size`` rows. For a method with history, a share ``r_enh`` of each batch comes from
the reservoir (a uniform sample of the traffic seen so far) and the rest is the next unseen rows of
the stream; ``r_enh`` follows from the drift score in force at the batch's first row, which was
measured on earlier rows only (:class:`crossadapt.online.drift.DriftTrace`). The current rows of
a batch enter the reservoir after it; a shift declared by the detector empties the reservoir when
``online.reset_history_on_shift`` is set.

Rows of a period that do not fill a last batch (fewer than the batch's current share) wait for
the next period's rows, so no batch is short and no row is dropped until the stream ends (the
last ones, fewer than one batch, are counted in ``carry_rows``).

Example:
    >>> batcher = StreamBatcher(cfg.online, history=True, seed=0, trace=trace)  # doctest: +SKIP
    >>> batcher.warm_up(retained_window)                                         # doctest: +SKIP
    >>> for batch, info in batcher.batches(period_rows): ...                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from crossadapt.config import OnlineConfig
from crossadapt.data import arrays as A
from crossadapt.online.drift import DriftTrace, r_enh_from_score
from crossadapt.online.reservoir import Reservoir


class StreamBatcher:
    """Batches of exactly ``batch_size`` rows, current rows plus a drift-driven share of history.

    Args:
        online: the online config (batch size, schedule, reservoir size, reset on shift).
        history: mix reservoir rows into batches (``False``: current rows only, ``r_enh = 0``).
        seed: seed of the reservoir and of the draws of history rows.
        trace: the stream's drift scores (one per ``batch_size`` rows of traffic).

    Attributes:
        pos: stream rows consumed (trained on) so far.
        rows_trained, history_rows: current and reservoir rows in the batches so far.
    """

    def __init__(self, online: OnlineConfig, history: bool, seed: int, trace: DriftTrace) -> None:
        self.o, self.history, self.trace = online, history, trace
        self.reservoir = Reservoir(online.reservoir_size if history else 0, seed=seed)
        self.rng = np.random.default_rng([seed, 7])
        self.carry: A.Arrays | None = None
        self.pos = 0
        self._next_refresh = 0  # index of the first trace refresh not yet applied
        self.rows_trained = self.history_rows = 0

    def warm_up(self, retained: A.Arrays | None) -> None:
        """Seed the reservoir with the retained window (methods with history only)."""
        if self.history and retained is not None:
            self.reservoir.add(retained)

    def _advance(self, pos: int) -> None:
        """Apply the refreshes measured on rows before ``pos``: a shift among them empties the reservoir."""
        ends = self.trace.ends
        while self._next_refresh < ends.size and ends[self._next_refresh] <= pos:
            if self.trace.shifts[self._next_refresh] and self.history and self.o.reset_history_on_shift:
                self.reservoir.clear()  # history from before the shift no longer describes the traffic
            self._next_refresh += 1

    def batches(self, data: A.Arrays) -> Iterator[tuple[A.Arrays, dict[str, Any]]]:
        """The batches of one period's rows (after any rows the last period left); each comes with
        ``{"r_enh", "drift_score", "history_rows"}``. Rows that do not fill a batch wait in ``carry``."""
        rows = data if self.carry is None else A.concat([self.carry, data])
        n, b, at = A.num_rows(rows), self.o.batch_size, 0
        while True:
            self._advance(self.pos)
            score = self.trace.score_at(self.pos)
            r_enh = r_enh_from_score(score, self.o.theta_low, self.o.theta_high, self.o.r_enh_min,
                                     self.o.r_enh_max) if self.history else 0.0
            n_hist = min(int(round(b * r_enh)), b - 1, len(self.reservoir))  # at least one current row
            n_cur = b - n_hist
            if at + n_cur > n:
                break
            cur = A.take(rows, slice(at, at + n_cur))
            batch = A.concat([cur, self.reservoir.sample(n_hist, self.rng)]) if n_hist else cur
            if self.history:
                self.reservoir.add(cur)
            at += n_cur
            self.pos += n_cur
            self.rows_trained += n_cur
            self.history_rows += n_hist
            yield batch, {"r_enh": r_enh, "drift_score": score, "history_rows": n_hist}
        self.carry = A.take(rows, slice(at, n)) if at < n else None

    @property
    def carry_rows(self) -> int:
        """Rows waiting for the next period (not trained yet)."""
        return 0 if self.carry is None else A.num_rows(self.carry)

    def state_dict(self) -> dict[str, Any]:
        """Reservoir, random state, waiting rows and counters (numpy arrays and plain values)."""
        return {"reservoir": self.reservoir.state_dict(), "rng": self.rng.bit_generator.state, "carry": self.carry,
                "pos": self.pos, "next_refresh": self._next_refresh, "rows_trained": self.rows_trained,
                "history_rows": self.history_rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the trace and config are this batcher's own)."""
        self.reservoir.load_state_dict(state["reservoir"])
        self.rng.bit_generator.state = state["rng"]
        self.carry = None if state["carry"] is None else {k: np.asarray(v) for k, v in state["carry"].items()}
        self.pos, self._next_refresh = int(state["pos"]), int(state["next_refresh"])
        self.rows_trained, self.history_rows = int(state["rows_trained"]), int(state["history_rows"])
