"""Criteo Display Advertising logs: ``label, I1..I13, C1..C26``.

Accepts the Kaggle ``train.txt`` form (tab-separated, no header) and the comma-separated form
with a header ``label,I1,...,C26`` (e.g. DeepCTR's ``criteo_sample.txt``). Criteo has no
timestamp: the file is in time order, so ``ts`` is the index of the valid row.

Integer features become categorical tokens with the bucketing of the Kaggle winners
(floor(ln(x)^2) for x > 2): see :func:`int_token`. Every field is categorical.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from crossadapt.data.converters.base import (
    BAD_INTEGER,
    BadLine,
    Layout,
    ParsedBatch,
    RawConverter,
    RowFaults,
    empty_as_missing,
    fixed_layout,
    int_column,
    parse_binary_label,
    token_column,
)

INT_FIELDS: tuple[str, ...] = tuple(f"I{i}" for i in range(1, 14))
CAT_FIELDS: tuple[str, ...] = tuple(f"C{i}" for i in range(1, 27))
COLUMNS: tuple[str, ...] = ("label", *INT_FIELDS, *CAT_FIELDS)
INT_ENCODER = "log_square_bucket"
CAT_ENCODER = "vocab"
_N_INT = len(INT_FIELDS)


def log_square_bucket(x: float) -> int:
    """``floor(ln(x)^2)`` for ``x > 2`` (e.g. 3 -> 1, 10 -> 5, 100 -> 21).

    Raises:
        ValueError: if ``x <= 2`` (those values are their own tokens, see :func:`int_token`).
    """
    if not x > 2:
        raise ValueError(f"log_square_bucket needs x > 2, got {x}")
    return int(math.floor(math.log(x) ** 2))


def int_token(raw: str) -> str | None:
    """Token of one raw Criteo integer feature.

    Empty -> ``None`` (missing, encoded as OOV); ``x > 2`` -> ``"b<floor(ln(x)^2)>"``; otherwise the
    integer value itself (``"-1"``, ``"0"``, ``"1"``, ``"2"``). The ``b`` prefix keeps buckets apart
    from small values (the original recipe let x = 2 share the token of bucket 2, i.e. x = 5).
    Integral floats such as ``"260.0"`` (the sample file's spelling) are accepted.

    Raises:
        BadLine: ``bad_integer`` when the value is not a finite number.
    """
    if not raw or raw.isspace():
        return None
    try:
        x = float(raw)
    except ValueError:
        raise BadLine(BAD_INTEGER) from None
    if not math.isfinite(x):
        raise BadLine(BAD_INTEGER)
    if x > 2:
        return f"b{log_square_bucket(x)}"
    return str(math.floor(x))  # math.floor gives an int: "-1", not "-1.0"


# Integer values repeat from block to block (small counts dominate), so caching the float/log work
# pays; failures raise and are not cached.
_cached_int_token = lru_cache(maxsize=1 << 18)(int_token)


class CriteoConverter(RawConverter):
    """Criteo TSV (no header) or CSV with a ``label,I1..I13,C1..C26`` header."""

    source = "criteo"
    label_definition = "label column (0/1) as given"

    def detect_layout(self, first_line: str, delimiter: str | None, path: Path) -> Layout:
        """Tab if the line has one, else comma; a header when the first column is ``label``."""
        return fixed_layout(first_line, delimiter, path, COLUMNS, INT_FIELDS + CAT_FIELDS,
                            (INT_ENCODER,) * len(INT_FIELDS) + (CAT_ENCODER,) * len(CAT_FIELDS))

    def parse(self, columns: Sequence[pa.Array], layout: Layout) -> ParsedBatch:
        """Label, 13 bucketed integer tokens, 26 categorical tokens (empty -> missing)."""
        faults = RowFaults(len(columns[0]))
        label = int_column(columns[0], parse_binary_label, faults, np.int8)
        tokens = [token_column(c, _cached_int_token, faults) for c in columns[1 : 1 + _N_INT]]
        tokens += [empty_as_missing(c) for c in columns[1 + _N_INT :]]
        return ParsedBatch(label, tokens, faults)
