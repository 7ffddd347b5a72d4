"""What a raw log format is: the converter interface and the column helpers its parsers share.

A converter (one subclass of :class:`RawConverter` per source) only knows its line format: how to
detect the delimiter and header from the first line, and how to turn a block of split lines
(string columns, as ``pyarrow.csv`` parsed them) into labels, one token column per field, and
optionally timestamps and period keys, marking the rows it rejects with a reason. Reading the file
(:mod:`.reader`), vocabularies (:mod:`.vocab`), writing (:mod:`.writer`) and the conversion itself
(:mod:`.conversion`) are shared.

Values are parsed through the *distinct* values of a column (:func:`map_distinct`): a scalar
parser such as :func:`parse_binary_label` runs once per distinct value of a block, so the rules of
one line are written once, as plain Python, and cost little (labels, counts and hours repeat).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crossadapt.errors import DataError

# Reasons a line is skipped (keys of ``ConvertSummary.skipped``).
EMPTY_LINE = "empty_line"
WRONG_COLUMN_COUNT = "wrong_column_count"
BAD_LABEL = "bad_label"
BAD_INTEGER = "bad_integer"
BAD_TIMESTAMP = "bad_timestamp"
BAD_COUNT = "bad_count"


class BadLine(Exception):
    """Raised by a scalar parser for a malformed value; ``reason`` becomes a key of the skip summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Layout:
    """What a converter detected from the first line of a file.

    Attributes:
        delimiter: column separator.
        has_header: whether the first non-empty line is a header (skipped as data).
        num_columns: columns every data line must have.
        field_names: output field (parquet column) names, in feature-map order.
        encoders: the ``FieldSpec.encoder`` of each field.
        columns: raw column name -> index, for parsers that look columns up by name.
        field_columns: raw column index of each field, for parsers that pick columns by index.
        quote_char: the quoting character of fields (``False``: none; values are split on the
            delimiter alone). Quoted values may hold the delimiter, never a line break.
    """

    delimiter: str
    has_header: bool
    num_columns: int
    field_names: tuple[str, ...]
    encoders: tuple[str, ...]
    columns: dict[str, int] = field(default_factory=dict)
    field_columns: tuple[int, ...] = ()
    quote_char: str | bool = False


class RowFaults:
    """The first fault of each row of a block, in the order the checks are added (as a line-by-line
    parser would stop at the first bad value)."""

    def __init__(self, n: int) -> None:
        self.code = np.zeros(n, np.int16)  # 0: fine, else 1 + index into reasons
        self.reasons: list[str] = []

    def add(self, reason: str, mask: np.ndarray) -> None:
        """Rows in ``mask`` fail with ``reason`` unless an earlier check failed them."""
        if not mask.any():
            return
        if reason not in self.reasons:
            self.reasons.append(reason)
        code = 1 + self.reasons.index(reason)
        self.code[(self.code == 0) & mask] = code

    @property
    def ok(self) -> np.ndarray:
        return self.code == 0


@dataclass
class ParsedBatch:
    """One block of lines parsed column-wise (every row, valid or not; ``faults`` tells which).

    Attributes:
        label: int8 0/1 per row (0 where the row is faulty).
        tokens: one string column per field; null = missing (encoded as OOV).
        faults: the reason each rejected row is skipped.
        ts: timestamps, or ``None`` when row order is time (the valid-row index is used).
        group: default period key (e.g. the day), or ``None`` when the source has none.
    """

    label: np.ndarray
    tokens: list[pa.Array]
    faults: RowFaults
    ts: np.ndarray | None = None
    group: np.ndarray | None = None


class RawConverter(ABC):
    """One raw log format. Subclasses set ``source`` and implement ``detect_layout`` and ``parse``.

    ``parse`` must be deterministic: both passes parse every block and must agree on which rows
    are valid.
    """

    source: ClassVar[str] = ""
    #: How the 0/1 label is derived from the raw columns (written to meta.json).
    label_definition: ClassVar[str] = ""
    #: How ``ts`` is derived (written to meta.json).
    time_definition: ClassVar[str] = "row order is time: ts = index of the valid row (0-based)"

    @abstractmethod
    def detect_layout(self, first_line: str, delimiter: str | None, path: Path) -> Layout:
        """Detect delimiter and header from the first non-empty line; raise ``DataError`` if unusable."""

    @abstractmethod
    def parse(self, columns: Sequence[pa.Array], layout: Layout) -> ParsedBatch:
        """Parse one block of lines that have ``layout.num_columns`` string columns each."""

    def group_label(self, group: int) -> str:
        """Human-readable name of a default period key (written to meta.json)."""
        return str(group)


# ---------------------------------------------------------------- column helpers for parsers


