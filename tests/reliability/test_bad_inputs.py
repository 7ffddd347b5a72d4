"""Bad input, one kind per test: a CrossAdaptError naming the file, row, column or key (or a counted
skip in a converter summary), never a traceback from deep inside torch or pyarrow, and never a
half-written output.

Everything is built in ``tmp_path``; nothing here starts Ray.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from crossadapt.config import ModelConfig, load_config
from crossadapt.data import arrays as A
from crossadapt.data.converters import ConvertSummary, convert
from crossadapt.errors import CheckpointError, ConfigError, CrossAdaptError, DataError, FeatureMapMismatch
from crossadapt.featuremap import FEATURE_MAP_FILE, FeatureMap, FieldSpec
from crossadapt.models import build_model, load_checkpoint, read_checkpoint, save_checkpoint
from crossadapt.projection.actors import open_checkpoint_tensor

# ---------------------------------------------------------------- helpers

CRITEO_INTS = [f"I{i}" for i in range(1, 14)]
CRITEO_CATS = [f"C{i}" for i in range(1, 27)]


def criteo_line(label: str = "0", ints: list[str] | None = None, cats: list[str] | None = None) -> str:
    ints = [str(i) for i in range(13)] if ints is None else ints
    cats = [f"c{i}" for i in range(26)] if cats is None else cats
    return "\t".join([label, *ints, *cats])


GOOD_CRITEO = [criteo_line(str(i % 2)) for i in range(6)]  # lines 1-6 of every Criteo file below


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def convert_quiet(source: str, raw: Path, out: Path, **kw) -> ConvertSummary:
    return convert(source, raw, out, min_count=1, verbose=False, **kw)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to prove it was left untouched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden_leftovers(folder: Path) -> list[str]:
    """Temp files and staging folders (dot-names) that a failed write would leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_skipped(summary: ConvertSummary, reason: str, lines: list[int], rows_written: int) -> None:
    """A counted skip: the reason, its count and line numbers in the summary, and the good rows written."""
    assert summary.skipped == {reason: len(lines)}
    assert summary.skipped_examples[reason] == lines
    assert summary.rows_written == rows_written
    assert reason in summary.format()  # the console summary names it too
    fm = FeatureMap.load(summary.out_root)
    assert A.num_rows(A.read_periods(summary.out_root, A.list_periods(summary.out_root), fm)) == rows_written


FM = FeatureMap("toy", (FieldSpec("a", vocab_size=5), FieldSpec("b", vocab_size=3), FieldSpec("x", type="numeric")))


def good_columns(n: int = 6) -> dict[str, pa.Array]:
    return {
        "label": pa.array([i % 2 for i in range(n)], pa.int8()),
        "a": pa.array([i % 5 for i in range(n)], pa.int64()),
        "b": pa.array([i % 3 for i in range(n)], pa.int32()),
        "x": pa.array(np.linspace(0, 1, n), pa.float32()),
        "ts": pa.array(np.arange(n), pa.int64()),
    }


def write_period(root: Path, k: int, **changes: pa.Array | None) -> Path:
    """``root/period=k/part-00000.parquet`` from the good columns with ``changes`` (None drops a column)."""
    cols = good_columns()
    for name, col in changes.items():
        if col is None:
            del cols[name]
        else:
            cols[name] = col
    path = root / f"period={k}" / "part-00000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


def data_root(tmp_path: Path, **changes: pa.Array | None) -> tuple[Path, Path]:
    """A data folder with the feature map and period 0 (with ``changes``); returns (root, parquet file)."""
    root = tmp_path / "data"
    path = write_period(root, 0, **changes)
    FM.save(root)
    return root, path


