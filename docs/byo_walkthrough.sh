#!/usr/bin/env bash
# "Migrate your own model" (README): a CSV click log and a deployed TorchScript model in, an
# exported student out. Run from a copy of examples/migrate (tests/test_byo_walkthrough.py runs
# this file as written). With your own logs and model, skip make_example.py and edit migrate.yaml.
set -euo pipefail
python make_example.py                                   # toy logs/*.csv + teacher/{model.pt,tables.pt,vocab.json}
crossadapt prepare --config migrate.yaml                 # CSV -> encoded periods, with the teacher's vocabularies
crossadapt transfer --config migrate.yaml                # projection + distillation into my_models.net:GatedDNN
crossadapt online --config migrate.yaml                  # replay the stream; teacher frozen if not trainable
crossadapt export --config migrate.yaml --out exported   # model.pt2 + feature_map.json + vocab.json
python score_exported.py exported logs/day-08.csv        # score raw rows with torch alone
