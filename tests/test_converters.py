"""Raw converters (Criteo, Avazu, KDD12) on handmade fixtures with known ids, and on the real samples."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossadapt.data.converters import (
    CONVERTERS,
    BadLine,
    ConvertSummary,
    build_vocab,
    convert,
    int_token,
    log_square_bucket,
    period_bounds,
)
from crossadapt.data.converters import conversion as conv_base
from crossadapt.data.converters import reader
from crossadapt.errors import ConfigError, DataError
from crossadapt.featuremap import FeatureMap

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "raw"
CRITEO = FIXTURES / "criteo_small.tsv"
AVAZU = FIXTURES / "avazu_small.csv"
KDD12 = FIXTURES / "kdd12_small.tsv"
# Real samples live beside the checkout (../shared/data) and are never copied into the repo.
from conftest import SHARED_DATA  # noqa: E402
CRITEO_SAMPLE = SHARED_DATA / "criteo" / "criteo_sample.txt"
AVAZU_SAMPLE = SHARED_DATA / "avazu" / "avazu_sample.txt"


def read_period(root: Path, k: int) -> pa.Table:
    return pq.read_table(root / f"period={k}" / "part-00000.parquet")


def read_all(root: Path) -> dict[str, np.ndarray]:
    """All periods concatenated in period order, as numpy columns."""
    k = 0
    tables = []
    while (root / f"period={k}").exists():
        tables.append(read_period(root, k))
        k += 1
    table = pa.concat_tables(tables)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def run(source: str, raw: Path, out: Path, **kw) -> ConvertSummary:
    kw.setdefault("verbose", False)
    return convert(source, raw, out, **kw)


# ---------------------------------------------------------------- pure helpers


def test_log_square_bucket_values() -> None:
    assert log_square_bucket(3) == 1
    assert log_square_bucket(4) == 1
    assert log_square_bucket(5) == 2
    assert log_square_bucket(10) == 5
    assert log_square_bucket(100) == 21
    assert log_square_bucket(260.0) == 30
    with pytest.raises(ValueError):
        log_square_bucket(2)


def test_int_token() -> None:
    assert int_token("3") == "b1"
    assert int_token("10") == "b5"
    assert int_token("100") == "b21"
    assert int_token("260.0") == "b30"
    # x <= 2: the value itself, each its own token, apart from the buckets
    assert int_token("2") == "2"
    assert int_token("2.0") == "2"
    assert int_token("1") == "1"
    assert int_token("0") == "0"
    assert int_token("-1") == "-1"
    assert int_token("-7") == "-7"
    assert int_token("") is None
    for bad in ("abc", "nan", "inf", "1x"):
        with pytest.raises(BadLine) as e:
            int_token(bad)
        assert e.value.reason == "bad_integer"


def test_build_vocab_order_and_min_count() -> None:
    from collections import Counter

    counts = Counter({"b": 3, "a": 3, "c": 5, "d": 1})
    assert build_vocab(counts, 2) == ["c", "a", "b"]  # descending count, then token
    assert build_vocab(counts, 1) == ["c", "a", "b", "d"]
    assert build_vocab(counts, 6) == []


def test_period_bounds() -> None:
    assert period_bounds(6, 4, None) == [0, 1, 3, 4, 6]
    assert period_bounds(10, 3, None) == [0, 3, 6, 10]
    assert period_bounds(10, None, 4) == [0, 4, 8, 10]
    assert period_bounds(8, None, 4) == [0, 4, 8]
    assert period_bounds(5, None, None) == [0, 5]


def test_registry() -> None:
    assert sorted(CONVERTERS) == ["avazu", "criteo", "kdd12"]
    with pytest.raises(ConfigError, match="unknown source 'movielens'"):
        convert("movielens", CRITEO, "/nonexistent")


# ---------------------------------------------------------------- Criteo

# Valid rows of criteo_small.tsv are lines 1, 2, 4, 6, 8, 10.
CRITEO_LABELS = [0, 1, 0, 0, 1, 0]
CRITEO_IDS_MIN2 = {
    "I1": [1, 0, 0, 1, 1, 0],  # b1 x3 -> 1; b5 (10), b21 (100) rare; missing -> 0
    "I2": [2, 0, 1, 1, 2, 1],  # "2" x3 -> 1 ("2.0" is "2"), "-1" x2 -> 2, "0" rare
    "I3": [1, 1, 1, 1, 1, 1],
    "C1": [1, 1, 2, 1, 0, 2],  # aa x3, bb x2, cc rare
    "C2": [1, 0, 1, 0, 1, 0],  # x x3; y, z rare; missing
    "C3": [2, 1, 2, 1, 0, 0],  # p x2 and q x2 tie: broken by token, p first
}


def test_criteo_exact_ids(tmp_path: Path) -> None:
    out = tmp_path / "criteo"
    s = run("criteo", CRITEO, out)
    assert (s.rows_read, s.rows_written, s.periods, s.fields) == (10, 6, 1, 39)
    cols = read_all(out)
    assert cols["label"].tolist() == CRITEO_LABELS
    for name, ids in CRITEO_IDS_MIN2.items():
        assert cols[name].tolist() == ids, name
    assert cols["I4"].tolist() == [0] * 6 and cols["C26"].tolist() == [0] * 6  # always empty
    assert cols["ts"].tolist() == list(range(6))  # no timestamp: row index
    vocab = json.loads((out / "vocab.json").read_text())["fields"]
    assert vocab["I1"] == ["b1"]
    assert vocab["I2"] == ["2", "-1"]
    assert vocab["C1"] == ["aa", "bb"]
    assert vocab["C3"] == ["p", "q"]
    fm = FeatureMap.load(out)
    sizes = dict(zip(fm.categorical_names, fm.vocab_sizes))
    assert (sizes["I1"], sizes["I2"], sizes["C1"], sizes["C2"], sizes["I4"]) == (2, 3, 3, 2, 1)
    encoders = {f.name: f.encoder for f in fm.fields}
    assert encoders["I1"] == "log_square_bucket" and encoders["C1"] == "vocab"
    assert all(f.type == "categorical" and f.oov_index == 0 for f in fm.fields)
    assert fm.categorical_names == [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
    assert s.label_rate == pytest.approx(2 / 6)


def test_criteo_min_count_one_keeps_rare(tmp_path: Path) -> None:
    out = tmp_path / "c1"
    run("criteo", CRITEO, out, min_count=1)
    vocab = json.loads((out / "vocab.json").read_text())["fields"]
    assert vocab["I1"] == ["b1", "b21", "b5"]  # ties by token: "b21" < "b5"
    assert vocab["I2"] == ["2", "-1", "0"]
    assert read_all(out)["I1"].tolist() == [1, 3, 2, 1, 1, 0]  # missing stays 0 even with min_count 1


def test_criteo_malformed_lines_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "criteo"
    s = convert("criteo", CRITEO, out)  # verbose: prints the summary block
    expected = {"bad_integer": 1, "bad_label": 1, "empty_line": 1, "wrong_column_count": 1}
    assert s.skipped == expected
    assert s.skipped_examples == {"bad_integer": [7], "bad_label": [9], "empty_line": [3], "wrong_column_count": [5]}
    printed = capsys.readouterr().out
    assert "rows read 10, written 6, skipped 4" in printed and "bad_integer 1 (lines 7)" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["convert_summary"]["skipped"] == expected
    assert meta["convert_summary"]["rows_written"] == 6
    assert meta["source"] == "criteo" and meta["min_count"] == 2
    assert meta["raw_path"] == str(CRITEO.resolve())


def test_criteo_csv_with_header_equals_tsv(tmp_path: Path) -> None:
    header = ",".join(["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)])
    csv = tmp_path / "criteo.csv"
    body = CRITEO.read_text().replace("\t", ",").replace("\n", "\r\n")  # Windows line ends too
    csv.write_bytes((header + "\r\n" + body).encode())
    s_tsv = run("criteo", CRITEO, tmp_path / "a")
    s_csv = run("criteo", csv, tmp_path / "b")
    assert s_csv.rows_written == s_tsv.rows_written == 6
    assert s_csv.rows_read == 10  # the header is not a data line
    assert {k: v.tolist() for k, v in read_all(tmp_path / "a").items()} == {
        k: v.tolist() for k, v in read_all(tmp_path / "b").items()
    }
    assert FeatureMap.load(tmp_path / "a") == FeatureMap.load(tmp_path / "b")
    # line numbers count the header line
    assert s_csv.skipped_examples["bad_integer"] == [8]
    assert json.loads((tmp_path / "b" / "meta.json").read_text())["delimiter"] == ","


def test_criteo_bad_header(tmp_path: Path) -> None:
    raw = tmp_path / "bad.csv"
    raw.write_text("label,I1,I2\n0,1,2\n")
    with pytest.raises(DataError, match="bad.csv: header"):
        run("criteo", raw, tmp_path / "out")


def test_period_splitting(tmp_path: Path) -> None:
    s = run("criteo", CRITEO, tmp_path / "p4", num_periods=4)
    assert s.period_rows == [1, 2, 1, 2] and s.periods == 4
    for k, n in enumerate([1, 2, 1, 2]):
        assert read_period(tmp_path / "p4", k).num_rows == n
    cols = read_all(tmp_path / "p4")
    assert cols["ts"].tolist() == list(range(6))  # contiguous, in time order across periods
    assert cols["C1"].tolist() == CRITEO_IDS_MIN2["C1"]  # vocabulary is global, not per period
    s = run("criteo", CRITEO, tmp_path / "r4", rows_per_period=4)
    assert s.period_rows == [4, 2]
    assert read_period(tmp_path / "r4", 1)["ts"].to_pylist() == [4, 5]
    meta = json.loads((tmp_path / "r4" / "meta.json").read_text())
    assert meta["period_bounds"] == [0, 4, 6]
    with pytest.raises(DataError, match="num_periods=7 but only 6 valid rows"):
        run("criteo", CRITEO, tmp_path / "p7", num_periods=7)
    with pytest.raises(ConfigError, match="not both"):
        run("criteo", CRITEO, tmp_path / "x", num_periods=2, rows_per_period=2)
    with pytest.raises(ConfigError, match="min_count"):
        run("criteo", CRITEO, tmp_path / "x", min_count=0)


def test_feature_map_round_trip_and_dtypes(tmp_path: Path) -> None:
    out = tmp_path / "criteo"
    run("criteo", CRITEO, out, num_periods=2, min_count=1)
    fm = FeatureMap.load(out)
    again = FeatureMap.from_dict(json.loads((out / "feature_map.json").read_text()))
    assert fm == again and fm.fingerprint() == again.fingerprint()
    assert json.loads((out / "meta.json").read_text())["feature_map_fingerprint"] == fm.fingerprint()
    vocab = json.loads((out / "vocab.json").read_text())["fields"]
    cols = read_all(out)
    for f in fm.categorical_fields:
        assert f.vocab_size == len(vocab[f.name]) + 1
        assert 0 <= cols[f.name].min() and cols[f.name].max() < f.vocab_size
    for k in range(2):
        schema = read_period(out, k).schema
        assert schema.field("label").type == pa.int8()
        assert schema.field("ts").type == pa.int64()
        assert all(schema.field(n).type == pa.int64() for n in fm.categorical_names)
        assert schema.names == ["label", *fm.categorical_names, "ts"]


def test_chunked_writing_and_max_rows(tmp_path: Path) -> None:
    run("criteo", CRITEO, tmp_path / "chunked", chunk_rows=2)
    meta = pq.ParquetFile(tmp_path / "chunked" / "period=0" / "part-00000.parquet").metadata
    assert meta.num_row_groups == 3
    assert read_all(tmp_path / "chunked")["C1"].tolist() == CRITEO_IDS_MIN2["C1"]
    s = run("criteo", CRITEO, tmp_path / "max", max_rows=3, min_count=1)
    assert (s.rows_written, s.rows_read) == (3, 4)  # stops at line 4, the third valid row
    assert s.skipped == {"empty_line": 1}
    vocab = json.loads((tmp_path / "max" / "vocab.json").read_text())["fields"]
    assert vocab["C1"] == ["aa", "bb"]  # counted over the converted rows only


def test_gzip_input(tmp_path: Path) -> None:
    raw = tmp_path / "train.txt.gz"
    with gzip.open(raw, "wb") as f:
        f.write(CRITEO.read_bytes())
    run("criteo", raw, tmp_path / "gz")
    assert read_all(tmp_path / "gz")["C3"].tolist() == CRITEO_IDS_MIN2["C3"]


# ---------------------------------------------------------------- Avazu


def _hours(day: int, hour: int) -> int:
    return int(datetime(2014, 10, day, hour, tzinfo=timezone.utc).timestamp()) // 3600


def test_avazu_ids_periods_and_ts(tmp_path: Path) -> None:
    out = tmp_path / "avazu"
    s = run("avazu", AVAZU, out)
    assert (s.rows_read, s.rows_written) == (10, 6)
    assert s.skipped == {"bad_label": 1, "bad_timestamp": 2, "wrong_column_count": 1}
    assert s.skipped_examples == {"bad_label": [7], "bad_timestamp": [5, 11], "wrong_column_count": [9]}
    assert s.period_rows == [3, 2, 1]  # one period per day: Oct 21, 22, 23
    fm = FeatureMap.load(out)
    assert fm.categorical_names == ["C1", "banner_pos", "site_id", "app_id", "device_type"]  # id, click, hour gone
    cols = read_all(out)
    assert cols["label"].tolist() == [0, 1, 0, 0, 1, 0]
    assert cols["C1"].tolist() == [1, 1, 0, 1, 1, 0]
    assert cols["banner_pos"].tolist() == [1, 0, 1, 1, 1, 1]
    assert cols["site_id"].tolist() == [1, 2, 1, 1, 2, 1]
    assert cols["app_id"].tolist() == [1, 1, 0, 1, 0, 1]
    assert cols["device_type"].tolist() == [1, 1, 0, 1, 1, 1]
    hours = [(21, 0), (21, 0), (21, 5), (22, 0), (22, 23), (23, 10)]
    assert cols["ts"].tolist() == [_hours(d, h) for d, h in hours]
    assert _hours(21, 0) == 392736
    meta = json.loads((out / "meta.json").read_text())
    assert meta["period_keys"] == ["2014-10-21", "2014-10-22", "2014-10-23"]
    assert meta["ts_non_decreasing"] is True
    assert [f.vocab_size for f in fm.fields] == [2, 2, 3, 2, 2]


def test_avazu_row_split_overrides_days(tmp_path: Path) -> None:
    s = run("avazu", AVAZU, tmp_path / "a", num_periods=2)
    assert s.period_rows == [3, 3]
    assert read_period(tmp_path / "a", 1)["ts"].to_pylist() == [_hours(22, 0), _hours(22, 23), _hours(23, 10)]


def test_avazu_days_out_of_order(tmp_path: Path) -> None:
    lines = AVAZU.read_text().splitlines()
    raw = tmp_path / "shuffled.csv"
    raw.write_text("\n".join([lines[0], lines[5], lines[1], lines[9], lines[2]]) + "\n")  # days 22, 21, 23, 21
    s = run("avazu", raw, tmp_path / "a", min_count=1)
    assert s.period_rows == [2, 1, 1]  # periods still by day, in day order
    assert read_period(tmp_path / "a", 0)["ts"].to_pylist() == [_hours(21, 0), _hours(21, 0)]
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["ts_non_decreasing"] is False


def test_avazu_needs_header(tmp_path: Path) -> None:
    raw = tmp_path / "noheader.csv"
    raw.write_text("\n".join(AVAZU.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(DataError, match="noheader.csv: Avazu needs a header"):
        run("avazu", raw, tmp_path / "out")


# ---------------------------------------------------------------- KDD12


def test_kdd12_labels_ids_and_malformed(tmp_path: Path) -> None:
    out = tmp_path / "kdd"
    s = run("kdd12", KDD12, out)
    assert (s.rows_read, s.rows_written, s.fields, s.periods) == (10, 6, 10, 1)
    assert s.skipped == {"bad_count": 2, "bad_label": 1, "wrong_column_count": 1}
    assert s.skipped_examples == {"bad_count": [4, 7], "bad_label": [5], "wrong_column_count": [9]}
    fm = FeatureMap.load(out)
    assert fm.categorical_names == [
        "DisplayURL", "AdID", "AdvertiserID", "Depth", "Position",
        "QueryID", "KeywordID", "TitleID", "DescriptionID", "UserID",
    ]  # fmt: skip
    cols = read_all(out)
    assert cols["label"].tolist() == [0, 1, 0, 1, 0, 0]  # Click 2 of 5 impressions -> 1
    assert cols["DisplayURL"].tolist() == [2, 2, 1, 0, 1, 1]
    assert cols["AdvertiserID"].tolist() == [1, 1, 1, 2, 1, 2]
    assert cols["Depth"].tolist() == [2, 2, 1, 0, 1, 1]
    assert cols["Position"].tolist() == [1, 2, 1, 1, 2, 0]
    assert cols["QueryID"].tolist() == [1, 2, 1, 0, 2, 1]
    assert cols["UserID"].tolist() == [2, 1, 1, 0, 2, 1]
    assert cols["ts"].tolist() == list(range(6))
    meta = json.loads((out / "meta.json").read_text())
    assert "Click > 0" in meta["label_definition"]
    s = run("kdd12", KDD12, tmp_path / "k3", num_periods=3)
    assert s.period_rows == [2, 2, 2]


# ---------------------------------------------------------------- errors and atomicity


def test_missing_empty_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.tsv: raw file not found"):
        run("criteo", tmp_path / "nope.tsv", tmp_path / "out")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.tsv: file is empty"):
        run("criteo", empty, tmp_path / "out")
    header_only = tmp_path / "header_only.csv"
    header_only.write_text(AVAZU.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="header_only.csv: no valid rows"):
        run("avazu", header_only, tmp_path / "out")
    garbage = tmp_path / "garbage.tsv"
    garbage.write_text("1\t2\n\nx\ty\n")
    with pytest.raises(DataError, match=r"garbage.tsv: no valid rows \(empty_line 1, wrong_column_count 2\)"):
        run("criteo", garbage, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_out_root_not_clobbered_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty; pass overwrite=True"):
        run("criteo", CRITEO, out)
    assert (out / "keep.txt").exists()
    run("criteo", CRITEO, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "feature_map.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    run("criteo", CRITEO, empty)  # an empty folder is fine
    assert (empty / "period=0" / "part-00000.parquet").exists()


def test_crash_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(conv_base.FeatureMap, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        run("criteo", CRITEO, tmp_path / "out")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- real samples (beside the checkout)


@pytest.mark.skipif(not CRITEO_SAMPLE.exists(), reason=f"real Criteo sample not found at {CRITEO_SAMPLE}")
def test_real_criteo_sample(tmp_path: Path) -> None:
    s = run("criteo", CRITEO_SAMPLE, tmp_path / "criteo", num_periods=4)
    assert (s.rows_read, s.rows_written, s.fields) == (200, 200, 39)
    assert s.skipped == {}
    assert s.label_rate == pytest.approx(0.245)
    fm = FeatureMap.load(tmp_path / "criteo")
    cols = read_all(tmp_path / "criteo")
    assert cols["label"].mean() == pytest.approx(0.245)
    for f in fm.categorical_fields:
        assert cols[f.name].max() < f.vocab_size
    assert s.period_rows == [50, 50, 50, 50]


@pytest.mark.skipif(not AVAZU_SAMPLE.exists(), reason=f"real Avazu sample not found at {AVAZU_SAMPLE}")
def test_real_avazu_sample(tmp_path: Path) -> None:
    s = run("avazu", AVAZU_SAMPLE, tmp_path / "avazu")
    assert (s.rows_read, s.rows_written, s.fields) == (100, 100, 21)
    assert s.skipped == {}
    assert s.label_rate == pytest.approx(0.2)
    fm = FeatureMap.load(tmp_path / "avazu")
    assert "id" not in fm.categorical_names and "hour" not in fm.categorical_names
    cols = read_all(tmp_path / "avazu")
    assert (np.diff(cols["ts"]) >= 0).all()


# ---------------------------------------------------------------- streaming on pyarrow.csv blocks

def _outputs(root: Path) -> dict:
    """Everything a conversion wrote that does not name its folder."""
    meta = json.loads((root / "meta.json").read_text())
    summary = meta.pop("convert_summary")
    summary.pop("out_root")
    return {"cols": {k: v.tolist() for k, v in read_all(root).items()}, "meta": meta, "summary": summary,
            "vocab": (root / "vocab.json").read_text(), "fm": (root / "feature_map.json").read_text()}


def _messy_criteo(path: Path, n: int = 400) -> Path:
    """Criteo TSV with every kind of bad line spread over many blocks, mixed line ends, no final newline."""
    good = CRITEO.read_text().splitlines()
    lines = []
    for i in range(n):
        line = good[i % len(good)]
        if i % 37 == 5:
            line = "\t".join(["0"] * 39)  # the header-less form of a fine row, all ids "0"
        elif i % 41 == 7:
            line = "\t" * 39  # blank, with the right number of tabs: pyarrow keeps it as a row
        lines.append(line + ("\r\n" if i % 3 == 0 else "\n"))
    path.write_bytes("".join(lines).rstrip("\r\n").encode())
    return path


@pytest.mark.parametrize("block", [64, 700])
def test_small_blocks_give_the_same_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    """Blocks smaller than a line (64 B) or of a few lines: same rows, ids, vocabularies and skip
    line numbers as one block holding the whole file."""
    raw = _messy_criteo(tmp_path / "messy.tsv")
    whole = run("criteo", raw, tmp_path / "whole", num_periods=3)
    monkeypatch.setattr(reader, "BLOCK_BYTES", block)
    small = run("criteo", raw, tmp_path / "small", num_periods=3)
    assert small == whole.__class__(**{**whole.__dict__, "out_root": small.out_root})
    assert _outputs(tmp_path / "small") == _outputs(tmp_path / "whole")
    # the fixture's bad lines (3: empty, 5: columns, 7: integer, 9: label) repeat every 10 lines
    assert whole.skipped_examples["bad_label"][:3] == [9, 19, 29]
    assert 8 in whole.skipped_examples["empty_line"]  # line 8 is "\t" * 39: blank, not a row of empty ids


def test_parallel_parsing_keeps_file_order(tmp_path: Path) -> None:
    raw = _messy_criteo(tmp_path / "messy.tsv", n=300)
    conv = CONVERTERS["criteo"]()
    layout, header = reader.detect(conv, raw, None)
    runs = []
    for threads in (1, 3):
        skips = reader.SkipLog()
        batches = list(reader.iter_valid(conv, raw, layout, header, None, skips, block_bytes=500, threads=threads))
        runs.append(([b.label.tolist() for b in batches], [[t.to_pylist() for t in b.tokens] for b in batches],
                     skips.counts, skips.examples))
        assert len(batches) > 20 and max(len(b) for b in batches) <= 500 // 20  # streamed in small batches
    assert runs[0] == runs[1]


def test_blank_lines_and_delimiters_only(tmp_path: Path) -> None:
    """A comma file's ",,,...,," (no label) is a bad label, an empty or whitespace line is empty."""
    header = ",".join(["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)])
    row = ",".join(["1", *["3"] * 13, *["aa"] * 26])
    raw = tmp_path / "c.csv"
    raw.write_text("\n".join([header, row, "", "," * 39, "  ", "\t", row, " " + "," * 39 + " ", row]) + "\n")
    s = run("criteo", raw, tmp_path / "out", min_count=1)
    assert s.skipped == {"bad_label": 2, "empty_line": 3}
    assert s.skipped_examples == {"bad_label": [4, 8], "empty_line": [3, 5, 6]}
    assert (s.rows_read, s.rows_written) == (8, 3)


def test_lone_cr_line_ends_and_odd_bytes(tmp_path: Path) -> None:
    raw = tmp_path / "mac.tsv"
    raw.write_bytes(CRITEO.read_bytes().replace(b"\n", b"\r").replace(b"\taa\t", b"\ta\xffa\t", 1))
    s = run("criteo", raw, tmp_path / "out", min_count=1)
    assert (s.rows_read, s.rows_written) == (10, 6)  # same lines as the \n file, one token changed
    assert s.skipped_examples == {"bad_integer": [7], "bad_label": [9], "empty_line": [3], "wrong_column_count": [5]}
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())["fields"]
    assert "a\ufffda" in vocab["C1"]  # an undecodable byte is one odd token, not a crash


def test_one_character_delimiter_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="delimiter must be one character"):
        run("criteo", CRITEO, tmp_path / "out", delimiter="::")


