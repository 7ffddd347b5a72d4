"""The README's "Migrate your own model" walk-through runs as written (docs/byo_walkthrough.sh).

The script runs in a copy of examples/migrate with this checkout's ``crossadapt`` and ``python``
first on the PATH; its commands join the test session's Ray (``RAY_ADDRESS``) instead of each
starting one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_walkthrough_runs_as_written(ray_session, tmp_path):
    work = tmp_path / "migrate"
    shutil.copytree(ROOT / "examples" / "migrate", work, ignore=shutil.ignore_patterns("runs", "logs", "teacher",
                                                                                      "exported", "__pycache__"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address, "WANDB_MODE": "offline"}
    done = subprocess.run(["bash", str(ROOT / "docs" / "byo_walkthrough.sh")], cwd=work, env=env, text=True,
                          capture_output=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    scores = [ln for ln in done.stdout.splitlines() if "p(click) = " in ln]
    assert len(scores) == 5 and all(0.0 < float(ln.rsplit("= ", 1)[1]) < 1.0 for ln in scores)
    results = json.loads((work / "runs" / "migrate" / "results.json").read_text())
    assert results["teacher"]["imported"] is True and results["teacher"]["auc"] > 0.65
    # the migrated student learned the log (400 test rows: chance AUC has a standard deviation of about 0.03)
    assert results["offline"]["crossadapt"]["auc"][0] > 0.6, results["offline"]["crossadapt"]["auc"]
    assert results["online_meta"]["teacher_trainable"] is True
    manifest = json.loads((work / "exported" / "manifest.json").read_text())
    assert manifest["model_config"]["name"] == "my_models.net:GatedDNN" and manifest["vocabularies"] == "vocab.json"
    assert manifest["max_abs_logit_diff"] <= 1e-6
