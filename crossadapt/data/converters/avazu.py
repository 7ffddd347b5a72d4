"""Avazu click logs: CSV with a header ``id,click,hour,C1,banner_pos,site_id,...,C21``.

``click`` is the label, ``hour`` (``YYMMDDHH``, UTC) becomes ``ts`` in hours since the Unix epoch
and the default period key (one period per day), ``id`` is dropped (unique per row, so useless as
a feature), and every other column is a categorical field named as in the header.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from crossadapt.data.converters.base import (
    BAD_TIMESTAMP,
    BadLine,
    Layout,
    ParsedBatch,
    RawConverter,
    RowFaults,
    detect_delimiter,
    empty_as_missing,
    int_column,
    parse_binary_label,
)
from crossadapt.errors import DataError

ID_COLUMN = "id"
LABEL_COLUMN = "click"
HOUR_COLUMN = "hour"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def hour_to_ts(hour: str) -> int:
    """``YYMMDDHH`` (years 2000-2099, UTC) -> hours since the Unix epoch, e.g. ``"14102100"`` -> 392736.

    Raises:
        BadLine: ``bad_timestamp`` when the value is not a valid ``YYMMDDHH``.
    """
    if len(hour) != 8 or not hour.isdigit():
        raise BadLine(BAD_TIMESTAMP)
    try:
        t = datetime(2000 + int(hour[:2]), int(hour[2:4]), int(hour[4:6]), int(hour[6:8]), tzinfo=timezone.utc)
    except ValueError:
        raise BadLine(BAD_TIMESTAMP) from None
    return int((t - _EPOCH).total_seconds()) // 3600


class AvazuConverter(RawConverter):
    """Avazu CSV with a header; periods default to one per day."""

    source = "avazu"
    label_definition = "click column (0/1) as given"
    time_definition = "hour (YYMMDDHH, UTC) as hours since 1970-01-01; default period = day (ts // 24)"

    def detect_layout(self, first_line: str, delimiter: str | None, path: Path) -> Layout:
        """Comma (or tab) separated; the header must name ``click`` and ``hour``."""
        delim = detect_delimiter(first_line, delimiter, (",", "\t"), path)
        header = [h.strip() for h in first_line.split(delim)]
        lower = [h.lower() for h in header]
        missing = [c for c in (LABEL_COLUMN, HOUR_COLUMN) if c not in lower]
        if missing:
            raise DataError(
                f"{path}: Avazu needs a header line naming {LABEL_COLUMN!r} and {HOUR_COLUMN!r}; "
                f"line 1 lacks {missing} (columns: {header[:6]}...)"
            )
        keep = [i for i, lo in enumerate(lower) if lo not in (ID_COLUMN, LABEL_COLUMN, HOUR_COLUMN)]
        fields = [header[i] for i in keep]
        return Layout(
            delimiter=delim,
            has_header=True,
            num_columns=len(header),
            field_names=tuple(fields),
            encoders=("vocab",) * len(fields),
            columns={lo: i for i, lo in enumerate(lower)},
            field_columns=tuple(keep),
        )

    def parse(self, columns: Sequence[pa.Array], layout: Layout) -> ParsedBatch:
        """Label from ``click``, ts and day from ``hour``, one token per other column."""
        cols = layout.columns
        faults = RowFaults(len(columns[0]))
        label = int_column(columns[cols[LABEL_COLUMN]], parse_binary_label, faults, np.int8)
        ts = int_column(columns[cols[HOUR_COLUMN]], hour_to_ts, faults)  # a day has 24 distinct hours
        tokens = [empty_as_missing(columns[i]) for i in layout.field_columns]
        return ParsedBatch(label, tokens, faults, ts=ts, group=ts // 24)

    def group_label(self, group: int) -> str:
        """The day as ``YYYY-MM-DD``."""
        return (_EPOCH + timedelta(days=group)).strftime("%Y-%m-%d")