def map_distinct(column: pa.Array, parse: Callable[[str], Any], faults: RowFaults) -> tuple[list[Any], np.ndarray]:
    """Run the scalar ``parse`` once per distinct value of ``column``.

    Returns the parsed distinct values (``None`` where ``parse`` raised :class:`BadLine`) and each
    row's index into them; rows whose value raised are added to ``faults`` with the raised reason.
    """
    enc = pc.dictionary_encode(column)
    values, index = [], enc.indices.to_numpy(zero_copy_only=False)
    bad: dict[str, list[int]] = {}
    for i, raw in enumerate(enc.dictionary.to_pylist()):
        try:
            values.append(parse(raw))
        except BadLine as e:
            values.append(None)
            bad.setdefault(e.reason, []).append(i)
    for reason, which in bad.items():
        faults.add(reason, np.isin(index, which))
    return values, index


def int_column(column: pa.Array, parse: Callable[[str], int | None], faults: RowFaults,
               dtype: Any = np.int64) -> np.ndarray:
    """Integers from ``parse`` per row (0 where it raised or returned ``None``)."""
    values, index = map_distinct(column, parse, faults)
    table = np.array([0 if v is None else v for v in values], dtype=dtype)
    return table[index] if table.size else np.zeros(len(index), dtype)


def token_column(column: pa.Array, parse: Callable[[str], str | None], faults: RowFaults) -> pa.Array:
    """Tokens from ``parse`` per row (null where it raised or returned ``None``)."""
    values, index = map_distinct(column, parse, faults)
    return pa.array(values, pa.string()).take(pa.array(index))


def empty_as_missing(column: pa.Array) -> pa.Array:
    """The raw token, with empty values as null (missing: encoded as OOV)."""
    return pc.if_else(pc.equal(pc.utf8_length(column), 0), pa.scalar(None, pa.string()), column)


# ---------------------------------------------------------------- layouts and scalar parsers


def detect_delimiter(first_line: str, delimiter: str | None, candidates: tuple[str, ...], path: Path) -> str:
    """The given delimiter, else the first candidate occurring in ``first_line``."""
    if delimiter is not None:
        return delimiter
    for cand in candidates:
        if cand in first_line:
            return cand
    names = " or ".join(repr(c) for c in candidates)
    raise DataError(f"{path}: cannot detect the delimiter (no {names} in line 1); pass delimiter=")


def check_header(header: list[str], expected: tuple[str, ...], path: Path) -> None:
    """Raise ``DataError`` unless ``header`` names ``expected`` (case-insensitive, in order)."""
    got = [h.strip() for h in header]
    if [g.lower() for g in got] == [e.lower() for e in expected]:
        return
    # Name the first column that differs: a listing of the first few columns hides a typo at column 13.
    diff = next((i for i, (g, e) in enumerate(zip(got, expected)) if g.lower() != e.lower()), None)
    if diff is None:
        detail = f"{len(got)} columns, expected {len(expected)}"
    else:
        detail = f"column {diff + 1} is {got[diff]!r}, expected {expected[diff]!r}"
    raise DataError(f"{path}: header line does not match: {detail} (expected {', '.join(expected)})")


def fixed_layout(
    first_line: str,
    delimiter: str | None,
    path: Path,
    columns: tuple[str, ...],
    field_names: tuple[str, ...],
    encoders: tuple[str, ...],
    field_columns: tuple[int, ...] = (),
) -> Layout:
    """Layout of a format with fixed columns: tab (or comma) separated, with an optional header
    line, recognised by its first column naming ``columns[0]`` and then checked whole."""
    delim = detect_delimiter(first_line, delimiter, ("\t", ","), path)
    parts = first_line.split(delim)
    has_header = parts[0].strip().lower() == columns[0].lower()
    if has_header:
        check_header(parts, columns, path)
    return Layout(delimiter=delim, has_header=has_header, num_columns=len(columns), field_names=field_names,
                  encoders=encoders, columns={c: i for i, c in enumerate(columns)}, field_columns=field_columns)


def parse_binary_label(token: str) -> int:
    """``"0"``/``"1"`` (or ``"0.0"``/``"1.0"``) -> 0/1, else ``BadLine(bad_label)``."""
    if token == "0":
        return 0
    if token == "1":
        return 1
    try:
        value = float(token)
    except ValueError:
        raise BadLine(BAD_LABEL) from None
    if value == 0.0 or value == 1.0:
        return int(value)
    raise BadLine(BAD_LABEL)


__all__ = [
    "BAD_COUNT",
    "BAD_INTEGER",
    "BAD_LABEL",
    "BAD_TIMESTAMP",
    "EMPTY_LINE",
    "WRONG_COLUMN_COUNT",
    "BadLine",
    "Layout",
    "ParsedBatch",
    "RawConverter",
    "RowFaults",
    "check_header",
    "detect_delimiter",
    "empty_as_missing",
    "fixed_layout",
    "int_column",
    "map_distinct",
    "parse_binary_label",
    "token_column",
]
