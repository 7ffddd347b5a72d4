"""The feature map: the one contract between encoded data and models.

Every categorical field holds an already-encoded id in ``[0, vocab_size)``; index ``oov_index``
(0 by default) is where rare, unseen and missing values go. Numeric fields are float32 values.
The map is written as JSON beside the data and saved inside every checkpoint; its
``fingerprint`` tells whether two maps describe the same encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crossadapt import atomic
from crossadapt.errors import DataError, FeatureMapMismatch

CATEGORICAL = "categorical"
NUMERIC = "numeric"
FEATURE_MAP_FILE = "feature_map.json"


@dataclass(frozen=True)
class FieldSpec:
    """One input field.

    Attributes:
        name: column name in the parquet files.
        type: ``"categorical"`` or ``"numeric"``.
        vocab_size: number of ids including the OOV index (categorical); 1 for numeric.
        oov_index: id of rare/unseen/missing values.
        padding_index: id used for padding, ``None`` for single-valued fields.
        encoder: how raw values became ids (``vocab``, ``log_square_bucket``, ``synthetic``, ...).
    """

    name: str
    type: str = CATEGORICAL
    vocab_size: int = 1
    oov_index: int = 0
    padding_index: int | None = None
    encoder: str = "vocab"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataError(f"field name must be a non-empty string, got {self.name!r}")
        # A hand-edited JSON map can hold "10" or 10.5: fail here, naming the field, not in a model.
        for key in ("vocab_size", "oov_index", "padding_index"):
            value = getattr(self, key)
            if key == "padding_index" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError(f"field {self.name!r}: {key} must be an integer, got {value!r}")
        if self.type not in (CATEGORICAL, NUMERIC):
            raise DataError(f"field {self.name!r}: type must be 'categorical' or 'numeric', got {self.type!r}")
        if self.type == CATEGORICAL and self.vocab_size < 1:
            raise DataError(f"field {self.name!r}: vocab_size must be >= 1, got {self.vocab_size}")
        if self.type == CATEGORICAL and not 0 <= self.oov_index < self.vocab_size:
            raise DataError(f"field {self.name!r}: oov_index {self.oov_index} outside [0, {self.vocab_size})")


@dataclass(frozen=True)
class FeatureMap:
    """Ordered fields of a dataset plus the label and time column names.

    Example:
        >>> fm = FeatureMap("toy", (FieldSpec("user", vocab_size=10), FieldSpec("item", vocab_size=5)))
        >>> fm.vocab_sizes
        [10, 5]
    """

    dataset: str
    fields: tuple[FieldSpec, ...]
    label: str = "label"
    time: str = "ts"
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DataError(f"feature map {self.dataset!r}: duplicate field names {dupes}")
        if not self.categorical_fields:
            raise DataError(f"feature map {self.dataset!r}: needs at least one categorical field")
        for key in ("label", "time"):
            column = getattr(self, key)
            if not isinstance(column, str) or not column or column in names:
                raise DataError(
                    f"feature map {self.dataset!r}: {key} column {column!r} must be a string naming no field"
                )

    @property
    def categorical_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.type == CATEGORICAL]

    @property
    def numeric_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.type == NUMERIC]

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.categorical_fields]

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.numeric_fields]

    @property
    def vocab_sizes(self) -> list[int]:
        return [f.vocab_size for f in self.categorical_fields]

    @property
    def num_fields(self) -> int:
        """Number of embedded fields (categorical plus numeric)."""
        return len(self.fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "label": self.label,
            "time": self.time,
            "fields": [asdict(f) for f in self.fields],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "feature map") -> "FeatureMap":
        if not isinstance(d, dict) or not isinstance(d.get("fields"), list) or "dataset" not in d:
            raise DataError(f"{source}: malformed feature map (need a mapping with 'dataset' and a 'fields' list)")
        fields = []
        for i, f in enumerate(d["fields"]):
            try:
                fields.append(FieldSpec(**f))
            except (TypeError, DataError) as e:  # TypeError: not a mapping, unknown or missing keys
                raise DataError(f"{source}: malformed feature map: fields[{i}]: {e}") from e
        try:
            meta = dict(d.get("meta", {}))
            return cls(d["dataset"], tuple(fields), d.get("label", "label"), d.get("time", "ts"), meta)
        except (TypeError, ValueError) as e:  # DataError is a ValueError; dict() of a non-mapping meta
            raise DataError(f"{source}: malformed feature map ({e})") from e

    def fingerprint(self) -> str:
        """sha256 of the encoding (fields, label, time); ``meta`` is ignored."""
        d = self.to_dict()
        d.pop("meta")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the map as JSON (atomically); ``path`` may be a folder."""
        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path = path / FEATURE_MAP_FILE
        atomic.write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureMap":
        """Read a map from a JSON file or from the folder holding ``feature_map.json``."""
        path = Path(path)
        if path.is_dir():
            path = path / FEATURE_MAP_FILE
        if not path.exists():
            raise DataError(f"{path}: feature map not found")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: feature map is not valid JSON ({e})") from e
        return cls.from_dict(d, source=str(path))

    def check_compatible(self, other: "FeatureMap", what: str) -> None:
        """Raise ``FeatureMapMismatch`` naming the first difference if ``other`` encodes differently."""
        if self.fingerprint() == other.fingerprint():
            return
        mine = {f.name: f for f in self.fields}
        theirs = {f.name: f for f in other.fields}
        missing = [n for n in mine if n not in theirs]
        extra = [n for n in theirs if n not in mine]
        if missing or extra:
            detail = f"fields missing there: {missing}; fields only there: {extra}"
        else:
            diffs = [n for n in mine if mine[n] != theirs[n]]
            if diffs:
                n = diffs[0]
                detail = f"field {n!r} differs: {asdict(mine[n])} vs {asdict(theirs[n])}"
            else:
                detail = "field order, label or time column differs"
        raise FeatureMapMismatch(
            f"{what} was built with another feature map ({other.dataset!r}, {other.fingerprint()}) "
            f"than this data ({self.dataset!r}, {self.fingerprint()}): {detail}"
        )
