"""Does the paper's narrow teacher tower (DNN d = 8, hidden [64, 32, 4]) train on a 26-field world,
with and without ``model.layer_norm``? In-process (no Ray), one line per (norm, seed).

    PYTHONPATH=$PWD python benchmarks/narrow_tower.py --seeds 0 1 2

Reports the validation AUC of every epoch, the best one, and how many of the 4 units of the last
hidden layer are alive (positive for at least one validation row) at the end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from crossadapt.config import ModelConfig, SyntheticConfig
from crossadapt.data import arrays as A
from crossadapt.data.synthetic import generate
from crossadapt.featuremap import FeatureMap
from crossadapt.models import build_model
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob


def alive_units(model: torch.nn.Module, valid: engine.Tensors) -> int:
    """Units of the last hidden layer whose ReLU output is positive for at least one row."""
    relus = [m for m in model.mlp.net if isinstance(m, torch.nn.ReLU)]
    out = {}
    handle = relus[-1].register_forward_hook(lambda _m, _i, o: out.__setitem__("h", o))
    engine.predict_logits(model, valid)
    handle.remove()
    return int((out["h"] > 0).any(dim=0).sum())


def run(model: torch.nn.Module, job: TrainJob, train: engine.Tensors, valid: engine.Tensors,
        embed_lr: float | None) -> dict:
    """``engine.run_phases`` (one phase), with the embedding table at its own lr when asked."""
    if embed_lr is None:
        return engine.run_phases(model, job, train, valid, None)
    n = train["ids"].shape[0]
    opt = engine.make_optimizer(model, job.phases[0].lr, embed_lr=embed_lr)
    gen, history = torch.Generator(), []
    for epoch in range(job.phases[0].epochs):
        gen.manual_seed(job.seed * 1_000_003 + epoch)
        engine.train_steps(model, opt, train, engine.batches(n, job.batch_size, -(-n // job.batch_size), gen, "cpu"),
                           None, job)
        history.append({"valid_auc": engine.evaluate(model, valid)["auc"]})
    return {"history": history}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fields", type=int, default=26)
    ap.add_argument("--rows", type=int, default=20_000, help="rows per period (4 train periods, 1 valid)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=2e-3, help="optim.lr default")
    ap.add_argument("--batch", type=int, default=512, help="optim.batch_size default")
    ap.add_argument("--embed-lr", type=float, default=None, help="embedding lr (the released code: 0.1)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 32, 4])
    ap.add_argument("--embed-dim", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--ctr", type=float, default=0.12, help="synthetic base CTR (Criteo's is ~0.25)")
    ap.add_argument("--norms", type=int, nargs="+", default=[0, 1], help="layer_norm settings to run (0, 1)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        generate(SyntheticConfig(num_fields=args.fields, vocab_size=args.vocab, rows_per_period=args.rows,
                                 num_periods=5, base_ctr=args.ctr, drift_periods=(), seed=0), root)
        fm = FeatureMap.load(root)
        train = engine.to_tensors(A.read_periods(root, range(0, 4), fm))
        valid = engine.to_tensors(A.read_periods(root, [4], fm))
        results = []
        for layer_norm in [bool(x) for x in args.norms]:
            cfg = ModelConfig(name="dnn", embed_dim=args.embed_dim, hidden_units=tuple(args.hidden),
                              layer_norm=layer_norm)
            for seed in args.seeds:
                job = TrainJob(name=f"ln={layer_norm}-seed{seed}", run_dir="", model=cfg,
                               phases=(Phase(epochs=args.epochs, lr=args.lr),), batch_size=args.batch,
                               patience=args.epochs, seed=seed)
                model = engine.build_job_model(job, fm, "cpu")
                state = run(model, job, train, valid, args.embed_lr)
                aucs = [round(h["valid_auc"], 4) for h in state["history"]]
                row = {"layer_norm": layer_norm, "seed": seed, "valid_auc": aucs, "best": max(aucs),
                       "alive_last_layer": alive_units(model, valid)}
                results.append(row)
                print(json.dumps(row), flush=True)
        for layer_norm in sorted({r["layer_norm"] for r in results}):
            best = [r["best"] for r in results if r["layer_norm"] == layer_norm]
            print(f"layer_norm={layer_norm}: best valid AUC {np.mean(best):.4f} ± {np.std(best, ddof=1):.4f} "
                  f"(seeds {args.seeds}: {best})")


if __name__ == "__main__":
    main()