def expect(exc: type[CrossAdaptError], fn, *names: str) -> str:
    """Call ``fn``; it must raise ``exc`` whose message contains every one of ``names``."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    for name in names:
        assert name in msg, f"{name!r} not named in: {msg}"
    return msg


# ---------------------------------------------------------------- raw logs: counted skips


def test_raw_line_with_too_few_columns_is_counted_and_skipped(tmp_path: Path) -> None:
    raw = write_lines(tmp_path / "few.tsv", GOOD_CRITEO + ["0\t1\t2", criteo_line()[:-4], criteo_line()])
    assert_skipped(convert_quiet("criteo", raw, tmp_path / "out"), "wrong_column_count", [7, 8], 7)


def test_raw_line_with_too_many_columns_is_counted_and_skipped(tmp_path: Path) -> None:
    raw = write_lines(tmp_path / "many.tsv", GOOD_CRITEO + [criteo_line() + "\textra", criteo_line()])
    assert_skipped(convert_quiet("criteo", raw, tmp_path / "out"), "wrong_column_count", [7], 7)


def test_raw_non_numeric_integer_feature_is_counted_and_skipped(tmp_path: Path) -> None:
    bad = [criteo_line(ints=["abc", *["1"] * 12]), criteo_line(ints=[*["1"] * 12, "0x1F"])]
    raw = write_lines(tmp_path / "ints.tsv", GOOD_CRITEO + bad)
    assert_skipped(convert_quiet("criteo", raw, tmp_path / "out"), "bad_integer", [7, 8], 6)


def test_raw_non_finite_integer_feature_is_counted_and_skipped(tmp_path: Path) -> None:
    bad = [criteo_line(ints=[v, *["1"] * 12]) for v in ("nan", "inf", "-inf", "1e400")]
    raw = write_lines(tmp_path / "nonfinite.tsv", GOOD_CRITEO + bad)
    assert_skipped(convert_quiet("criteo", raw, tmp_path / "out"), "bad_integer", [7, 8, 9, 10], 6)


def test_raw_label_outside_0_1_is_counted_and_skipped(tmp_path: Path) -> None:
    bad = [criteo_line(label) for label in ("2", "-1", "0.5", "yes", "")]
    raw = write_lines(tmp_path / "labels.tsv", GOOD_CRITEO + bad)
    assert_skipped(convert_quiet("criteo", raw, tmp_path / "out"), "bad_label", [7, 8, 9, 10, 11], 6)


def test_raw_avazu_malformed_hour_is_counted_and_skipped(tmp_path: Path) -> None:
    lines = ["id,click,hour,C1,site_id"] + [f"{i},{i % 2},141021{i:02d},a,s{i}" for i in range(5)]
    lines += ["9,0,14xx2100,a,s1", "10,0,14133100,a,s1", "11,0,1410210,a,s1"]  # not digits, month 13, 7 chars
    raw = write_lines(tmp_path / "avazu.csv", lines)
    assert_skipped(convert_quiet("avazu", raw, tmp_path / "out"), "bad_timestamp", [7, 8, 9], 5)


def test_raw_kdd12_clicks_above_impressions_are_counted_and_skipped(tmp_path: Path) -> None:
    ids = "\t".join(str(i) for i in range(10))
    lines = [f"{c}\t{i}\t{ids}" for c, i in [(0, 1), (1, 2), (0, 3)]] + [f"3\t2\t{ids}", f"1\t0\t{ids}"]
    raw = write_lines(tmp_path / "kdd.tsv", lines)
    assert_skipped(convert_quiet("kdd12", raw, tmp_path / "out"), "bad_count", [4, 5], 3)


# ---------------------------------------------------------------- raw logs: clear errors, nothing written


def test_empty_raw_file_names_the_file_and_writes_nothing(tmp_path: Path) -> None:
    raw = tmp_path / "empty.tsv"
    raw.write_text("\n  \n")
    expect(DataError, lambda: convert_quiet("criteo", raw, tmp_path / "out"), "empty.tsv", "empty")
    assert not (tmp_path / "out").exists() and hidden_leftovers(tmp_path) == []


def test_raw_file_without_a_valid_row_keeps_the_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert_quiet("criteo", write_lines(tmp_path / "good.tsv", GOOD_CRITEO), out)
    before = snapshot(out)
    raw = write_lines(tmp_path / "allbad.tsv", ["1\t2", criteo_line("7"), ""])
    msg = expect(DataError, lambda: convert_quiet("criteo", raw, out, overwrite=True), "allbad.tsv", "no valid rows")
    assert "bad_label 1" in msg and "wrong_column_count 1" in msg  # what was wrong, counted
    assert snapshot(out) == before and hidden_leftovers(tmp_path) == []


def test_truncated_gzip_raw_file_names_the_file_and_writes_nothing(tmp_path: Path) -> None:
    raw = tmp_path / "train.gz"
    raw.write_bytes(gzip.compress(("\n".join(GOOD_CRITEO * 50) + "\n").encode())[:60])
    expect(DataError, lambda: convert_quiet("criteo", raw, tmp_path / "out"), "train.gz", "cannot read")
    assert not (tmp_path / "out").exists() and hidden_leftovers(tmp_path) == []


def test_raw_header_with_wrong_columns_names_the_file(tmp_path: Path) -> None:
    header = ",".join(["label", *CRITEO_INTS[:-1], "Ixx", *CRITEO_CATS])
    raw = write_lines(tmp_path / "hdr.csv", [header, criteo_line().replace("\t", ",")])
    expect(DataError, lambda: convert_quiet("criteo", raw, tmp_path / "out"), "hdr.csv", "column 14 is 'Ixx'", "'I13'")
    assert not (tmp_path / "out").exists() and hidden_leftovers(tmp_path) == []


def test_non_empty_output_folder_is_not_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"auc": 0.8}')
    raw = write_lines(tmp_path / "good.tsv", GOOD_CRITEO)
    expect(DataError, lambda: convert_quiet("criteo", raw, out), str(out), "overwrite=True")
    assert snapshot(out) == {"results.json": b'{"auc": 0.8}'} and hidden_leftovers(tmp_path) == []


# ---------------------------------------------------------------- encoded parquet


def test_parquet_missing_a_field_names_file_and_column(tmp_path: Path) -> None:
    root, path = data_root(tmp_path, b=None)
    expect(DataError, lambda: A.read_periods(root, [0]), str(path), "missing column", "'b'")


def test_parquet_id_column_with_wrong_dtype_names_file_column_and_dtype(tmp_path: Path) -> None:
    root, path = data_root(tmp_path, a=pa.array(list("uvwxyz")))
    expect(DataError, lambda: A.read_periods(root, [0]), str(path), "column 'a'", "dtype string")


def test_parquet_float_label_names_file_and_column(tmp_path: Path) -> None:
    root, path = data_root(tmp_path, label=pa.array([0.0, 1.0] * 3, pa.float64()))
    expect(DataError, lambda: A.read_periods(root, [0]), str(path), "column 'label'", "dtype double")


def test_parquet_label_outside_0_1_names_file_column_and_row(tmp_path: Path) -> None:
    root, path = data_root(tmp_path, label=pa.array([0, 1, 0, 2, 1, -1], pa.int8()))
    msg = expect(DataError, lambda: A.read_periods(root, [0]), str(path), "column 'label'", "row 3", "label 2")
    assert "2 such rows" in msg


@pytest.mark.parametrize("value,shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf"), (1e300, "1e+300")])
def test_parquet_non_finite_numeric_names_file_column_and_row(tmp_path: Path, value: float, shown: str) -> None:
    # 1e300 is finite in float64 but not in the contract's float32: it must not pass as inf silently.
    root, path = data_root(tmp_path, x=pa.array([0.0, 0.5, 1.0, 1.0, value, 0.0], pa.float64()))
    expect(DataError, lambda: A.read_periods(root, [0]), str(path), "column 'x'", "row 4", f"value {shown}")


def test_parquet_null_id_names_file_column_and_row(tmp_path: Path) -> None:
    # Arrow turns an int column with nulls into float64 NaN: that must read as "missing", not "dtype".
    root, path = data_root(tmp_path, b=pa.array([0, 1, None, 2, None, 0], pa.int32()))
    msg = expect(DataError, lambda: A.read_periods(root, [0]), str(path), "column 'b'", "row 2", "missing (null)")
    assert "2 such rows" in msg


def test_parquet_null_label_names_file_column_and_row(tmp_path: Path) -> None:
    root, path = data_root(tmp_path, label=pa.array([0, 1, 0, 1, 0, None], pa.int8()))
    expect(DataError, lambda: A.read_periods(root, [0]), str(path), "column 'label'", "row 5", "missing (null)")


def test_ids_beyond_the_vocabulary_name_file_column_and_row(tmp_path: Path) -> None:
    # The feature map next to the data says vocab_size 5 for 'a': id 5 and above are not in it.
    root, path = data_root(tmp_path, a=pa.array([0, 4, 1, 5, 2, 99], pa.int64()))
    msg = expect(DataError, lambda: A.read_periods(root, [0]), str(path), "column 'a'", "row 3", "id 5", "[0, 5)")
    assert "2 such rows" in msg


def test_negative_ids_name_file_column_and_row(tmp_path: Path) -> None:
    root, path = data_root(tmp_path, b=pa.array([0, 1, 2, 0, -1, 1], pa.int32()))
    expect(DataError, lambda: A.read_periods(root, [0]), str(path), "column 'b'", "row 4", "id -1")


def test_ids_in_a_later_file_report_the_row_within_that_file(tmp_path: Path) -> None:
    root, _ = data_root(tmp_path)
    path = write_period(root, 1, a=pa.array([0, 1, 2, 3, 4, 7], pa.int64()))
    expect(DataError, lambda: A.read_periods(root, [0, 1]), str(path), "period=1", "column 'a'", "row 5", "id 7")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_unreadable_parquet_names_the_file(tmp_path: Path, damage: str) -> None:
    root, path = data_root(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"garbage": b"PAR1 not really" * 20, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    expect(DataError, lambda: A.read_periods(root, [0]), str(path), "not a readable parquet file")


def test_parquet_with_corrupted_pages_but_a_valid_footer_names_the_file(tmp_path: Path) -> None:
    root, path = data_root(tmp_path)
    data = bytearray(path.read_bytes())
    data[4:64] = bytes(b ^ 0xFF for b in data[4:64])  # the first page header; the footer still parses
    path.write_bytes(bytes(data))
    pq.ParquetFile(path)  # proof that the footer is intact: only reading the pages fails
    expect(DataError, lambda: A.read_periods(root, [0]), str(path), "corrupted parquet data")


def test_missing_period_names_the_folder_and_what_exists(tmp_path: Path) -> None:
    root, _ = data_root(tmp_path)
    expect(DataError, lambda: A.read_periods(root, [0, 3]), "period=3", "available: [0]")


def test_ray_data_reader_names_a_broken_file_before_any_worker_starts(tmp_path: Path) -> None:
    from crossadapt.data import ray_data

    root, _ = data_root(tmp_path)
    path = write_period(root, 1, x=pa.array(list("abcdef")))
    expect(DataError, lambda: ray_data.read_logs(root, [0, 1], FM), str(path), "column 'x'", "dtype string")


@pytest.mark.parametrize("r", [0.0, -0.5, 1.5])
def test_sample_ratio_outside_0_1_given_to_the_data_layer(tmp_path: Path, r: float) -> None:
    # The config refuses such an r; the data helpers refuse it too when called directly (r = 0 would
    # train on nothing, r > 1 would silently mean the whole window).
    from crossadapt.data import ray_data

    root, _ = data_root(tmp_path)
    expect(DataError, lambda: A.sample_index(100, r, seed=0), "sample ratio r", str(r))
    expect(DataError, lambda: ray_data.window_split(root, [0], FM, 0.1, r=r), "sample ratio r", str(r))


# ---------------------------------------------------------------- feature maps


def test_feature_map_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / FEATURE_MAP_FILE).write_bytes(b"\xff\xfe\x00not json")
    expect(DataError, lambda: FeatureMap.load(tmp_path), FEATURE_MAP_FILE, "not valid JSON")


def test_feature_map_with_a_non_integer_vocab_size_names_the_field(tmp_path: Path) -> None:
    d = FM.to_dict()
    d["fields"][1]["vocab_size"] = "3"  # hand-edited JSON
    (tmp_path / FEATURE_MAP_FILE).write_text(json.dumps(d))
    expect(DataError, lambda: FeatureMap.load(tmp_path), FEATURE_MAP_FILE, "fields[1]", "'b'", "vocab_size", "'3'")


def test_feature_map_of_other_data_names_the_differing_field(tmp_path: Path) -> None:
    root, _ = data_root(tmp_path)
    other = FeatureMap("toy", (FM.fields[0], FieldSpec("b", vocab_size=4), FM.fields[2]))  # b: 3 -> 4 ids
    msg = expect(FeatureMapMismatch, lambda: FeatureMap.load(root).check_compatible(other, "model m"), "model m",
                 "field 'b' differs")
    assert other.fingerprint() in msg and FM.fingerprint() in msg


def test_feature_map_naming_columns_the_data_lacks(tmp_path: Path) -> None:
    root, path = data_root(tmp_path)
    wider = FeatureMap("toy", (*FM.fields, FieldSpec("c", vocab_size=9)))
    expect(DataError, lambda: A.read_periods(root, [0], wider), str(path), "missing column", "'c'")


# ---------------------------------------------------------------- checkpoints


def small_model_config(embed_dim: int = 4) -> ModelConfig:
    return ModelConfig(name="dnn", embed_dim=embed_dim, hidden_units=(8,))


@pytest.fixture()
def teacher_ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    cfg = small_model_config()
    return save_checkpoint(tmp_path / "teacher.pt", build_model(cfg, FM), cfg, FM, {"epoch": 1})


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Save a copy of checkpoint ``src`` at ``dst`` after ``edit(raw_dict)``."""
    raw = read_checkpoint(src)
    edit(raw)
    torch.save(raw, dst)
    return dst


