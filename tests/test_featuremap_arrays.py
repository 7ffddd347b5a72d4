import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossadapt.data import arrays as A
from crossadapt.errors import DataError, FeatureMapMismatch
from crossadapt.featuremap import FeatureMap, FieldSpec

FM = FeatureMap("toy", (FieldSpec("a", vocab_size=5), FieldSpec("b", vocab_size=3), FieldSpec("x", type="numeric")))


def write_period(root, k, table):
    d = root / f"period={k}"
    d.mkdir(parents=True)
    pq.write_table(table, d / "part-00000.parquet")


def good_table(n=4, offset=0):
    return pa.table({
        "label": pa.array([1, 0] * (n // 2), pa.int8()),
        "a": pa.array(np.arange(n) % 5, pa.int64()),
        "b": pa.array(np.arange(n) % 3, pa.int32()),
        "x": pa.array(np.linspace(0, 1, n), pa.float32()),
        "ts": pa.array(np.arange(n) + offset, pa.int64()),
    })


def test_feature_map_round_trip_and_fingerprint(tmp_path):
    path = FM.save(tmp_path)
    back = FeatureMap.load(path)
    assert back == FM and back.fingerprint() == FM.fingerprint()
    assert FM.vocab_sizes == [5, 3] and FM.numeric_names == ["x"] and FM.num_fields == 3


def test_feature_map_mismatch_names_field():
    other = FeatureMap("toy", (FieldSpec("a", vocab_size=6), FieldSpec("b", vocab_size=3), FieldSpec("x", type="numeric")))
    with pytest.raises(FeatureMapMismatch, match="field 'a' differs"):
        FM.check_compatible(other, "checkpoint")


def test_bad_feature_maps():
    with pytest.raises(DataError, match="duplicate"):
        FeatureMap("t", (FieldSpec("a", vocab_size=2), FieldSpec("a", vocab_size=2)))
    with pytest.raises(DataError, match="oov_index"):
        FieldSpec("a", vocab_size=2, oov_index=5)


def test_read_periods_in_time_order(tmp_path):
    write_period(tmp_path, 0, good_table(4, 0))
    write_period(tmp_path, 1, good_table(4, 4))
    FM.save(tmp_path)
    a = A.read_periods(tmp_path, [0, 1])
    assert a["ids"].shape == (8, 2) and a["dense"].shape == (8, 1) and a["label"].dtype == np.float32
    assert A.list_periods(tmp_path) == [0, 1]
    assert a["ids"][:, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda t: t.drop_columns(["b"]), r"missing column\(s\) \['b'\]"),
        (lambda t: t.set_column(1, "a", pa.array(["u", "v", "w", "z"])), "column 'a' has dtype string"),
        (lambda t: t.set_column(1, "a", pa.array([0, 1, 9, 2], pa.int64())), "column 'a' row 2: id 9 outside"),
        (lambda t: t.set_column(0, "label", pa.array([0, 2, 1, 0], pa.int8())), "row 1: label 2"),
        (lambda t: t.set_column(3, "x", pa.array([0, np.nan, 1, 1], pa.float32())), "column 'x' row 1"),
    ],
)
def test_bad_parquet_is_named(tmp_path, mutate, match):
    write_period(tmp_path, 0, mutate(good_table()))
    with pytest.raises(DataError, match=match) as e:
        A.read_periods(tmp_path, [0], FM)
    assert "period=0" in str(e.value)


def test_missing_period_and_sampling(tmp_path):
    write_period(tmp_path, 0, good_table())
    with pytest.raises(DataError, match="period 3 has no parquet"):
        A.period_files(tmp_path, [3])
    idx = A.sample_index(1000, 0.1, seed=1)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, A.sample_index(1000, 0.1, seed=1))
