"""In-process sanity check: FiBiNET (both variants) against DNN and DCNv2 on the 12-field synthetic
world (20 k rows per period; train periods 0-2, validation 3, test 4; 4 epochs, lr 2e-3, batch 512;
test AUC after the last epoch, seeds 0-2). No Ray: ``crossadapt zoo`` is the full comparison.

    PYTHONPATH=$PWD python benchmarks/fibinet_sanity.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from crossadapt.config import ModelConfig, SyntheticConfig
from crossadapt.data import arrays as A
from crossadapt.data.synthetic import generate
from crossadapt.featuremap import FeatureMap
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob

TOWER = (256, 128, 16)  # the released code's student tower
MODELS = {
    "dnn": ModelConfig(name="dnn", embed_dim=16, hidden_units=TOWER),
    "dcnv2": ModelConfig(name="dcnv2", embed_dim=16, hidden_units=TOWER),
    "fibinet-paper": ModelConfig(name="fibinet", embed_dim=16, hidden_units=TOWER),
    "fibinet-released": ModelConfig(name="fibinet", embed_dim=16, hidden_units=TOWER, fibinet_variant="released",
                                    layer_norm=True),
}


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        meta = generate(SyntheticConfig(rows_per_period=20_000, num_periods=5, drift_periods=(), seed=0), root)
        fm = FeatureMap.load(root)
        train = engine.to_tensors(A.read_periods(root, range(0, 3), fm))
        valid = engine.to_tensors(A.read_periods(root, [3], fm))
        test = A.read_periods(root, [4], fm)
        print("test period", meta["periods"][4], flush=True)
        for name, cfg in MODELS.items():
            aucs = []
            for seed in (0, 1, 2):
                job = TrainJob(name=f"{name}-{seed}", run_dir="", model=cfg, phases=(Phase(epochs=4, lr=2e-3),),
                               batch_size=512, patience=4, seed=seed)
                model = engine.build_job_model(job, fm, "cpu")
                engine.run_phases(model, job, train, valid, None)
                aucs.append(engine.evaluate(model, test)["auc"])
            print(json.dumps({"model": name, "test_auc": [round(a, 4) for a in aucs], "mean": round(float(np.mean(aucs)), 4),
                              "sd": round(float(np.std(aucs, ddof=1)), 4)}), flush=True)


if __name__ == "__main__":
    main()
