"""The small languages of a table schema (``data.schema``): periods and label rules (pure parsing).

- a period is a duration, ``"90s"``, ``"30m"``, ``"6h"``, ``"1d"``, or a row count (an integer or
  its digits);
- a label rule makes a raw label value 0/1: ``">= 4"``, ``"> 0.5"``, ``"== click"``,
  ``"in [click, purchase]"``. Values that read as numbers compare as numbers (``"4.0"`` equals
  ``4``), anything else as the trimmed text. ``>=`` and ``>`` need a number on both sides.

Example:
    >>> parse_period("6h"), parse_period(50000)
    (Period(kind='seconds', size=21600), Period(kind='rows', size=50000))
    >>> rule = parse_rule(">= 4"); rule("5"), rule("3.5")
    (1, 0)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from crossadapt.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_ROWS = re.compile(r"^\s*(\d+)\s*$")
_RULE = re.compile(r"^\s*(>=|>|==|in)\s*(.+?)\s*$", re.S)


class NotALabel(ValueError):
    """A raw value the rule cannot read (empty, or not a number for ``>=``/``>``)."""


@dataclass(frozen=True)
class Period:
    """``kind`` ``"seconds"`` (a duration of ``size`` seconds) or ``"rows"`` (``size`` rows per period)."""

    kind: str
    size: int


def parse_period(value: str | int, key: str = "data.schema.period") -> Period:
    """A duration (``s``, ``m``, ``h``, ``d``) or a row count; ``ConfigError`` naming ``key`` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration such as 1d or 6h, or a row count, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{key}: a row count must be >= 1, got {value}")
        return Period("rows", value)
    text = str(value)
    if m := _DURATION.match(text):
        size = int(m.group(1)) * _UNITS[m.group(2)]
        if size < 1:
            raise ConfigError(f"{key}: a duration must be > 0, got {text!r}")
        return Period("seconds", size)
    if m := _ROWS.match(text):
        return parse_period(int(m.group(1)), key)
    raise ConfigError(f"{key}: expected a duration such as 90s, 30m, 6h or 1d, or a row count, got {text!r}")


def _number(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _operands(text: str, key: str) -> list[str]:
    """The values of ``in [a, b, ...]`` (no nesting; quotes around a value are removed)."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ConfigError(f"{key}: 'in' needs a list such as in [click, purchase], got {text!r}")
    items = [v.strip().strip("'\"").strip() for v in text[1:-1].split(",")]
    if not items or any(not v for v in items):
        raise ConfigError(f"{key}: empty value in the list {text!r}")
    return items


def _equals(value: str) -> Callable[[str], bool]:
    num = _number(value)
    if num is None:
        return lambda raw: raw == value
    return lambda raw: raw == value or _number(raw) == num


def parse_rule(text: str, key: str = "data.schema.positive") -> Callable[[str], int]:
    """A function raw label text -> 0/1 for the rule ``text``; it raises :class:`NotALabel` on a
    value it cannot read. ``ConfigError`` naming ``key`` when the rule itself is malformed."""
    m = _RULE.match(text or "")
    if not m:
        raise ConfigError(f"{key}: expected a rule such as '>= 4', '> 0.5', '== click' or 'in [a, b]', got {text!r}")
    op, arg = m.group(1), m.group(2)
    if op in (">=", ">"):
        bound = _number(arg)
        if bound is None:
            raise ConfigError(f"{key}: {op} needs a number, got {arg!r}")

        def compare(raw: str) -> int:
            x = _number(raw.strip())
            if x is None:
                raise NotALabel(raw)
            return int(x >= bound) if op == ">=" else int(x > bound)

        return compare
    tests = [_equals(v) for v in (_operands(arg, key) if op == "in" else [arg.strip().strip("'\"")])]

    def member(raw: str) -> int:
        raw = raw.strip()
        if not raw:
            raise NotALabel(raw)
        return int(any(t(raw) for t in tests))

    return member


def check_schema_forms(schema: Any) -> None:
    """The checks of ``TableSchema`` that need no file: forms of the period and rule, repeated or
    overlapping column names, and option ranges. Each ``ConfigError`` names ``data.schema.<key>``."""
    if schema.period not in ("", 0):
        parse_period(schema.period)
    if schema.positive:
        parse_rule(schema.positive)
    if schema.late_periods < 0:
        raise ConfigError(f"data.schema.late_periods: must be >= 0, got {schema.late_periods}")
    if len(schema.delimiter) > 1:
        raise ConfigError(f"data.schema.delimiter: must be one character, got {schema.delimiter!r}")
    roles = {"label": [schema.label] if schema.label else [], "time": [schema.time] if schema.time else [],
             "categorical": list(schema.categorical), "numeric": list(schema.numeric), "drop": list(schema.drop)}
    seen: dict[str, str] = {}
    for role, names in roles.items():
        for name in names:
            if not name:
                raise ConfigError(f"data.schema.{role}: empty column name")
            if name in seen:
                where = f"data.schema.{role}" if seen[name] == role else f"data.schema.{seen[name]} and data.schema.{role}"
                raise ConfigError(f"{where}: column {name!r} named twice")
            seen[name] = role
    if schema.columns and len(set(schema.columns)) != len(schema.columns):
        dupes = sorted({c for c in schema.columns if list(schema.columns).count(c) > 1})
        raise ConfigError(f"data.schema.columns: repeated column name(s) {dupes}")
    if schema.period not in ("", 0) and parse_period(schema.period).kind == "seconds" and not schema.time:
        raise ConfigError(f"data.schema.period: a duration ({schema.period!r}) needs data.schema.time; "
                          "without a time column give a row count")