def test_teacher_checkpoint_with_another_feature_map(teacher_ckpt: Path) -> None:
    data_fm = FeatureMap("toy", (FieldSpec("a", vocab_size=6), *FM.fields[1:]))
    expect(FeatureMapMismatch, lambda: load_checkpoint(teacher_ckpt, expected_feature_map=data_fm),
           str(teacher_ckpt), "field 'a' differs")


@pytest.mark.parametrize("key, expected, named", [
    ("teacher", ModelConfig(name="dnn", embed_dim=16, hidden_units=(8,)), "teacher.embed_dim is 16"),
    ("student", ModelConfig(name="dcnv2", embed_dim=4), "student.name is 'dcnv2'"),
])
def test_checkpoint_whose_model_does_not_match_the_config(teacher_ckpt: Path, key, expected, named) -> None:
    # A d=4 DNN checkpoint passed where the config asks for d=16 (or for another model).
    expect(CheckpointError, lambda: load_checkpoint(teacher_ckpt, expected_model=(key, expected)),
           str(teacher_ckpt), named)


def test_online_stage_rejects_a_teacher_that_does_not_match_the_config(tiny_online_world, online_cfg, tmp_path) -> None:
    """``crossadapt online --teacher P``: named before any actor starts (the config's teacher is d=16, P is d=8)."""
    from crossadapt.experiment.run import run_online_stage

    root, _, teacher, student = tiny_online_world
    cfg = online_cfg(root, tmp_path / "out")
    cfg.data.source = "parquet"  # the fixture's logs as they are, never regenerated
    expect(CheckpointError, lambda: run_online_stage(cfg, teacher_ckpt=teacher, student_ckpt=student),
           teacher, "embed_dim=8", "teacher.embed_dim is 16")
    assert not (tmp_path / "out" / "online").exists()


