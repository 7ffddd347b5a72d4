"""In-process sanity check: FiBiNET (both variants) against DNN and DCNv2 on the 12-field synthetic
world (20 k rows per period; train periods 0-2, validation 3, test 4; 4 epochs, lr 2e-3, batch 512;
test AUC after the last epoch, seeds 0-2). No Ray: ``crossadapt zoo`` is the full comparison.

    PYTHONPATH=$PWD python benchmarks/fibinet_sanity.py
"""
import json, sys, tempfile, torch, numpy as np
from pathlib import Path
from crossadapt.config import ModelConfig, SyntheticConfig
from crossadapt.data import arrays as A
from crossadapt.data.synthetic import generate
from crossadapt.featuremap import FeatureMap
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob
torch.set_num_threads(1)
MODELS = {
    "dnn": ModelConfig(name="dnn", embed_dim=16, hidden_units=(256, 128, 16)),
    "dcnv2": ModelConfig(name="dcnv2", embed_dim=16, hidden_units=(256, 128, 16)),
    "fibinet-paper": ModelConfig(name="fibinet", embed_dim=16, hidden_units=(256, 128, 16)),
    "fibinet-released": ModelConfig(name="fibinet", embed_dim=16, hidden_units=(256, 128, 16), fibinet_variant="released", layer_norm=True),
}
with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp) / "d"
    meta = generate(SyntheticConfig(rows_per_period=20000, num_periods=5, drift_periods=(), seed=0), root)
    fm = FeatureMap.load(root)
    train = engine.to_tensors(A.read_periods(root, range(0, 3), fm)); valid = engine.to_tensors(A.read_periods(root, [3], fm))
    test = A.read_periods(root, [4], fm)
    print("test period", meta["periods"][4], flush=True)
    for name, cfg in MODELS.items():
        res = []
        for seed in (0, 1, 2):
            job = TrainJob(name=f"{name}-{seed}", run_dir="", model=cfg, phases=(Phase(epochs=4, lr=2e-3),), batch_size=512, patience=4, seed=seed)
            model = engine.build_job_model(job, fm, "cpu")
            engine.run_phases(model, job, train, valid, None)
            res.append(engine.evaluate(model, test)["auc"])
        print(json.dumps({"model": name, "test_auc": [round(x, 4) for x in res], "mean": round(float(np.mean(res)), 4), "sd": round(float(np.std(res, ddof=1)), 4)}), flush=True)
