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

    (out / "results.json").write_text(json.dumps({"online": {}}))  # the next stage rewrites results
    (out / "online.json").write_text("{}")
    storage.upload(out, uri)
    assert storage.read_json(f"{dest}/results.json") == {"online": {}}
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
