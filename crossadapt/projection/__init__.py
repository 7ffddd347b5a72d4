"""Projection of teacher embeddings to the student's dimension.

The pure math (no Ray; re-exported here), one job per module:

- :mod:`~crossadapt.projection.math`: the in-process entry points (whole embedding states and tables);
- :mod:`~crossadapt.projection.bases`: which ``P`` each table gets (method, shared or per-field basis);
- :mod:`~crossadapt.projection.gram`: the exact path (float64 Gram, ``eigh``);
- :mod:`~crossadapt.projection.rsvd`: the randomized path (sketch, TSQR, small SVD);
- :mod:`~crossadapt.projection.orthonormal`: sign rules, QR with a positive diagonal, the expansion ``Q``;
- :mod:`~crossadapt.projection.blocks`: a table as row blocks;
- :mod:`~crossadapt.projection.report`: within- and cross-field inner-product errors, cosines, energy.

``crossadapt.projection.actors`` is its distributed twin on Ray actors; import it explicitly
(this package does not, so that importing the math never imports Ray).
"""

from crossadapt.projection.bases import ALL_FIELDS, BASES, FittedBases, choose_method
from crossadapt.projection.blocks import DEFAULT_CHUNK_ROWS, iter_row_blocks
from crossadapt.projection.gram import GramAccumulator, basis_from_gram, gram
from crossadapt.projection.math import (
    NUMERIC_KEY,
    NUMERIC_NAME,
    TABLE_KEY,
    ProjectionResult,
    apply_projection,
    check_field_ranges,
    fit_bases,
    project_embedding_state,
    project_table,
    projection_basis,
    projection_matrix,
)
from crossadapt.projection.orthonormal import expansion_matrix
from crossadapt.projection.report import cross_field_errors, distortion_report
from crossadapt.projection.rsvd import rsvd_right, tsqr

__all__ = [
    "ALL_FIELDS",
    "BASES",
    "DEFAULT_CHUNK_ROWS",
    "NUMERIC_KEY",
    "NUMERIC_NAME",
    "TABLE_KEY",
    "FittedBases",
    "GramAccumulator",
    "ProjectionResult",
    "apply_projection",
    "basis_from_gram",
    "check_field_ranges",
    "choose_method",
    "cross_field_errors",
    "distortion_report",
    "expansion_matrix",
    "fit_bases",
    "gram",
    "iter_row_blocks",
    "project_embedding_state",
    "project_table",
    "projection_basis",
    "projection_matrix",
    "rsvd_right",
    "tsqr",
]
