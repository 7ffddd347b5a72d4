"""README result tables are printed from a kept results.json, never typed by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crossadapt import cli
from crossadapt.errors import DataError
from crossadapt.experiment import readme_tables

ROOT = Path(__file__).resolve().parents[1]


def test_every_readme_results_block_is_what_its_results_json_prints():
    readme = (ROOT / "README.md").read_text()
    names = re.findall(r"<!-- results: (\S+) -->", readme)
    assert names, "README has no results block"
    for name in names:
        source = f"results/{name}.json"
        results = json.loads((ROOT / source).read_text())
        assert readme_tables.block(readme, name) == readme_tables.render(results, source), (
            f"README block '{name}' differs from what `crossadapt tables` prints from {source}: run "
            f"`crossadapt tables RUN_DIR --readme README.md --name {name}` instead of editing it")


def _results() -> dict:
    return {"fingerprints": {"teacher": "ab" * 32},
            "offline": {"crossadapt": {"seed": [0, 1], "auc": [0.72, 0.74], "logloss": [0.33, 0.34],
                                       "bias": [0.01, -0.01], "train_seconds": [3.0, 5.0], "samples": [10, 30]},
                        "scratch": {"seed": [0, 1], "auc": [0.70, 0.71], "logloss": [0.34, 0.35],
                                    "bias": [0.02, 0.0], "train_seconds": [9.0, 11.0], "samples": [100, 100]}}}


def test_tables_command_replaces_only_its_block_and_keeps_the_results(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_results()))
    readme = tmp_path / "README.md"
    readme.write_text("# T\n<!-- results: demo -->\nold | typed\n<!-- /results -->\ntail\n"
                      "<!-- results: other -->\nkept\n<!-- /results -->\n")
    assert cli.main(["tables", str(run), "--readme", str(readme), "--name", "demo"]) == 0
    text = readme.read_text()
    assert "old | typed" not in text and text.startswith("# T\n") and "tail\n" in text and "\nkept\n" in text
    block = readme_tables.block(text, "demo")
    # scratch: per-seed deltas -0.02 and -0.03 -> mean -0.025, std 0.0071 (ddof 1) < |mean|: exceeds
    assert "| scratch | 0.7050 ± 0.0071 | -0.0250 ± 0.0071 | yes |" in block
    assert "from `results/demo.json` (teacher abababababab)." in block
    assert json.loads((tmp_path / "results" / "demo.json").read_text()) == _results()


def test_a_missing_block_is_named():
    with pytest.raises(DataError, match="results: demo"):
        readme_tables.splice("# no blocks\n", "demo", "x")