def test_checkpoint_whose_weights_disagree_with_its_model_config(tmp_path: Path, teacher_ckpt: Path) -> None:
    # A teacher saved with d=4, its config edited to d=16: every embedding-sized key is named with both shapes.
    path = rewrite(teacher_ckpt, tmp_path / "dims.pt", lambda raw: raw["model_config"].update(embed_dim=16))
    expect(CheckpointError, lambda: load_checkpoint(path), "dims.pt", "'embedding.table.weight'", "(8, 4)",
           "expected (8, 16)")


def test_checkpoint_config_naming_an_unknown_model(tmp_path: Path, teacher_ckpt: Path) -> None:
    path = rewrite(teacher_ckpt, tmp_path / "name.pt", lambda raw: raw["model_config"].update(name="dcnv9"))
    expect(CheckpointError, lambda: load_checkpoint(path), "name.pt", "model.name", "dcnv9")


def test_checkpoint_with_a_malformed_feature_map(tmp_path: Path, teacher_ckpt: Path) -> None:
    path = rewrite(teacher_ckpt, tmp_path / "fm.pt", lambda raw: raw["feature_map"]["fields"][0].pop("name"))
    expect(CheckpointError, lambda: load_checkpoint(path), "fm.pt", "feature map", "fields[0]")


@pytest.mark.parametrize("keep", [0, 16, 0.5, 0.95])
def test_truncated_checkpoint_names_the_file(tmp_path: Path, teacher_ckpt: Path, keep: float) -> None:
    data = teacher_ckpt.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    expect(CheckpointError, lambda: load_checkpoint(path), "cut.pt", "not a readable checkpoint")
    expect(CheckpointError, lambda: open_checkpoint_tensor(path), "cut.pt")  # the projection actors' reader


