"""KDD Cup 2012 Track 2 (Tencent search ads) ``training.txt``.

Tab-separated, no header, 12 columns: ``Click, Impression, DisplayURL, AdID, AdvertiserID, Depth,
Position, QueryID, KeywordID, TitleID, DescriptionID, UserID``. A line aggregates ``Impression``
showings of one ad to one user for one query at one (depth, position), of which ``Click`` were
clicked.

Label choice: ``label = 1 if Click > 0 else 0`` (one row per line, "clicked at least once"), the
usual binarisation of this set in CTR benchmarks. It keeps one row per line, so the label rate is
per aggregated instance and higher than the per-impression CTR ``sum(Click) / sum(Impression)``;
expanding each line into ``Impression`` rows would be the alternative. The file carries no time
column; rows are taken in file order as time (``ts`` = valid-row index). Every id column, Depth and
Position included, is a categorical field; ``Impression`` is only checked, not a feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from crossadapt.data.converters.base import (
    BAD_COUNT,
    BAD_LABEL,
    BadLine,
    Layout,
    ParsedBatch,
    RawConverter,
    RowFaults,
    empty_as_missing,
    fixed_layout,
    int_column,
)

COLUMNS: tuple[str, ...] = (
    "Click",
    "Impression",
    "DisplayURL",
    "AdID",
    "AdvertiserID",
    "Depth",
    "Position",
    "QueryID",
    "KeywordID",
    "TitleID",
    "DescriptionID",
    "UserID",
)
FIELDS: tuple[str, ...] = COLUMNS[2:]


def _count(token: str) -> int | None:
    """A non-negative integer count, else ``None``."""
    token = token.strip()
    return int(token) if token.isascii() and token.isdigit() else None


def _clicks(token: str) -> int:
    clicks = _count(token)
    if clicks is None:
        raise BadLine(BAD_LABEL)
    return clicks


def _impressions(token: str) -> int:
    impressions = _count(token)
    if impressions is None or impressions < 1:
        raise BadLine(BAD_COUNT)
    return impressions


class KDD12Converter(RawConverter):
    """KDD Cup 2012 Track 2 training instances; label = clicked at least once."""

    source = "kdd12"
    label_definition = "1 if Click > 0 else 0 (Click counts clicks out of Impression showings of the line)"

    def detect_layout(self, first_line: str, delimiter: str | None, path: Path) -> Layout:
        """Tab (or comma) separated; an optional header whose first column is ``Click``."""
        return fixed_layout(first_line, delimiter, path, COLUMNS, FIELDS, ("vocab",) * len(FIELDS),
                            field_columns=tuple(range(2, len(COLUMNS))))

    def parse(self, columns: Sequence[pa.Array], layout: Layout) -> ParsedBatch:
        """Check Click (``bad_label``) and Impression >= max(1, Click) (``bad_count``); ids as tokens."""
        faults = RowFaults(len(columns[0]))
        clicks = int_column(columns[0], _clicks, faults)
        impressions = int_column(columns[1], _impressions, faults)
        faults.add(BAD_COUNT, clicks > impressions)
        tokens = [empty_as_missing(c) for c in columns[2:]]
        return ParsedBatch((clicks > 0).astype(np.int8), tokens, faults)
