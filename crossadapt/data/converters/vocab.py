"""Vocabularies of the raw converters: token counts, the kept tokens in id order, token -> id.

Ids: tokens seen at least ``min_count`` times get ids ``1..n`` by descending count, then token
(deterministic); rare, unseen and missing tokens map to the OOV id 0. Counts are held as Arrow
tables (token, count), merged by a hash aggregation every so often: memory grows with the number
of distinct tokens (a few bytes beyond the token itself), not with the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    """Token -> id of one field's vocabulary (position + 1; anything else, missing too, -> 0)."""

    def __init__(self, tokens: list[str]) -> None:
        self._ids = {tok: i + 1 for i, tok in enumerate(tokens)}

    def encode(self, tokens: pa.Array) -> np.ndarray:
        """int64 ids of a token column: each distinct token is looked up once."""
        enc = pc.dictionary_encode(tokens)
        distinct = enc.dictionary.to_pylist()
        lut = np.full(len(distinct) + 1, OOV_INDEX, np.int64)  # the last entry: where missing (null) rows point
        lut[:-1] = np.fromiter(map(self._ids.get, distinct, repeat(OOV_INDEX)), np.int64, count=len(distinct))
        return lut[pc.fill_null(enc.indices, len(distinct)).to_numpy()]
