"""Raw log converters: Criteo, Avazu and KDD12 Track 2 to encoded parquet (no Ray).

Files: ``base`` (the converter interface and column parsers), one file per format (``criteo``,
``avazu``, ``kdd12``), ``reader`` (streaming ``pyarrow.csv`` in parallel, skipped-line counts),
``vocab`` (counts, vocabularies, token -> id), ``writer`` (periods, atomic publishing) and
``conversion`` (the two passes).

Example:
    >>> from crossadapt.data.converters import convert
    >>> summary = convert("criteo", "train.txt", "runs/criteo/data", num_periods=16)  # doctest: +SKIP
    >>> summary.rows_written, summary.skipped  # doctest: +SKIP

Output (the data contract): ``<out_root>/period=<k>/part-00000.parquet`` with ``label`` int8,
one int64 id column per field (0 = OOV) and ``ts`` int64; ``feature_map.json``; ``vocab.json``
(the token of id i is at position i-1, to encode later logs the same way); ``meta.json`` with the
options, label/time definitions and the ``convert_summary``.
"""

from __future__ import annotations

import os

from crossadapt.data.converters.avazu import AvazuConverter
from crossadapt.data.converters.base import BadLine, Layout, ParsedBatch, RawConverter
from crossadapt.data.converters.conversion import DEFAULT_CHUNK_ROWS, ConvertSummary, run_conversion
from crossadapt.data.converters.criteo import CriteoConverter, int_token, log_square_bucket
from crossadapt.data.converters.kdd12 import KDD12Converter
from crossadapt.data.converters.vocab import build_vocab
from crossadapt.data.converters.writer import period_bounds
from crossadapt.errors import ConfigError

#: Source name -> converter class (a fresh instance is made per conversion).
CONVERTERS: dict[str, type[RawConverter]] = {
    "criteo": CriteoConverter,
    "avazu": AvazuConverter,
    "kdd12": KDD12Converter,
}


def convert(
    source: str,
    raw_path: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    min_count: int = 2,
    num_periods: int | None = None,
    rows_per_period: int | None = None,
    max_rows: int | None = None,
    delimiter: str | None = None,
    overwrite: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    verbose: bool = True,
) -> ConvertSummary:
    """Convert one raw log file into the encoded parquet layout, streaming it twice.

    Args:
        source: ``"criteo"``, ``"avazu"`` or ``"kdd12"`` (keys of :data:`CONVERTERS`).
        raw_path: the raw file (``.gz`` is read transparently).
        out_root: output folder; built beside itself in a temp folder and renamed into place.
        min_count: tokens seen fewer times in the converted rows map to the OOV id 0.
        num_periods: split the valid rows, in time order, into this many contiguous nearly equal
            periods (period k = rows ``[k*N//P, (k+1)*N//P)``).
        rows_per_period: or split them into periods of this many rows (the last may be shorter).
            Without either: Avazu gets one period per day, Criteo and KDD12 one period.
        max_rows: convert only the first ``max_rows`` valid rows (reading stops there).
        delimiter: column separator; detected from the first line when ``None``.
        overwrite: replace a non-empty ``out_root`` (otherwise that is a ``DataError``).
        chunk_rows: rows buffered per period before a parquet row group is written.
        verbose: print the summary block when done.

    Returns:
        The :class:`ConvertSummary` (also saved in ``meta.json`` under ``convert_summary``).

    Raises:
        ConfigError: unknown source or invalid option.
        DataError: missing, empty or unusable file, or no valid rows (the message names the file).
    """
    try:
        converter_cls = CONVERTERS[source]
    except (KeyError, TypeError):
        raise ConfigError(f"convert: unknown source {source!r}; valid: {sorted(CONVERTERS)}") from None
    return run_conversion(
        converter_cls(),
        raw_path,
        out_root,
        min_count=min_count,
        num_periods=num_periods,
        rows_per_period=rows_per_period,
        max_rows=max_rows,
        delimiter=delimiter,
        overwrite=overwrite,
        chunk_rows=chunk_rows,
        verbose=verbose,
    )


__all__ = [
    "CONVERTERS",
    "AvazuConverter",
    "BadLine",
    "ConvertSummary",
    "CriteoConverter",
    "KDD12Converter",
    "Layout",
    "ParsedBatch",
    "RawConverter",
    "build_vocab",
    "convert",
    "int_token",
    "log_square_bucket",
    "period_bounds",
]
