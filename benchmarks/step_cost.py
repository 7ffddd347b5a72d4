"""Where one training step's time goes on the Criteo-shaped world: forward, backward, Adam.

One process, no Ray: the zoo model as ``build_model`` makes it over the 26 categorical fields of
``configs/criteo_like.yaml`` (~1.09 M ids in one embedding table) and 13 numeric fields, random ids
and labels, the library's optimizer (``engine.make_optimizer``: fused Adam over every parameter,
the whole table included since its gradient is dense). Per model and batch size: the median
seconds of the forward pass with the loss, the backward pass and the optimizer step, and rows/s of
the whole step. It tells whether a slow student is the model's arithmetic or the update of the
embedding table (the two need different fixes: a cheaper model, or sparse updates).

Usage::

    python benchmarks/step_cost.py --quick       # DNN(8), DNN(16), DCNv2(16), DCNv2(32) at batch 4096
    python benchmarks/step_cost.py --models dcnv2:32 fibinet:16 --batch 1024 --batch 4096
"""

from __future__ import annotations

import time

import common as bc  # benchmarks/common.py (puts the repo on sys.path)
import numpy as np
import torch

from crossadapt.config import ModelConfig, load_config
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.models import build_model
from crossadapt.train.engine import make_optimizer

QUICK_MODELS = ("dnn:8", "dnn:16", "dcnv2:16", "dcnv2:32")


def criteo_feature_map() -> FeatureMap:
    """The feature map of ``configs/criteo_like.yaml``'s world (its vocab sizes, 13 numeric fields)."""
    syn = load_config(bc.ROOT / "configs" / "criteo_like.yaml").synthetic
    fields = [FieldSpec(f"C{i + 1}", vocab_size=int(v)) for i, v in enumerate(syn.vocab_sizes)]
    fields += [FieldSpec(f"I{j + 1}", type="numeric") for j in range(syn.numeric_fields)]
    return FeatureMap("criteo_like", tuple(fields))


def measure(fm: FeatureMap, name: str, dim: int, batch: int, repeats: int, warmup: int) -> dict:
    """Median forward / backward / optimizer seconds of ``repeats`` steps of one model at one batch."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, embed_dim=dim), fm)
    opt = make_optimizer(model, 1e-3)
    gen = torch.Generator().manual_seed(1)
    ids = torch.stack([torch.randint(0, v, (batch,), generator=gen) for v in fm.vocab_sizes], dim=1)
    dense = torch.rand(batch, len(fm.numeric_fields), generator=gen)
    label = (torch.rand(batch, generator=gen) < 0.25).float()
    parts: list[tuple[float, float, float]] = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, dense), label)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= warmup:
            parts.append((t1 - t0, t2 - t1, t3 - t2))
    fwd, bwd, step = (float(np.median(c)) for c in zip(*parts))
    total = fwd + bwd + step
    return {"model": name, "embed_dim": dim, "batch": batch, "params": sum(p.numel() for p in model.parameters()),
            "forward_s": fwd, "backward_s": bwd, "optimizer_s": step, "step_s": total,
            "rows_per_s": batch / total, "optimizer_share": step / total}


def main() -> None:
    p = bc.parser("step_cost", __doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="name:embed_dim, e.g. dcnv2:32 (default per size)")
    p.add_argument("--batch", type=int, action="append", default=None, help="batch size (repeatable; default 4096)")
    args = p.parse_args()
    started = time.perf_counter()
    device = bc.resolve_device("cpu" if args.device == "auto" else args.device)
    if device.type != "cpu":
        raise SystemExit("--device: this benchmark times CPU steps only")
    models = args.models or list(QUICK_MODELS)
    batches = args.batch or [4096]
    repeats = args.repeats or (5 if args.quick else 20)
    fm = criteo_feature_map()
    rows = []
    for spec in models:
        name, _, dim = spec.partition(":")
        for batch in batches:
            r = measure(fm, name, int(dim or 16), batch, repeats, args.warmup)
            rows.append(r)
            print(f"  {name}({r['embed_dim']}) batch {batch}: {r['step_s']:.3f} s/step, "
                  f"{r['rows_per_s']:.0f} rows/s", flush=True)
    result = {"benchmark": "step_cost", "machine": bc.machine_facts(device), "repeats": repeats,
              "table_rows": sum(fm.vocab_sizes), "results": rows}
    bc.finish(args.out, result, ["model", "d", "batch", "forward s", "backward s", "Adam s", "Adam share", "rows/s"],
              [[r["model"], r["embed_dim"], r["batch"], r["forward_s"], r["backward_s"], r["optimizer_s"],
                r["optimizer_share"], r["rows_per_s"]] for r in rows], started)


if __name__ == "__main__":
    main()
