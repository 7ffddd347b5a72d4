"""Bad training data on the Ray path: one message naming file, column and row, exit 2, before
anything trains, never retried.

Each case of the data contract breaks row 7 of ``period=1/part-00000.parquet`` (or the whole file)
in a data root whose other files are good; ``crossadapt transfer`` must stop with exit 2 and one
line naming that file, column and row, before anything trains (the offline stage is replaced by a
failure here, and ``init_ray`` by nothing: these tests start no Ray). The last test breaks a file *after* the driver
checked it, so that a Ray Train worker meets the bad row: the run must stop once, with no restart
of the worker group (``worker_starts.json``), and raise the worker's ``DataError``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from crossadapt import cli
from crossadapt.config import ModelConfig, ResourcesConfig
from crossadapt.data import file_checks
from crossadapt.errors import DataError
from crossadapt.featuremap import FeatureMap, FieldSpec

FM = FeatureMap("toy", (FieldSpec("a", vocab_size=5), FieldSpec("b", vocab_size=3), FieldSpec("x", type="numeric")))
ROWS = 40
BAD_ROW = 7


def columns(k: int) -> dict[str, np.ndarray]:
    """Good columns of period ``k``: both classes, ids inside the vocabulary, finite numerics."""
    i = np.arange(ROWS)
    return {"label": ((i + k) % 2).astype(np.int8), "a": (i % 5).astype(np.int64), "b": (i % 3).astype(np.int32),
            "x": np.linspace(0, 1, ROWS, dtype=np.float32)}


def write(path: Path, cols: dict, types: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({c: pa.array(v, (types or {}).get(c)) for c, v in cols.items()}), path)


def data_root(tmp_path: Path, periods: int = 6) -> Path:
    root = tmp_path / "data"
    for k in range(periods):
        write(root / f"period={k}" / "part-00000.parquet", columns(k))
    FM.save(root)
    return root


def with_bad_row(column: str, value) -> tuple[dict, dict]:
    """Period 1's columns with ``value`` at row 7 of ``column`` (None: a null), and the arrow types."""
    cols = {c: list(v.tolist()) for c, v in columns(1).items()}
    cols[column][BAD_ROW] = value
    types = {"label": pa.int8(), "a": pa.int64(), "b": pa.int32(), "x": pa.float32()}
    return cols, types


VALUE_CASES = {  # case: (column, value at row 7, what the message must say)
    "label_2": ("label", 2, "label 2 not in {0, 1}"),
    "nan": ("x", float("nan"), "value nan is not a finite float32"),
    "inf": ("x", float("inf"), "value inf is not a finite float32"),
    "id_outside_vocabulary": ("a", 5, "id 5 outside the vocabulary [0, 5)"),
    "negative_id": ("b", -1, "id -1 outside the vocabulary [0, 3)"),
    "null": ("b", None, "missing (null) value"),
}


def transfer_config(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "out"), "tracking": {"wandb": "disabled"},
        "data": {"root": str(root), "source": "parquet", "teacher_periods": [0, 2], "window_periods": [2, 3],
                 "test_periods": [3, 4], "stream_periods": [4, 6]}}))
    return path


def run_transfer(tmp_path: Path, root: Path, monkeypatch, capsys) -> str:
    """``crossadapt transfer`` on ``root`` without Ray and with the offline stage replaced by a failure:
    exit 2 and one line on stderr, which is returned."""
    import crossadapt.experiment.offline as offline
    import crossadapt.experiment.run as run

    monkeypatch.setattr(run, "init_ray", lambda *a, **k: None)  # where Ray starts is not this test's subject
    monkeypatch.setattr(offline, "run_offline", lambda *a, **k: pytest.fail("training started"))
    code = cli.main(["transfer", "--config", str(transfer_config(tmp_path, root))])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("crossadapt: error:"), err
    return err


