"""Vocabularies of the raw converters: token counts, the kept tokens in id order, token -> id.

Ids: tokens seen at least ``min_count`` times get ids ``1..n`` by descending count, then token
(deterministic); rare, unseen and missing tokens map to the OOV id 0. Counts are held as Arrow
tables (token, count), merged by a hash aggregation every so often: memory grows with the number
of distinct tokens (a few bytes beyond the token itself), not with the rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crossadapt.errors import DataError

OOV_INDEX = 0
#: Per-block counts buffered before they are merged into a field's table: at most this many parts,
#: or this many rows (or the table's size, so merging stays linear overall).
_MERGE_PARTS = 32
_MERGE_ROWS = 1 << 15


def vocab_order(counts: pa.Table, min_count: int) -> list[str]:
    """Tokens of ``counts`` (columns ``token``, ``count``) kept at ``min_count``, in id order
    (id = position + 1): by descending count, then token (byte order = code-point order in UTF-8)."""
    kept = counts.filter(pc.greater_equal(counts["count"], min_count))
    return kept.sort_by([("count", "descending"), ("token", "ascending")])["token"].to_pylist()


def build_vocab(counts: Mapping[str, int], min_count: int) -> list[str]:
    """Tokens kept, in id order, from a ``{token: count}`` mapping (see :func:`vocab_order`)."""
    table = pa.table({"token": pa.array(list(counts), pa.string()),
                      "count": pa.array(list(counts.values()), pa.int64())})
    return vocab_order(table, min_count)


class TokenCounter:
    """Occurrences of each token of one field, fed a column at a time (nulls, i.e. missing, not counted)."""

    def __init__(self) -> None:
        self._table = pa.table({"token": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, tokens: pa.Array) -> None:
        vc = pc.value_counts(pc.drop_null(tokens))
        part = pa.table({"token": vc.field("values"), "count": pc.cast(vc.field("counts"), pa.int64())})
        self._pending.append(part)
        self._pending_rows += part.num_rows
        if len(self._pending) >= _MERGE_PARTS or self._pending_rows >= max(_MERGE_ROWS, self._table.num_rows):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        merged = pa.concat_tables([self._table, *self._pending]).group_by("token").aggregate([("count", "sum")])
        self._table = pa.table({"token": merged["token"], "count": merged["count_sum"]})
        self._pending, self._pending_rows = [], 0

    def counts(self) -> pa.Table:
        """``token``, ``count`` of every token seen (in no particular order)."""
        self._merge()
        return self._table

    def vocab(self, min_count: int) -> list[str]:
        """The kept tokens in id order."""
        return vocab_order(self.counts(), min_count)


class Encoder:
    """Token -> id of one field's vocabulary (position + 1; anything else, missing too, -> 0).

    Given a mapping ``{token: id}`` instead (an adopted vocabulary, e.g. a deployed teacher's),
    those ids are used and anything else goes to ``oov_index``.
    """

    def __init__(self, tokens: list[str] | Mapping[str, int], oov_index: int = OOV_INDEX) -> None:
        if isinstance(tokens, Mapping):
            self._ids = dict(tokens)
        else:
            self._ids = {tok: i + 1 for i, tok in enumerate(tokens)}
        self._oov = oov_index

    @property
    def oov_index(self) -> int:
        """The id of values outside the vocabulary (and of missing ones)."""
        return self._oov

    def encode(self, tokens: pa.Array) -> np.ndarray:
        """int64 ids of a token column: each distinct token is looked up once."""
        enc = pc.dictionary_encode(tokens)
        distinct = enc.dictionary.to_pylist()
        lut = np.full(len(distinct) + 1, self._oov, np.int64)  # the last entry: where missing (null) rows point
        lut[:-1] = np.fromiter(map(self._ids.get, distinct, repeat(self._oov)), np.int64, count=len(distinct))
        return lut[pc.fill_null(enc.indices, len(distinct)).to_numpy()]


@dataclass(frozen=True)
class FieldVocab:
    """One field's adopted vocabulary: raw value -> row of its embedding table, and the OOV row."""

    ids: dict[str, int]
    oov_index: int

    @property
    def max_row(self) -> int:
        """The largest row the vocabulary names (OOV included)."""
        return max([self.oov_index, *self.ids.values()])


def _field_vocab(name: str, entry: Any, oov: int, source: str) -> FieldVocab:
    if isinstance(entry, list):  # value i has row i + 1 (the vocab.json of a conversion)
        if oov != OOV_INDEX:
            raise DataError(f"{source}: field {name!r}: a list vocabulary puts value i at row i + 1 and OOV at row 0, "
                            f"but oov_index is {oov}; give a mapping {{value: row}} instead")
        entry = {tok: i + 1 for i, tok in enumerate(entry)}
    if not isinstance(entry, dict):
        raise DataError(f"{source}: field {name!r}: expected a mapping {{raw value: row}} or a list, "
                        f"got {type(entry).__name__}")
    ids: dict[str, int] = {}
    for tok, row in entry.items():
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise DataError(f"{source}: field {name!r}: value {tok!r} maps to {row!r}, expected a row number >= 0")
        ids[str(tok)] = row
    return FieldVocab(ids, oov)


def load_vocabularies(path: str | os.PathLike) -> dict[str, FieldVocab]:
    """Per-field vocabularies from JSON, in the file's field order.

    Forms: ``{"oov_index": 0, "fields": {name: {raw value: row}}}`` (``oov_index`` an int or a
    mapping per field; default 0), or ``{"fields": {name: [values]}}`` / ``{name: [values]}`` where
    value i has row i + 1 and OOV is row 0 (the ``vocab.json`` of a conversion). Raises
    ``DataError`` naming the file and field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: vocabularies file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: vocabularies are not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise DataError(f"{path}: vocabularies must be a JSON object")
    fields = doc["fields"] if isinstance(doc.get("fields"), dict) else doc
    fields = {k: v for k, v in fields.items() if k not in ("oov_index", "min_count")}
    oov = doc.get("oov_index", OOV_INDEX)
    if not fields:
        raise DataError(f"{path}: no field vocabularies")
    out = {}
    for name, entry in fields.items():
        k = oov.get(name, OOV_INDEX) if isinstance(oov, dict) else oov
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise DataError(f"{path}: field {name!r}: oov_index must be a row number >= 0, got {k!r}")
        out[name] = _field_vocab(name, entry, k, str(path))
    return out