def test_corrupted_checkpoint_names_the_file(tmp_path: Path, teacher_ckpt: Path) -> None:
    data = bytearray(teacher_ckpt.read_bytes())
    tail = len(data) - 600
    data[tail : tail + 200] = bytes(b ^ 0x55 for b in data[tail : tail + 200])  # the zip's central directory
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    expect(CheckpointError, lambda: load_checkpoint(path), "flipped.pt", "not a readable checkpoint")


def test_checkpoint_with_nan_weights_names_the_key(tmp_path: Path, teacher_ckpt: Path) -> None:
    def poison(raw: dict) -> None:
        raw["state_dict"]["mlp.net.0.weight"][0, :3] = torch.tensor([float("nan"), float("inf"), 1.0])

    path = rewrite(teacher_ckpt, tmp_path / "nan.pt", poison)
    expect(CheckpointError, lambda: load_checkpoint(path), "nan.pt", "'mlp.net.0.weight'", "2 non-finite")


def test_foreign_torch_file_is_not_taken_for_a_checkpoint(tmp_path: Path, teacher_ckpt: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save(read_checkpoint(teacher_ckpt)["state_dict"], path)  # a bare state_dict, no config or map
    expect(CheckpointError, lambda: load_checkpoint(path), "bare.pt", "not a crossadapt-checkpoint-v1 file")


# ---------------------------------------------------------------- configs


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_config_with_an_unknown_nested_key_names_it_and_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "distill:\n  r: 0.2\n  ratio: 0.3\n")
    msg = expect(ConfigError, lambda: load_config(path), "exp.yaml", "distill.ratio")
    assert "'r'" in msg  # the valid keys are listed


