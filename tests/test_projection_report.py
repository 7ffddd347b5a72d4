"""Projection reports: known answers of the within/cross-field errors and the report.md table."""

from __future__ import annotations

import json

import pytest
import torch

from crossadapt.config import ProjectionConfig
from crossadapt.experiment.report import write_report
from crossadapt.projection import cross_field_errors, project_embedding_state

F64 = torch.float64


def _rows(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(seed))


def test_scaling_every_row_gives_the_same_error_everywhere():
    """after = c * before: every inner product becomes c^2 times itself, error |1 - c^2| on every pair."""
    samples = {n: (x, 0.5 * x) for n, x in (("a", _rows(30, 6, 1)), ("b", _rows(50, 6, 2)), ("c", _rows(7, 6, 3)))}
    per, pooled = cross_field_errors(samples, seed=0)
    assert pooled["within_field_rel_error"] == pytest.approx(0.75, rel=1e-12)
    assert pooled["cross_field_rel_error"] == pytest.approx(0.75, rel=1e-12)
    assert all(v == pytest.approx(0.75, rel=1e-12) for v in per.values())
    assert pooled["cross_sample_rows"] == 87  # all rows: fewer than the pooled budget


def test_a_sign_flip_of_one_field_is_invisible_within_and_doubles_across():
    """Field b's rows negated (what independent sign fixes do to one basis vector, here to all):
    b's own inner products are unchanged, every (a, b) product changes sign: error exactly 2."""
    a, b = _rows(40, 5, 4), _rows(60, 5, 5)
    per, pooled = cross_field_errors({"a": (a, a), "b": (b, -b)}, seed=0)
    assert pooled["within_field_rel_error"] == 0.0
    assert per["a"] == pytest.approx(2.0, rel=1e-12) and per["b"] == pytest.approx(2.0, rel=1e-12)
    assert pooled["cross_field_rel_error"] == pytest.approx(2.0, rel=1e-12)


def test_one_table_has_no_cross_field_error_and_the_sample_is_bounded():
    x = _rows(5000, 4, 6)
    per, pooled = cross_field_errors({"only": (x, x)}, seed=0, cross_rows=300)
    assert per == {"only": None} and pooled["cross_field_rel_error"] is None
    assert pooled["cross_sample_rows"] == 300 and pooled["within_field_rel_error"] == 0.0
    # every table gets cross_rows // tables rows, drawn the same way on every call
    y = _rows(900, 4, 7)
    s = {"x": (x, x), "y": (y, 2 * y)}
    assert cross_field_errors(s, seed=3, cross_rows=200) == cross_field_errors(s, seed=3, cross_rows=200)
    assert cross_field_errors(s, seed=3, cross_rows=200)[1]["cross_sample_rows"] == 200


def test_report_md_shows_within_and_cross_field_errors(tmp_path):
    g = torch.Generator().manual_seed(8)
    W = torch.randn(400, 16, generator=g)
    res = project_embedding_state(W, [("user", 0, 150), ("item", 150, 400)], 6, ProjectionConfig(basis="per_field"),
                                  numeric=torch.randn(1, 16, generator=g))
    results = json.loads(json.dumps({"projection": res.reports, "projection_summary": res.summary}, allow_nan=False))
    text = write_report(results, tmp_path).read_text()
    section = text[text.index("## Projection"):]
    item = res.reports["item"]
    assert (f"| item | gram | per_field | 16 → 6 | {item['inner_product_rel_error']:.2e} | "
            f"{item['cross_field_rel_error']:.2e} |") in section
    # one numeric vector: no pair within it, so no cosine (a dash, not a crash)
    assert "| __numeric__ |" in section and "– → –" in section
    s = res.summary
    assert (f"| **all** ({s['cross_sample_rows']} rows pooled) | gram | per_field | 16 → 6 | "
            f"{s['within_field_rel_error']:.2e} | {s['cross_field_rel_error']:.2e} | – | {s['energy_kept']:.4f} |") in section
