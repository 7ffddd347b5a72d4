"""Projection of teacher embeddings to the student's dimension.

``crossadapt.projection.math`` is the pure math (no Ray; re-exported here).
``crossadapt.projection.actors`` is its distributed twin on Ray actors; import it explicitly
(this package does not, so that importing the math never imports Ray).
"""

from crossadapt.projection.math import (
    NUMERIC_KEY,
    NUMERIC_NAME,
    TABLE_KEY,
    GramAccumulator,
    ProjectionResult,
    apply_projection,
    basis_from_gram,
    check_field_ranges,
    choose_method,
    distortion_report,
    expansion_matrix,
    gram,
    project_embedding_state,
    project_table,
    projection_basis,
    projection_matrix,
    rsvd_right,
    tsqr,
)

__all__ = [
    "NUMERIC_KEY",
    "NUMERIC_NAME",
    "TABLE_KEY",
    "GramAccumulator",
    "ProjectionResult",
    "apply_projection",
    "basis_from_gram",
    "check_field_ranges",
    "choose_method",
    "distortion_report",
    "expansion_matrix",
    "gram",
    "project_embedding_state",
    "project_table",
    "projection_basis",
    "projection_matrix",
    "rsvd_right",
    "tsqr",
]