_PEAK = """
import sys, pyarrow as pa
from crossadapt.data.converters import convert, reader
reader.BLOCK_BYTES = 1 << 16
convert("criteo", sys.argv[1], sys.argv[2], verbose=False, chunk_rows=2048, num_periods=2)
print(pa.default_memory_pool().max_memory())
"""


def test_arrow_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """8x the lines, the same peak of Arrow's memory pool (blocks, batches, row groups): the file is
    streamed. The vocabularies are the same size here (the lines repeat). Both files span far more
    64 KiB blocks than are parsed ahead at once, so both peaks are the steady state."""
    lines = [line for line in CRITEO.read_text().splitlines() if line.count("\t") == 39]
    peaks = []
    for n in (16_000, 128_000):
        raw = tmp_path / f"c{n}.tsv"
        raw.write_text("\n".join(lines[i % len(lines)] for i in range(n)) + "\n")
        out = subprocess.run([sys.executable, "-c", _PEAK, str(raw), str(tmp_path / f"o{n}")], check=True,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        peaks.append(int(out.stdout.split()[-1]))
    # Held whole, the large file's 39 string columns would need 4-byte offsets per value alone: more
    # than twice the small run's peak. Streamed, the peak stays put.
    assert 128_000 * 39 * 4 > 2 * peaks[0], peaks
    assert peaks[1] <= 1.25 * peaks[0], peaks
