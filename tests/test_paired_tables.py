"""Paired tests against CrossAdapt (saved test scores, DeLong per seed, seed spread) and the result
tables printed by `crossadapt tables` from a results.json, checked against hand-computed figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossadapt import cli
from crossadapt.errors import DataError
from crossadapt.experiment import paired, tables
from crossadapt.experiment.report import write_report
from crossadapt.metrics import auc, delong_test, paired_spread

PERIODS = [8]


def _labels(n: int = 2000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < 0.3).astype(np.float32)


def test_scores_are_saved_as_float32_and_bound_to_their_rows(tmp_path):
    y = _labels()
    ckpt = tmp_path / "kd-seed0" / "best.pt"
    ckpt.parent.mkdir()
    p = np.random.default_rng(1).random(y.size)  # float64 in: float32 on disk
    path = paired.save_test_scores(ckpt, p, y, PERIODS)
    assert path == ckpt.with_name("test_scores.npy") and np.load(path).dtype == np.float32
    meta = json.loads(ckpt.with_name("test_scores.json").read_text())
    assert meta["rows"] == y.size and meta["positives"] == int(y.sum()) and meta["test_periods"] == PERIODS
    np.testing.assert_array_equal(paired.load_test_scores(ckpt, y, PERIODS), p.astype(np.float32))
    # other rows: same count, one label flipped; other periods; no file at all
    flipped = y.copy()
    flipped[0] = 1 - flipped[0]
    with pytest.raises(DataError, match="test_scores.json.*other test rows.*labels_sha256"):
        paired.load_test_scores(ckpt, flipped, PERIODS)
    with pytest.raises(DataError, match="test_periods"):
        paired.load_test_scores(ckpt, y, [9])
    with pytest.raises(DataError, match="no saved test scores"):
        paired.load_test_scores(tmp_path / "scratch-seed0" / "best.pt", y, PERIODS)


def _records(tmp_path, y: np.ndarray, noise: dict[str, float], seeds=(0, 1, 2)) -> list[dict]:
    """Students whose scores are the label plus Gaussian noise of the given scale (less noise: better)."""
    records = []
    for s in seeds:
        for m, scale in noise.items():
            rng = np.random.default_rng([s, len(m)])
            ckpt = tmp_path / f"{m}-seed{s}" / "best.pt"
            ckpt.parent.mkdir(parents=True)
            paired.save_test_scores(ckpt, y + rng.normal(scale=scale, size=y.size), y, PERIODS)
            records.append({"method": m, "seed": s, "checkpoint": str(ckpt)})
    return records


def test_paired_tests_block(tmp_path):
    y = _labels()
    records = _records(tmp_path, y, {"crossadapt": 1.0, "scratch": 3.0, "twin": 1.0})
    block = paired.paired_tests(records, y, PERIODS)
    assert block["reference"] == "crossadapt" and block["rows"] == y.size and block["test_periods"] == PERIODS
    assert list(block["methods"]) == ["scratch", "twin"]
    for name, b in block["methods"].items():
        assert [x["seed"] for x in b["per_seed"]] == [0, 1, 2]
        for x in b["per_seed"]:
            mine = paired.load_test_scores(tmp_path / f"{name}-seed{x['seed']}" / "best.pt", y, PERIODS)
            ref = paired.load_test_scores(tmp_path / f"crossadapt-seed{x['seed']}" / "best.pt", y, PERIODS)
            t = delong_test(y, mine, ref)
            assert x["delta_auc"] == auc(y, mine) - auc(y, ref) == t["delta"]
            assert (x["z"], x["p"]) == (t["z"], t["p"])
        deltas = [x["delta_auc"] for x in b["per_seed"]]
        assert b["delta_mean"] == pytest.approx(sum(deltas) / 3, abs=1e-15)
        assert b["delta_std"] == pytest.approx(np.std(deltas, ddof=1), abs=1e-15)
    # three times the noise is a far worse model (AUC ~0.62 vs ~0.75 on 2000 rows): real at every seed
    s = block["methods"]["scratch"]
    assert s["delta_mean"] < -0.08 and s["exceeds_spread"] and s["significant_seeds"] == 3 and s["verdict"] == "real"
    # the same model with other noise draws: no seed says p < 0.05, so within noise
    t = block["methods"]["twin"]
    assert abs(t["delta_mean"]) < 0.02 and t["significant_seeds"] == 0 and t["verdict"] == "within noise"
    json.dumps(block, allow_nan=False)  # results.json refuses NaN and inf
    assert paired.paired_tests([r for r in records if r["method"] != "crossadapt"], y, PERIODS) is None


def test_one_click_in_the_test_rows_skips_the_paired_tests_with_the_reason(tmp_path):
    y = np.zeros(50, dtype=np.float32)
    y[3] = 1
    records = _records(tmp_path, y, {"crossadapt": 1.0, "scratch": 3.0}, seeds=(0,))
    block = paired.paired_tests(records, y, PERIODS)
    assert block["methods"] == {} and "1 clicks in 50 rows" in block["skipped"]
    assert tables.paired_table({"paired_tests": block}) == tables.paired_note({"paired_tests": block}) == []


def test_paired_spread_rule():
    # deltas -0.02, -0.03, -0.01: mean -0.02, std 0.01, se 0.01/sqrt(3) = 0.00577; 2 se < 0.02
    s = paired_spread([-0.02, -0.03, -0.01])
    assert s["mean"] == pytest.approx(-0.02, abs=1e-15) and s["std"] == pytest.approx(0.01, abs=1e-15)
    assert s["se"] == pytest.approx(0.01 / 3 ** 0.5, abs=1e-15) and s["exceeds_spread"] is True
    # deltas -0.01, -0.02, 0.00: mean -0.01, 2 se = 0.0115 > 0.01
    assert paired_spread([-0.01, -0.02, 0.0])["exceeds_spread"] is False
    assert paired_spread([0.004, 0.004, 0.004])["exceeds_spread"] is True  # no spread at all
    assert paired_spread([0.0, 0.0])["exceeds_spread"] is False
    assert paired_spread([0.03])["exceeds_spread"] is None  # one seed: spread unknown


def _windows(aucs: list[float], logloss: float = 0.4, bias: float = -0.1) -> list[dict]:
    return [{"period": 9 + i, "auc": a, "logloss": logloss, "bias": bias} for i, a in enumerate(aucs)]


def _results() -> dict:
    return {
        "offline": {
            "scratch": {"seed": [0, 1, 2], "auc": [0.68, 0.69, 0.73], "logloss": [0.35, 0.34, 0.33],
                        "bias": [0.01, 0.02, 0.03], "train_seconds": [10.0, 12.0, 14.0], "samples": [100, 100, 100]},
            "crossadapt": {"seed": [0, 1, 2], "auc": [0.70, 0.72, 0.74], "logloss": [0.33, 0.33, 0.33],
                           "bias": [0.0, 0.0, 0.0], "train_seconds": [3.0, 3.0, 3.0], "samples": [10, 10, 10]},
            # listed in another seed order: pairing is by seed, not by position
            "kd": {"seed": [2, 0, 1], "auc": [0.73, 0.71, 0.72], "logloss": [0.32, 0.32, 0.32],
                   "bias": [0.0, 0.0, 0.0], "train_seconds": [15.0, 15.0, 15.0], "samples": [100, 100, 100]},
        },
        "paired_tests": {
            "reference": "crossadapt", "alpha": 0.05, "rows": 2000, "test_periods": [8], "spread_rule": "r1",
            "verdict_rule": "r2",
            "methods": {"scratch": {"per_seed": [{"seed": s, "delta_auc": d, "p": p} for s, d, p in
                                                 ((0, -0.02, 0.001), (1, -0.03, 0.0), (2, -0.01, 0.2))],
                                    "seeds": 3, "exceeds_spread": True, "significant_seeds": 2,
                                    "verdict": "within noise"}},
        },
        "online": {
            "crossadapt": {"runs": [{"seed": 0, "windows": _windows([0.70, 0.72]), "exchange_share": 0.01, "tau": 10},
                                    {"seed": 1, "windows": _windows([0.72, 0.74]), "exchange_share": 0.03, "tau": 10},
                                    {"seed": 2, "windows": _windows([0.71, 0.73], bias=0.3), "exchange_share": 0.02,
                                     "tau": 10}]},
            "student_only": {"runs": [{"seed": 0, "windows": _windows([0.69, 0.71]), "tau": None},
                                      {"seed": 1, "windows": _windows([0.70, 0.72]), "tau": None},
                                      {"seed": 2, "windows": _windows([0.70, 0.74]), "tau": None}]},
        },
    }


def _rows(text: str, heading: str) -> dict[str, list[str]]:
    """The table under ``### heading``: method -> its cells."""
    section = text.split(f"### {heading}")[1].split("###")[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_tables_command_prints_the_hand_computed_figures(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    assert cli.main(["tables", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    off = _rows(out, "Offline transfer")
    # crossadapt 0.70 0.72 0.74: 0.72 ± 0.02; scratch deltas -0.02 -0.03 -0.01: -0.02 ± 0.01, 2 se 0.0115
    assert off["crossadapt"][:3] == ["0.7200 ± 0.0200", "-", "-"]
    assert off["scratch"][:5] == ["0.7000 ± 0.0265", "-0.0200 ± 0.0100", "yes", "0.3400 ± 0.0100", "+0.020 ± 0.010"]
    assert off["scratch"][5:] == ["12.0 ± 2.0", "100"]
    # kd by seed: 0.71 0.72 0.73 against 0.70 0.72 0.74: deltas +0.01 0 -0.01, mean 0
    assert off["kd"][:3] == ["0.7200 ± 0.0100", "+0.0000 ± 0.0100", "no"]
    pt = _rows(out, "Paired tests against CrossAdapt (offline, same test rows)")
    assert pt["scratch"] == ["s0: -0.0200 (0.001), s1: -0.0300 (<1e-4), s2: -0.0100 (0.2)", "-0.0200 ± 0.0100", "yes",
                             "2/3 seeds", "within noise"]
    on = _rows(out, "Online co-distillation")
    # per-seed means over periods: crossadapt 0.71 0.73 0.72; student_only 0.70 0.71 0.72
    assert on["crossadapt"] == ["0.7200 ± 0.0100", "-", "-", "0.4000 ± 0.0000", "0.1667 ± 0.1155", "2.0 %", "-",
                                 "0, 1, 2"]  # no final test: these runs have none
    # deltas -0.01 -0.02 0.00: mean -0.01, std 0.01, 2 se = 0.0115 > 0.01: within the spread
    assert on["student_only"][:3] == ["0.7100 ± 0.0100", "-0.0100 ± 0.0100", "no"]
    assert on["student_only"][5] == "-"


def test_online_table_reads_the_older_one_run_shape(tmp_path, capsys):
    results = {"online": {"crossadapt": {"windows": _windows([0.70, 0.74]), "exchange_share": 0.004, "tau": 10},
                          "student_only": {"windows": _windows([0.69, 0.71]), "tau": None}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert cli.main(["tables", str(tmp_path)]) == 0
    on = _rows(capsys.readouterr().out, "Online co-distillation")
    assert on["crossadapt"] == ["0.7200", "-", "-", "0.4000", "0.1000", "0.4 %", "-", "1"]
    assert on["student_only"][:3] == ["0.7000", "-0.0200", "n/a (1 seed)"]


def test_report_shows_the_same_tables(tmp_path):
    results = _results()
    del results["online"]  # the online section and its plots are checked elsewhere
    text = write_report(results, tmp_path).read_text()
    assert "| scratch | 0.7000 ± 0.0265 | -0.0200 ± 0.0100 | yes |" in text
    assert "| scratch | s0: -0.0200 (0.001)" in text and "within noise |" in text


def test_tables_of_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["tables", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_undefined_auc_is_shown_as_na_not_a_number():
    results = _results()
    results["offline"]["kd"]["auc"] = [None, None, None]  # a one-class test split: AUC null in results.json
    rows = {r.split(" | ")[0].strip("| "): r for r in tables.offline_table(results)}
    assert rows["kd"].startswith("| kd | n/a | n/a | n/a |")
    assert rows["scratch"].startswith("| scratch | 0.7000 ± 0.0265 | -0.0200 ± 0.0100 | yes |")
