"""``data.source: table``: any CSV/TSV/parquet log described by a schema, to encoded periods.

Small hand-written logs with known answers: which row lands in which period, which ids are OOV,
which lines are skipped and why, and the one clear error of a schema that does not fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossadapt.config import DataConfig, TableSchema, load_config
from crossadapt.data import arrays as A
from crossadapt.data.converters.criteo import int_token
from crossadapt.data.converters.table import convert_table, is_current, table_spec
from crossadapt.data.schema_rules import Period, parse_period, parse_rule
from crossadapt.errors import ConfigError, DataError
from crossadapt.featuremap import FeatureMap

DAY = 86400
T0 = 1_700_006_400  # a UTC midnight (2023-11-15)


def data_cfg(raw, root, window=(2, 3), **schema) -> DataConfig:
    base = {"label": "click", "categorical": ("user", "item"), "time": "t", "period": "1d"}
    return DataConfig(source="table", raw_path=str(raw), root=str(root), teacher_periods=(0, window[0]),
                      window_periods=window, test_periods=(window[1], window[1] + 1),
                      stream_periods=(window[1] + 1, window[1] + 2), min_count=1,
                      schema=TableSchema(**{**base, **schema}))


def convert(cfg: DataConfig, **kw):
    summary = convert_table(table_spec(cfg), cfg.root, overwrite=True, verbose=False, **kw)
    return summary, FeatureMap.load(cfg.root)


def period(root, k: int) -> pa.Table:
    return pq.read_table(Path(root) / f"period={k}" / "part-00000.parquet")


# ---------------------------------------------------------------- schema forms


def test_periods_and_rules_parse():
    assert parse_period("90s") == Period("seconds", 90)
    assert parse_period("30m") == Period("seconds", 1800)
    assert parse_period("1d") == Period("seconds", DAY)
    assert parse_period(500) == Period("rows", 500) == parse_period("500")
    ge, gt = parse_rule(">= 4"), parse_rule("> 0.5")
    assert [ge(v) for v in ("4", "4.0", "3.99", "5")] == [1, 1, 0, 1]
    assert [gt(v) for v in ("0.5", "0.51")] == [0, 1]
    member = parse_rule("in [click, 'purchase', 3]")
    assert [member(v) for v in ("click", "purchase", "view", "3.0", " click ")] == [1, 1, 0, 1, 1]
    assert [parse_rule("== yes")(v) for v in ("yes", "no")] == [1, 0]


@pytest.mark.parametrize("schema, key", [
    ({"period": "1w"}, "data.schema.period"),
    ({"period": 0}, "data.schema.period"),
    ({"positive": "~ 4"}, "data.schema.positive"),
    ({"positive": ">= high"}, "data.schema.positive"),
    ({"time": "", "period": "1d"}, "data.schema.period"),
    ({"categorical": ["user", "user"]}, "data.schema.categorical"),
    ({"numeric": ["user"]}, "data.schema.categorical and data.schema.numeric"),
    ({"label": ""}, "data.schema.label"),
])
def test_schema_forms_are_checked_at_load(tmp_path, schema, key):
    base = {"label": "click", "categorical": ["user"], "time": "t", "period": "1d"}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, {"data.source": "table", "data.raw_path": "x.csv", "data.schema": {**base, **schema}})


def test_teacher_import_needs_its_files_and_a_table_source():
    with pytest.raises(ConfigError, match=r"teacher_import\.tables"):
        load_config(None, {"teacher_import.program": "t.pt"})
    with pytest.raises(ConfigError, match="needs data.source table"):
        load_config(None, {"teacher_import": {"program": "t.pt", "tables": "t", "vocabularies": "v"}})


# ---------------------------------------------------------------- periods, order, skipped rows


def test_duration_periods_late_rows_and_skip_reasons(tmp_path):
    rows = ["t,user,item,click",
            f"{T0 + 10},u1,i1,1",            # line 2: period 0
            f"{T0 + 20},u2,i1,0",            # line 3
            f"{T0 + DAY + 5},u1,i2,0",       # line 4: period 1
            f"{T0 + 30},u3,i1,1",            # line 5: late by one period: kept, in period 0
            "yesterday,u1,i1,1",             # line 6: bad_timestamp
            f"{T0 + 2 * DAY},u1,i1,2",       # line 7: bad_label (not 0/1, no rule)
            "",                              # line 8: empty_line
            f"{T0 + 2 * DAY + 1},u2,i2,1",   # line 9: period 2
            f"{T0 + 3 * DAY},u4",            # line 10: wrong_column_count
            f"{T0 + 4 * DAY},u1,i1,0",       # line 11: period 4 (period 3 has no rows)
            f"{T0 + 40},u1,i1,1",            # line 12: 4 periods late: late_row
            f"{T0 - 1},u1,i1,1"]             # line 13: before period 0's day: before_first_period
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    cfg = data_cfg(tmp_path / "log.csv", tmp_path / "out")
    s, fm = convert(cfg)
    assert s.rows_read == 12 and s.rows_written == 6
    assert s.skipped == {"bad_label": 1, "bad_timestamp": 1, "before_first_period": 1, "empty_line": 1,
                         "late_row": 1, "wrong_column_count": 1}
    assert s.skipped_examples == {"bad_label": [7], "bad_timestamp": [6], "before_first_period": [13],
                                  "empty_line": [8], "late_row": [12], "wrong_column_count": [10]}
    assert s.period_rows == [3, 1, 1, 0, 1]
    # period 0 in arrival order, the late row last; ts in unix milliseconds
    assert period(cfg.root, 0).column("ts").to_pylist() == [1000 * (T0 + 10), 1000 * (T0 + 20), 1000 * (T0 + 30)]
    assert period(cfg.root, 3).num_rows == 0 and period(cfg.root, 3).schema.names == ["label", "user", "item", "ts"]
    meta = json.loads((Path(cfg.root) / "meta.json").read_text())
    assert meta["time_format"] == "unix_s" and meta["rows_out_of_order"] == 1
    assert meta["period_starts"][:2] == ["2023-11-15T00:00:00+00:00", "2023-11-16T00:00:00+00:00"]


def test_late_periods_zero_skips_every_straggler(tmp_path):
    rows = ["t,user,item,click", f"{T0},u1,i1,1", f"{T0 + DAY},u1,i1,0", f"{T0 + 1},u2,i2,1"]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    s, _ = convert(data_cfg(tmp_path / "log.csv", tmp_path / "out", late_periods=0))
    assert s.skipped == {"late_row": 1} and s.period_rows == [1, 1]


def test_row_count_periods_without_a_time_column(tmp_path):
    rows = ["user,item,click"] + [f"u{k % 3},i{k % 2},{k % 2}" for k in range(7)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    s, _ = convert(data_cfg(tmp_path / "log.csv", tmp_path / "out", time="", period=3))
    assert s.period_rows == [3, 3, 1]
    assert period(tmp_path / "out", 1).column("ts").to_pylist() == [3, 4, 5]  # the valid-row index


def test_time_formats_give_the_same_milliseconds(tmp_path):
    instants = [T0 + 3600, T0 + DAY + 7200]
    forms = {"unix_s": [str(t) for t in instants], "unix_ms": [str(1000 * t + 250) for t in instants],
             "iso8601": ["2023-11-15T01:00:00Z", "2023-11-16 02:00:00+00:00"]}
    want = {"unix_s": [1000 * t for t in instants], "unix_ms": [1000 * t + 250 for t in instants],
            "iso8601": [1000 * t for t in instants]}
    for fmt, values in forms.items():
        raw = tmp_path / f"{fmt}.csv"
        raw.write_text("t,user,item,click\n" + "".join(f"{v},u1,i1,1\n" for v in values))
        s, _ = convert(data_cfg(raw, tmp_path / fmt))  # time_format auto: detected, then recorded
        got = period(tmp_path / fmt, 0).column("ts").to_pylist() + period(tmp_path / fmt, 1).column("ts").to_pylist()
        assert got == want[fmt], fmt
        assert json.loads((tmp_path / fmt / "meta.json").read_text())["time_format"] == fmt


# ---------------------------------------------------------------- vocabularies, fields


def test_vocabularies_come_from_the_window_and_before_only(tmp_path):
    # days 0-1 history, day 2 window (vocabularies from days 0-2), day 3 test: u9 and i9 first appear on day 3
    rows = ["t,user,item,click"]
    rows += [f"{T0 + d * DAY + k},u{k % 2},i{k % 3},{k % 2}" for d in range(3) for k in range(4)]
    rows += [f"{T0 + 3 * DAY},u9,i1,1", f"{T0 + 3 * DAY + 1},u0,i9,0"]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    cfg = data_cfg(tmp_path / "log.csv", tmp_path / "out", window=(2, 3))
    s, fm = convert(cfg)
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert vocab["fields"] == {"user": ["u0", "u1"], "item": ["i0", "i1", "i2"]} and vocab["vocab_periods"] == [0, 3]
    assert fm.vocab_sizes == [3, 4]
    test = period(cfg.root, 3)
    assert test.column("user").to_pylist() == [0, 1] and test.column("item").to_pylist() == [2, 0]  # u9, i9: OOV
    # min_count 5 keeps only i0 (5 times in days 0-2) ... counted in the vocabulary periods only
    cfg5 = DataConfig(**{**cfg.__dict__, "min_count": 5, "root": str(tmp_path / "out5")})
    convert(cfg5)
    assert json.loads((tmp_path / "out5" / "vocab.json").read_text())["fields"] == {"user": ["u0", "u1"],
                                                                                   "item": ["i0"]}


def test_numeric_columns_none_and_log(tmp_path):
    rows = ["t,user,price,click", f"{T0},u1,3.5,1", f"{T0 + 1},u1,,0", f"{T0 + 2},u2,abc,1", f"{T0 + 3},u2,100,0"]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    s, fm = convert(data_cfg(tmp_path / "log.csv", tmp_path / "none", categorical=("user",), numeric=("price",)))
    assert s.skipped == {"bad_number:price": 1} and s.skipped_examples == {"bad_number:price": [4]}
    assert fm.numeric_names == ["price"] and fm.categorical_names == ["user"]
    a = A.read_periods(tmp_path / "none", [0], fm)
    assert a["dense"].ravel().tolist() == [3.5, 0.0, 100.0]  # missing: 0
    s, fm = convert(data_cfg(tmp_path / "log.csv", tmp_path / "log", categorical=("user",), numeric=("price",),
                             numeric_transform="log"))
    assert fm.categorical_names == ["user", "price"] and not fm.numeric_fields
    assert [f.encoder for f in fm.fields] == ["vocab", "log_square_bucket"]
    vocab = json.loads((tmp_path / "log" / "vocab.json").read_text())["fields"]["price"]
    assert sorted(vocab) == sorted({int_token("3.5"), int_token("100")})  # b1, b21; missing -> OOV


def test_drop_and_implicit_categorical_columns(tmp_path):
    rows = ["t,user,leak,item,click", f"{T0},u1,1,i1,1", f"{T0 + 1},u2,0,i2,0"]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    _, fm = convert(data_cfg(tmp_path / "log.csv", tmp_path / "out", categorical=(), drop=("leak",)))
    assert fm.categorical_names == ["user", "item"]  # header order, label, time and drop excluded


def test_glob_of_csv_tsv_and_parquet_equals_one_csv(tmp_path):
    rows = [(T0 + k * 3600 * 5, f"u{k % 4}", f"i{k % 3}", k % 2) for k in range(20)]
    one = tmp_path / "all.csv"
    one.write_text("t,user,item,click\n" + "".join(f"{t},{u},{i},{c}\n" for t, u, i, c in rows))
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "a.csv").write_text("t,user,item,click\n" + "".join(f"{t},{u},{i},{c}\n" for t, u, i, c in rows[:7]))
    (parts / "b.tsv").write_text("user\tclick\tt\titem\n" + "".join(f"{u}\t{c}\t{t}\t{i}\n" for t, u, i, c in rows[7:14]))
    pq.write_table(pa.table({"t": [r[0] for r in rows[14:]], "user": [r[1] for r in rows[14:]],
                             "item": [r[2] for r in rows[14:]], "click": [r[3] for r in rows[14:]]}),
                   parts / "c.parquet")
    s1, fm1 = convert(data_cfg(one, tmp_path / "one"))
    s2, fm2 = convert(data_cfg(parts / "*", tmp_path / "glob"))
    assert fm1 == fm2 and s1.period_rows == s2.period_rows and s2.rows_written == 20
    for k in range(s1.periods):
        assert period(tmp_path / "one", k).equals(period(tmp_path / "glob", k)), k


def test_quoted_values_keep_their_delimiter(tmp_path):
    (tmp_path / "log.csv").write_text(f't,user,item,click\n{T0},"Doe, J",i1,1\n{T0 + 1},"Doe, J",i2,0\n')
    convert(data_cfg(tmp_path / "log.csv", tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "vocab.json").read_text())["fields"]["user"] == ["Doe, J"]


def test_reconverted_only_when_something_changed(tmp_path):
    (tmp_path / "log.csv").write_text(f"t,user,item,click\n{T0},u1,i1,1\n{T0 + DAY},u2,i2,0\n")
    cfg = data_cfg(tmp_path / "log.csv", tmp_path / "out")
    convert(cfg)
    assert is_current(cfg.root, table_spec(cfg))
    assert not is_current(cfg.root, table_spec(DataConfig(**{**cfg.__dict__, "min_count": 3})))
    assert not is_current(cfg.root, table_spec(DataConfig(**{**cfg.__dict__, "window_periods": (1, 2),
                                                            "teacher_periods": (0, 1)})))
    (tmp_path / "log.csv").write_text(f"t,user,item,click\n{T0},u1,i1,0\n{T0 + DAY},u2,i2,0\n")
    assert not is_current(cfg.root, table_spec(cfg))


# ---------------------------------------------------------------- schemas that do not fit: one clear error


def _raw(tmp_path, text: str) -> Path:
    (tmp_path / "log.csv").write_text(text)
    return tmp_path / "log.csv"


def test_missing_column_names_the_column_and_the_file(tmp_path):
    raw = _raw(tmp_path, f"t,user,click\n{T0},u1,1\n")
    with pytest.raises(DataError, match=r"data\.schema\.categorical: column 'item' is not in .*log\.csv"):
        convert(data_cfg(raw, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_label_that_is_not_binary_needs_a_rule(tmp_path):
    raw = _raw(tmp_path, "t,user,item,click\n" + "".join(f"{T0 + k},u1,i1,{1 + k % 5}\n" for k in range(10)))
    with pytest.raises(DataError, match=r"data\.schema\.label: column 'click' of .*log\.csv is not 0/1 .*positive"):
        convert(data_cfg(raw, tmp_path / "out"))
    s, _ = convert(data_cfg(raw, tmp_path / "out", positive=">= 4"))
    assert s.rows_written == 10 and s.label_rate == pytest.approx(0.4)


def test_unreadable_time_names_the_column(tmp_path):
    raw = _raw(tmp_path, "t,user,item,click\n" + "".join(f"15/11/2023 0{k}:00,u1,i1,1\n" for k in range(5)))
    with pytest.raises(DataError, match=r"data\.schema\.time: cannot read column 't' of .*log\.csv as iso8601"):
        convert(data_cfg(raw, tmp_path / "out"))
    ok = _raw(tmp_path, f"t,user,item,click\n{T0},u1,i1,1\n")
    with pytest.raises(DataError, match=r"data\.schema\.time: cannot read column 't' .* as iso8601"):
        convert(data_cfg(ok, tmp_path / "out", time_format="iso8601"))


def test_a_numeric_column_of_text_names_the_column(tmp_path):
    raw = _raw(tmp_path, "t,user,item,click\n" + "".join(f"{T0 + k},u1,i{k},1\n" for k in range(4)))
    with pytest.raises(DataError, match=r"data\.schema\.numeric: column 'item' .* is not numeric"):
        convert(data_cfg(raw, tmp_path / "out", categorical=("user",), numeric=("item",)))


def test_unknown_drop_column_is_an_error(tmp_path):
    raw = _raw(tmp_path, f"t,user,item,click\n{T0},u1,i1,1\n")
    with pytest.raises(DataError, match=r"data\.schema\.drop: column 'leak' is not in"):
        convert(data_cfg(raw, tmp_path / "out", drop=("leak",)))


def test_no_file_matches_the_glob(tmp_path):
    with pytest.raises(DataError, match=r"data\.raw_path: no file matches"):
        convert(data_cfg(tmp_path / "nothing*.csv", tmp_path / "out"))


def test_encoded_ids_are_in_range_for_every_period(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["t,user,item,click"] + [f"{T0 + int(t)},u{rng.integers(50)},i{rng.integers(20)},{rng.integers(2)}"
                                    for t in np.sort(rng.integers(0, 6 * DAY, 500))]
    raw = _raw(tmp_path, "\n".join(rows) + "\n")
    cfg = data_cfg(raw, tmp_path / "out", window=(3, 4))
    s, fm = convert(cfg)
    a = A.read_periods(cfg.root, range(s.periods), fm)  # validates every id against its vocabulary
    assert A.num_rows(a) == 500 and s.periods == 6
