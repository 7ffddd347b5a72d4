"""Toy inputs for the "Migrate your own model" walk-through: click logs and a deployed teacher.

With your own logs and model, skip this script: point ``migrate.yaml`` at them instead.

Writes, in this folder:

- ``logs/day-<k>.csv``: 8 days of a click log, one file per day, columns
  ``event_time`` (ISO 8601, UTC), ``user_id``, ``item_id``, ``site``, ``price``, ``session_clicks``
  (leaks the label: the schema drops it) and ``rating`` (1-5; a click is a rating >= 4). Rows are
  roughly in time order (a few arrive a little late) and two lines are malformed, as in real logs.
- ``teacher/model.pt``: the "deployed" teacher, a TorchScript program
  ``forward(ids int64 [B, 3], dense float32 [B, 1]) -> logits [B]`` (ids of user_id, item_id, site;
  dense: price), with per-field tables of different widths (8, 8, 4);
- ``teacher/tables.pt``: its embedding tables, ``{field: tensor}``;
- ``teacher/vocab.json``: its vocabularies, raw value -> row (row 0: unseen values).

The stand-in teacher knows the click model that generated the logs (its tables are the true
factors), as a teacher trained on months of logs would approximately. Users that appear only in the
last days are not in its vocabulary (new users: they map to its OOV row). Needs numpy and torch only.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DAYS, ROWS_PER_DAY = 8, 400
USERS, NEW_USERS, ITEMS, SITES, K = 300, 40, 150, 6, 8
START = datetime(2024, 3, 1, tzinfo=timezone.utc)


class DeployedCTR(nn.Module):
    """A matrix-factorisation CTR model: user . item + site + price terms."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, sites: torch.Tensor, price_weight: float,
                 bias: float) -> None:
        super().__init__()
        self.user = nn.Embedding.from_pretrained(users, freeze=False)
        self.item = nn.Embedding.from_pretrained(items, freeze=False)
        self.site = nn.Embedding.from_pretrained(sites, freeze=False)
        self.site_out = nn.Linear(sites.shape[1], 1, bias=False)
        self.price = nn.Parameter(torch.tensor([price_weight]))
        self.bias = nn.Parameter(torch.tensor([bias]))
        with torch.no_grad():
            self.site_out.weight.zero_()
            self.site_out.weight[0, 0] = 1.0  # the site effect sits in the first column of its table

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        u, v, s = self.user(ids[:, 0]), self.item(ids[:, 1]), self.site(ids[:, 2])
        return (u * v).sum(1) + self.site_out(s).squeeze(1) + self.price * dense[:, 0] + self.bias


def main(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    users = rng.normal(0, 0.45, (USERS + NEW_USERS, K)).astype(np.float32)
    items = rng.normal(0, 0.45, (ITEMS, K)).astype(np.float32)
    site_bias = rng.normal(0, 0.5, SITES).astype(np.float32)
    price_weight, bias = -0.4, -0.6
    popularity = lambda n: (p := 1.0 / np.arange(1, n + 1) ** 0.8) / p.sum()  # noqa: E731

    (HERE / "logs").mkdir(exist_ok=True)
    for day in range(DAYS):
        # new users show up from day 6 on: the teacher never saw them
        n_users = USERS + (NEW_USERS if day >= 6 else 0)
        u = rng.choice(n_users, ROWS_PER_DAY, p=popularity(n_users))
        i = rng.choice(ITEMS, ROWS_PER_DAY, p=popularity(ITEMS))
        s = rng.integers(0, SITES, ROWS_PER_DAY)
        price = rng.lognormal(0.0, 0.5, ROWS_PER_DAY).astype(np.float32)
        logit = (users[u] * items[i]).sum(1) + site_bias[s] + price_weight * price + bias
        click = rng.random(ROWS_PER_DAY) < 1 / (1 + np.exp(-logit))
        rating = np.where(click, rng.integers(4, 6, ROWS_PER_DAY), rng.integers(1, 4, ROWS_PER_DAY))
        seconds = np.sort(rng.integers(0, 86400, ROWS_PER_DAY))
        seconds[::50] = np.maximum(seconds[::50] - 600, 0)  # a few rows logged up to 10 minutes late
        lines = ["event_time,user_id,item_id,site,price,session_clicks,rating"]
        for r in range(ROWS_PER_DAY):
            t = (START + timedelta(days=day, seconds=int(seconds[r]))).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines.append(f"{t},u{u[r]},i{i[r]},s{s[r]},{price[r]:.3f},{int(click[r]) + rng.integers(0, 2)},{rating[r]}")
        if day == 2:
            lines.insert(100, "2024-03-03T07:00:00Z,u1,i2")          # truncated line
            lines.insert(200, "not-a-time,u1,i2,s0,1.0,0,5")          # unreadable time
        (HERE / "logs" / f"day-{day + 1:02d}.csv").write_text("\n".join(lines) + "\n")

    # The teacher's own encoding: row 0 of every table is its OOV row (zeros: no effect).
    vocab = {"oov_index": 0, "fields": {
        "user_id": {f"u{k}": k + 1 for k in range(USERS)},
        "item_id": {f"i{k}": k + 1 for k in range(ITEMS)},
        "site": {f"s{k}": k + 1 for k in range(SITES)},
    }}
    site_table = np.zeros((SITES + 1, 4), np.float32)
    site_table[1:, 0] = site_bias
    site_table[1:, 1:] = rng.normal(0, 0.1, (SITES, 3))
    tables = {
        "user_id": torch.from_numpy(np.vstack([np.zeros((1, K), np.float32), users[:USERS]])),
        "item_id": torch.from_numpy(np.vstack([np.zeros((1, K), np.float32), items])),
        "site": torch.from_numpy(site_table),
    }
    teacher = DeployedCTR(tables["user_id"], tables["item_id"], tables["site"], price_weight, bias).eval()
    (HERE / "teacher").mkdir(exist_ok=True)
    torch.jit.script(teacher).save(str(HERE / "teacher" / "model.pt"))
    torch.save(tables, HERE / "teacher" / "tables.pt")
    (HERE / "teacher" / "vocab.json").write_text(json.dumps(vocab))
    print(f"wrote {DAYS} days of logs to {HERE / 'logs'} and the teacher to {HERE / 'teacher'}")


if __name__ == "__main__":
    main()
