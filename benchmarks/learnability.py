"""Is a synthetic world learnable? LR (first order only) and the teacher DNN trained on its history,
scored on a later period beside the generator's Bayes-optimal AUC of that period.

One process, no Ray: the library's training loop (``crossadapt.train.engine.run_phases``) with the
config's optimiser settings, early stopping on the last 10 % (in time) of the training rows, and
the best epoch's weights scored on the test period. A check that a world is neither trivial nor
hopeless, not a comparison (one seed).

Example (a small Criteo-shaped instance: 3 periods of 200 k rows to train, the 4th to test)::

    python benchmarks/learnability.py --config configs/criteo_like.yaml --rows-per-period 200000 \
        --periods 5 --train 0 3 --test 3 --out benchmarks/results/learnability.json
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import common as bc  # benchmarks/common.py (puts the repo on sys.path)

from crossadapt import atomic
from crossadapt.config import ModelConfig, load_config, replace, to_dict
from crossadapt.data import arrays as A
from crossadapt.data.synthetic import generate, is_current, read_meta
from crossadapt.featuremap import FeatureMap
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/criteo_like.yaml")
    ap.add_argument("--rows-per-period", type=int, default=200_000)
    ap.add_argument("--periods", type=int, default=5)
    ap.add_argument("--train", type=int, nargs=2, default=(0, 3), metavar=("START", "END"))
    ap.add_argument("--test", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=0, help="0: optim.batch_size of the config")
    ap.add_argument("--root", default="runs/learnability/data")
    ap.add_argument("--models", nargs="+", default=["lr", "teacher"], choices=["lr", "teacher"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    cfg = load_config(args.config)
    # Drift only after the test period, so the test regime is the one trained on.
    drifts = tuple(d for d in cfg.synthetic.drift_periods if args.test < d < args.periods)
    syn = replace(cfg.synthetic, rows_per_period=args.rows_per_period, num_periods=args.periods, drift_periods=drifts)
    root = Path(args.root)
    t = time.perf_counter()
    if not is_current(root, syn):
        generate(syn, root)
    print(f"data: {root} ({time.perf_counter() - t:.0f} s)", flush=True)
    fm = FeatureMap.load(root)
    train = A.read_periods(root, list(range(*args.train)), fm)
    n_valid = A.num_rows(train) // 10
    n = A.num_rows(train)
    valid = A.take(train, slice(n - n_valid, n))
    train = A.take(train, slice(0, n - n_valid))
    device = bc.resolve_device(args.device)
    test = engine.to_tensors(A.read_periods(root, [args.test], fm), device)
    bayes = read_meta(root)["periods"][args.test]["bayes_auc"]

    models = {"lr": ModelConfig(name="lr", embed_dim=1), "teacher": cfg.teacher}
    results = {}
    for name, model_cfg in ((m, models[m]) for m in args.models):
        with tempfile.TemporaryDirectory() as run_dir:
            job = TrainJob(name=name, run_dir=run_dir, model=model_cfg, phases=(Phase(args.epochs, cfg.optim.lr),),
                           batch_size=args.batch_size or cfg.optim.batch_size, patience=cfg.optim.patience, seed=cfg.optim.seed)
            model = engine.build_job_model(job, fm, device)
            best: dict = {}

            def keep_best(record, state, m, opt, improved, last) -> None:  # noqa: ANN001
                if improved:
                    best["state"] = copy.deepcopy(m.state_dict())

            t = time.perf_counter()
            state = engine.run_phases(model, job, engine.to_tensors(train, device), engine.to_tensors(valid, device), None,
                                      on_epoch=keep_best)
            model.load_state_dict(best["state"])
            m = engine.evaluate(model, test)
            results[name] = {"model": to_dict(model_cfg), "test_auc": m["auc"], "test_logloss": m["logloss"],
                             "best_valid_auc": state["best_auc"], "epochs": len(state["history"]),
                             "seconds": time.perf_counter() - t}
            print(f"{name}: test AUC {m['auc']:.4f} (Bayes {bayes:.4f}), {results[name]['epochs']} epochs, "
                  f"{results[name]['seconds']:.0f} s", flush=True)
    out = {"config": args.config, "synthetic": to_dict(syn), "train_periods": list(args.train),
           "test_period": args.test, "train_rows": n - n_valid, "valid_rows": n_valid, "test_rows": int(test["label"].numel()),
           "bayes_auc": bayes, "models": results, "machine": bc.machine_facts(device)}
    if args.out:
        atomic.write_json(args.out, out)


if __name__ == "__main__":
    main()