def test_config_override_with_an_unknown_key_names_it() -> None:
    expect(ConfigError, lambda: load_config(None, {"online.tua": 5}), "online.tua")


@pytest.mark.parametrize("r", [0, -0.1, 1.5])
def test_config_sample_ratio_outside_0_1(tmp_path: Path, r: float) -> None:
    expect(ConfigError, lambda: load_config(write_yaml(tmp_path, f"distill:\n  r: {r}\n")), "exp.yaml", "distill.r")


@pytest.mark.parametrize("tau", [0, -3])
def test_config_tau_below_one(tau: int) -> None:
    expect(ConfigError, lambda: load_config(None, {"online.tau": tau}), "online.tau", f"got {tau}")


@pytest.mark.parametrize("key", ["online.steps_per_call", "online.max_inflight", "online.top_k"])
def test_config_online_count_below_one(key: str) -> None:
    expect(ConfigError, lambda: load_config(None, {key: 0}), key, "got 0")


@pytest.mark.parametrize("low,high", [(0.1, 0.1), (0.3, 0.1)])
def test_config_theta_low_not_below_theta_high(low: float, high: float) -> None:
    overrides = {"online.theta_low": low, "online.theta_high": high}
    expect(ConfigError, lambda: load_config(None, overrides), "online.theta_low", "online.theta_high")


def test_config_value_of_the_wrong_type_names_the_key(tmp_path: Path) -> None:
    expect(ConfigError, lambda: load_config(write_yaml(tmp_path, "online:\n  tau: ten\n")), "online.tau", "'ten'")


def test_config_non_finite_number_names_the_key(tmp_path: Path) -> None:
    expect(ConfigError, lambda: load_config(write_yaml(tmp_path, "optim:\n  lr: .inf\n")), "optim.lr", "finite")


def test_config_time_split_out_of_order_names_the_key() -> None:
    expect(ConfigError, lambda: load_config(None, {"data.window_periods": [8, 6]}), "data.window_periods")


@pytest.mark.parametrize("content", [b"distill: [1,\n", b"\xff\xfe binary \x00"])
def test_config_file_that_is_not_yaml_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "exp.yaml"
    path.write_bytes(content)
    expect(ConfigError, lambda: load_config(path), "exp.yaml", "not valid YAML")


def test_config_override_into_a_scalar_section_names_the_key(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "distill: 0.5\n")  # a section written as a value
    expect(ConfigError, lambda: load_config(path, {"distill.r": 0.2}), "distill", "'distill.r'", "mapping")
