"""Shared storage: a finished output folder copied to a local path or a file:// URI, and read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossadapt import storage
from crossadapt.config import load_config
from crossadapt.errors import ConfigError


def _run_folder(root: Path) -> Path:
    """A small stand-in for an out_dir: results at the top, a checkpoint two levels down."""
    out = root / "demo"
    (out / "teacher" / "checkpoint").mkdir(parents=True)
    (out / "results.json").write_text(json.dumps({"teacher": {"auc": 0.75}}))
    (out / "report.md").write_text("# report\n")
    (out / "teacher" / "checkpoint" / "model.pt").write_bytes(b"\x00\x01weights")
    return out


FILES = ["report.md", "results.json", "teacher/checkpoint/model.pt"]


def test_empty_storage_is_nothing_to_do(tmp_path: Path) -> None:
    out = _run_folder(tmp_path)
    assert storage.upload(out, "") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_upload_to_local_folder(tmp_path: Path) -> None:
    out = _run_folder(tmp_path / "local")
    dest = storage.upload(out, str(tmp_path / "shared" / "runs"))
    assert dest == str(tmp_path / "shared" / "runs" / "demo")
    assert storage.list_files(dest) == FILES
    assert storage.read_json(f"{dest}/results.json") == {"teacher": {"auc": 0.75}}
    assert storage.read_bytes(f"{dest}/teacher/checkpoint/model.pt") == b"\x00\x01weights"


def test_upload_to_file_uri_and_again_after_the_next_stage(tmp_path: Path) -> None:
    out = _run_folder(tmp_path / "local")
    uri = f"file://{tmp_path}/bucket/prefix/"
    dest = storage.upload(out, uri)
    assert dest == f"file://{tmp_path}/bucket/prefix/demo"
    assert storage.list_files(dest) == FILES

    # the next stage rewrites results (merged: they hold the earlier ones, see run.py)
    (out / "results.json").write_text(json.dumps({"teacher": {"auc": 0.75}, "online": {}}))
    (out / "online.json").write_text("{}")
    storage.upload(out, uri)
    assert storage.read_json(f"{dest}/results.json") == {"teacher": {"auc": 0.75}, "online": {}}
    assert storage.list_files(dest) == ["online.json", *FILES]


def test_relative_storage_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _run_folder(tmp_path / "local")
    monkeypatch.chdir(tmp_path)
    assert storage.upload(out, "copies") == str(tmp_path / "copies" / "demo")
    assert storage.list_files(str(tmp_path / "copies" / "demo")) == FILES


def test_storage_inside_out_dir_is_refused(tmp_path: Path) -> None:
    out = _run_folder(tmp_path)
    with pytest.raises(ConfigError, match="inside the folder"):
        storage.upload(out, str(out / "backup"))


def test_storage_config_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None).storage == ""
    assert load_config(None, {"storage": "s3://bucket/prefix"}).storage == "s3://bucket/prefix"  # URIs as given
    assert load_config(None, {"storage": "shared"}).storage == str(tmp_path / "shared")  # paths made absolute
    with pytest.raises(ConfigError, match="storage"):
        load_config(None, {"storage": 3})


def test_unknown_scheme_names_the_location(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nosuchfs://x"):
        storage.upload(_run_folder(tmp_path), "nosuchfs://x")


def _results(*fingerprints: str, **extra) -> dict:
    """A results.json with one offline record per fingerprint (the shape ``_fingerprints`` looks into)."""
    return {"offline_records": [{"method": "m", "seed": i, "fingerprint": fp} for i, fp in enumerate(fingerprints)],
            **extra}


def test_a_second_run_merges_into_the_copy(tmp_path: Path) -> None:
    # Run 1 (machine A) uploads; run 2 of the same out_dir name starts from an empty out_dir (machine B,
    # after `ray down`): everything of run 1 must still be in the copy afterwards.
    shared = str(tmp_path / "shared")
    a = tmp_path / "a" / "demo"
    (a / "students" / "kd-seed0" / "fp1").mkdir(parents=True)
    (a / "students" / "kd-seed0" / "fp1" / "model.pt").write_bytes(b"kd")
    (a / "results.json").write_text(json.dumps(_results("fp1")))
    (a / "wandb_runs.json").write_text(json.dumps([{"id": "r1", "name": "kd"}]))
    dest = storage.upload(a, shared)

    b = tmp_path / "b" / "demo"
    (b / "students" / "scratch-seed0" / "fp2").mkdir(parents=True)
    (b / "students" / "scratch-seed0" / "fp2" / "model.pt").write_bytes(b"scratch")
    (b / "results.json").write_text(json.dumps(_results("fp2")))
    (b / "wandb_runs.json").write_text(json.dumps([{"id": "r2", "name": "scratch"}]))
    assert storage.upload(b, shared) == dest

    files = storage.list_files(dest)
    assert "students/kd-seed0/fp1/model.pt" in files and "students/scratch-seed0/fp2/model.pt" in files
    assert storage.read_json(f"{dest}/results.json") == _results("fp2")  # the latest run's, as its out_dir has
    kept = [f for f in files if f.startswith("results.") and f != "results.json"]
    assert len(kept) == 1 and storage.read_json(f"{dest}/{kept[0]}") == _results("fp1")  # run 1's, not lost
    assert storage.read_json(f"{dest}/wandb_runs.json") == [{"id": "r1", "name": "kd"}, {"id": "r2", "name": "scratch"}]


def test_a_rerun_whose_results_hold_the_copys_replaces_them(tmp_path: Path) -> None:
    # The same out_dir after its next stage: its results.json merged the earlier ones (run.py), so the
    # copy's is replaced and nothing is kept aside; a run id in both lists is listed once, as now.
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(_results("fp1")))
    (out / "wandb_runs.json").write_text(json.dumps([{"id": "r1", "state": "running"}]))
    dest = storage.upload(out, str(tmp_path / "shared"))
    (out / "results.json").write_text(json.dumps(_results("fp1", "fp2", online={})))
    (out / "wandb_runs.json").write_text(json.dumps([{"id": "r1", "state": "done"}, {"id": "r2"}]))
    storage.upload(out, str(tmp_path / "shared"))
    assert storage.list_files(dest) == ["results.json", "wandb_runs.json"]
    assert storage.read_json(f"{dest}/results.json") == _results("fp1", "fp2", online={})
    assert storage.read_json(f"{dest}/wandb_runs.json") == [{"id": "r1", "state": "done"}, {"id": "r2"}]


def test_locks_and_temp_files_are_not_uploaded(tmp_path: Path) -> None:
    out = _run_folder(tmp_path)
    for name in (".crossadapt.lock", ".crossadapt.lock.ab12.tmp", ".results.json.x1y2.tmp", "wandb_runs.json.lock"):
        (out / name).write_text("{}")
    dest = storage.upload(out, str(tmp_path / "shared"))
    assert storage.list_files(dest) == FILES


def test_the_file_names_match_the_modules_that_write_them() -> None:
    from crossadapt.experiment.compare import RESULTS_FILE
    from crossadapt.experiment.lock import LOCK_FILE

    assert storage.RESULTS_FILE == RESULTS_FILE and storage.LOCK_PREFIX == LOCK_FILE
