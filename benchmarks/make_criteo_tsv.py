"""Write a Criteo-format TSV (``label, I1..I13, C1..C26``, no header) of random rows, for converter timings.

Rows are random but shaped like Kaggle's ``train.txt``: a label rate near 0.25, integer features
with empty values and a few negatives, categoricals as 8-hex-digit tokens drawn long-tailed, many
empty. ``--bad-every K`` makes every K-th line malformed (rotating through the skip reasons) so
the converter's bad-line path is timed too. Never commit the output.

Example::

    python benchmarks/make_criteo_tsv.py /tmp/criteo_1m.tsv --rows 1000000
"""

from __future__ import annotations

import argparse

import numpy as np

CARDINALITIES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27,
                 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
BAD = ("2", "abc", None, "")  # bad label, bad integer, wrong column count, empty line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--bad-every", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    chunk = 100_000
    with open(args.out, "w") as f:
        for start in range(0, args.rows, chunk):
            n = min(chunk, args.rows - start)
            cols = [np.where(rng.random(n) < 0.25, "1", "0")]
            for _ in range(13):
                ints = np.floor(np.expm1(rng.exponential(2.0, n))).astype(np.int64) - (rng.random(n) < 0.02)
                cols.append(np.where(rng.random(n) < 0.3, "", ints.astype(str)))
            for card in CARDINALITIES:
                idx = np.minimum(rng.zipf(1.2, n), card) * 2654435761 % (1 << 32)
                toks = np.char.mod("%08x", idx)
                cols.append(np.where(rng.random(n) < 0.1, "", toks))
            lines = ["\t".join(row) for row in zip(*(c.tolist() for c in cols))]
            if args.bad_every:
                for i in range((-start) % args.bad_every, n, args.bad_every):
                    kind = BAD[((start + i) // args.bad_every) % len(BAD)]
                    parts = lines[i].split("\t")
                    if kind == "2":
                        parts[0] = "2"
                    elif kind == "abc":
                        parts[1] = "abc"
                    elif kind is None:
                        parts = parts[:-1]
                    else:
                        parts = [""]
                    lines[i] = "\t".join(parts)
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
