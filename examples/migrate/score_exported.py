"""Score raw log rows with an exported student, with torch alone (no crossadapt).

    python score_exported.py exported logs/day-08.csv

Encodes each row's categorical values with ``vocab.json`` (values it does not know get the field's
OOV id), reads the numeric columns as floats (missing: 0) and prints click probabilities.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch


def main(folder: str, log: str, limit: int = 5) -> None:
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    vocab = json.loads((folder / "vocab.json").read_text())["fields"]
    ids_spec, dense_spec = manifest["inputs"]["ids"], manifest["inputs"]["dense"]
    lookup = {name: ({v: i + 1 for i, v in enumerate(vals)} if isinstance(vals, list) else vals)
              for name, vals in vocab.items()}
    program = torch.export.load(str(folder / manifest["program"])).module()
    with open(log, newline="") as f:
        rows = [r for _, r in zip(range(limit), csv.DictReader(f))]
    ids = torch.tensor([[lookup[n].get(r[n], ids_spec["oov_index"][n]) for n in ids_spec["fields"]] for r in rows])
    dense = torch.tensor([[float(r[n] or 0) for n in dense_spec["fields"]] for r in rows], dtype=torch.float32)
    for r, p in zip(rows, torch.sigmoid(program(ids, dense)).tolist()):
        print(f"{r['event_time']} {r['user_id']} {r['item_id']}: p(click) = {p:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