@pytest.mark.parametrize("case", sorted(VALUE_CASES))
def test_bad_value_in_a_training_file_names_file_column_and_row(tmp_path, monkeypatch, capsys, case):
    root = data_root(tmp_path)
    column, value, says = VALUE_CASES[case]
    write(root / "period=1" / "part-00000.parquet", *with_bad_row(column, value))
    err = run_transfer(tmp_path, root, monkeypatch, capsys)
    assert f"period=1/part-00000.parquet: column {column!r} row {BAD_ROW}: {says} (1 such rows)" in err, err


@pytest.mark.parametrize("damage", ["truncated", "not_parquet", "empty", "corrupt_footer", "corrupt_pages"])
def test_unreadable_training_file_is_named(tmp_path, monkeypatch, capsys, damage):
    root = data_root(tmp_path)
    path = root / "period=1" / "part-00000.parquet"
    data = path.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    broken = {
        "truncated": data[: len(data) // 2],
        "not_parquet": b"label,a,b,x\n" + b"0,1,2,0.5\n" * 40,
        "empty": b"",
        # the footer's bytes overwritten, the PAR1 magic at both ends kept
        "corrupt_footer": data[:-8 - footer] + bytes(b ^ 0x5A for b in data[-8 - footer:-8]) + data[-8:],
        # the first page overwritten; the footer still parses (only decoding the rows fails)
        "corrupt_pages": data[:4] + bytes(b ^ 0xFF for b in data[4:64]) + data[64:],
    }[damage]
    path.write_bytes(broken)
    if damage == "corrupt_pages":
        pq.ParquetFile(path)  # proof that the footer is intact
    err = run_transfer(tmp_path, root, monkeypatch, capsys)
    says = {"truncated": "truncated", "not_parquet": "not a parquet file", "empty": "not a parquet file",
            "corrupt_footer": "not a readable parquet file", "corrupt_pages": "corrupted parquet data"}[damage]
    assert "period=1/part-00000.parquet: " in err and says in err, err


def test_a_file_that_passed_is_not_checked_again_until_its_bytes_change(tmp_path, monkeypatch):
    monkeypatch.setattr(file_checks, "_PASSED", set())  # other tests here passed the same bytes
    root = data_root(tmp_path, periods=2)
    assert file_checks.check_periods(root, [0, 1], FM) == 2
    assert file_checks.check_periods(root, [0, 1], FM) == 0  # the teacher's check serves the students
    write(root / "period=1" / "part-00000.parquet", *with_bad_row("label", 2))
    with pytest.raises(DataError, match=r"period=1/part-00000.parquet: column 'label' row 7"):
        file_checks.check_periods(root, [0, 1], FM)


def test_bad_row_met_by_a_train_worker_stops_the_run_once_without_retry(ray_session, tmp_path):
    from crossadapt.data import ray_data
    from crossadapt.train.engine import Phase, TrainJob
    from crossadapt.train.ray_train import DATA_ERROR_FILE, STARTS_FILE, fit

    root = data_root(tmp_path, periods=2)
    train = ray_data.read_logs(root, [0, 1], FM)  # the files pass the driver's checks; rows are read later
    write(root / "period=1" / "part-00000.parquet", *with_bad_row("label", 2))  # changed since
    job = TrainJob(name="t", run_dir=str(tmp_path / "run"), model=ModelConfig(name="dnn", embed_dim=4,
                   hidden_units=(8,)), feature_map=FM.to_dict(), phases=(Phase(epochs=1, lr=1e-3),), batch_size=16)
    with pytest.raises(DataError) as info:
        fit(job, train, None, ResourcesConfig(num_workers=2, cpus_per_worker=0.5, max_failures=2))
    msg = str(info.value)
    assert "column 'label' row" in msg and "label 2 not in {0, 1}" in msg and "not retried" in msg, msg
    run = tmp_path / "run"
    # one start of the worker group: Ray Train did not retry (max_failures=2 would have started it 3 times)
    assert json.loads((run / STARTS_FILE).read_text()) == {"starts": 1}
    assert json.loads((run / DATA_ERROR_FILE).read_text())["rank"] in (0, 1)
    assert not (run / "outcome.json").exists() and not (run / "best.pt").exists()
