"""Logs with one numeric field, end to end through the CLI (issue 13, item 4).

A numeric field has one embedding row, so its projection report has no cosine (``None``); the
report once formatted that ``None`` and crashed at the very end of ``transfer``, ``online`` and
``demo``: no report.md and no copy to storage. Here ``demo`` and then ``online`` run on tiny logs
with one numeric column and must write the report, with a dash where the figure is undefined, and
the copy in storage.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossadapt import cli
from crossadapt.config import SyntheticConfig
from crossadapt.data.synthetic import META_FILE, generate
from crossadapt.featuremap import FEATURE_MAP_FILE, FeatureMap, FieldSpec


@pytest.fixture(scope="module")
def numeric_world(tmp_path_factory) -> Path:
    """Six periods of synthetic logs plus one float32 column ``x`` (declared numeric), as parquet."""
    root = tmp_path_factory.mktemp("numeric") / "data"
    generate(SyntheticConfig(num_fields=4, vocab_size=100, rows_per_period=1500, num_periods=6, drift_periods=(5,),
                             seed=3), root)
    rng = np.random.default_rng(0)
    for path in sorted(root.glob("period=*/*.parquet")):
        table = pq.read_table(path)
        x = (table.column("f0").to_numpy() % 7 + rng.normal(size=table.num_rows)).astype(np.float32)
        pq.write_table(table.append_column("x", pa.array(x)), path)
    fm = FeatureMap.load(root)
    (root / FEATURE_MAP_FILE).unlink()
    dataclasses.replace(fm, fields=(*fm.fields, FieldSpec("x", type="numeric"))).save(root)
    (root / META_FILE).unlink()  # plain parquet now, not the generator's output
    return root


def test_demo_and_online_with_one_numeric_field_write_the_report(ray_session, numeric_world, tmp_path, capsys):
    config = {
        "out_dir": str(tmp_path / "run"), "storage": str(tmp_path / "storage"), "seeds": [0],
        "methods": ["scratch", "crossadapt"],
        "data": {"source": "parquet", "root": str(numeric_world), "teacher_periods": [0, 2],
                 "window_periods": [2, 3], "test_periods": [3, 4], "stream_periods": [4, 6]},
        "teacher": {"name": "dnn", "embed_dim": 4, "hidden_units": [16]},
        "student": {"name": "dcnv2", "embed_dim": 8, "hidden_units": [16], "num_cross_layers": 1},
        "optim": {"epochs": 2, "batch_size": 256},
        "distill": {"phase1_epochs": 1, "phase2_epochs": 1, "r": 0.5, "allow_weak_teacher": True},
        "resources": {"num_workers": 1, "use_gpu": "false", "checkpoint_interval_s": 0},
        "online": {"methods": ["crossadapt"], "batch_size": 256, "reservoir_size": 500, "drift_window_rows": 500},
        "tracking": {"wandb": "disabled"},
    }
    path = tmp_path / "numeric.yaml"
    path.write_text(json.dumps(config))
    assert cli.main(["demo", "--config", str(path)]) == 0, capsys.readouterr().err
    out = tmp_path / "run"
    results = json.loads((out / "results.json").read_text())
    numeric = results["projection"]["__numeric__"]
    assert numeric["cosine_before_mean"] is None  # one row: no pairs to take a cosine of
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| __numeric__ |"))
    assert "– → –" in row  # undefined, shown as a dash, not formatted
    assert "crossadapt" in results["online"]
    copy = tmp_path / "storage" / "run"
    assert (copy / "results.json").is_file() and (copy / "report.md").read_text() == report

    # the online stage alone (its streams resume from their commits): its report too
    assert cli.main(["online", "--config", str(path)]) == 0, capsys.readouterr().err
    assert "| __numeric__ |" in (out / "report.md").read_text()
