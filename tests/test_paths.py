"""Where a config's paths point: relative to the config file, to the current folder for --set, and
under ``ray job submit`` never into Ray's temporary copy of the working dir (pure: no Ray here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossadapt.config import load_config
from crossadapt.errors import ConfigError
from crossadapt.experiment.preflight import Request, check_job_locations, preflight
from crossadapt.paths import RAY_JOB_ENV, SUBMIT_DIR_ENV, job_working_dir

CONFIG = """out_dir: ../runs/x
storage: ../shared-runs
data:
  root: ../runs/x/data
  raw_path: ../../raw/logs.txt
  source: criteo
"""


@pytest.fixture()
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``<tmp>/repo/configs/c.yaml`` with relative paths, and a current folder elsewhere; no Ray job."""
    monkeypatch.delenv(RAY_JOB_ENV, raising=False)
    monkeypatch.delenv(SUBMIT_DIR_ENV, raising=False)
    repo = tmp_path / "repo"
    (repo / "configs").mkdir(parents=True)
    (repo / "configs" / "c.yaml").write_text(CONFIG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return repo


def test_paths_in_a_config_file_are_relative_to_the_file(checkout: Path, tmp_path: Path) -> None:
    cfg = load_config(checkout / "configs" / "c.yaml")
    assert cfg.out_dir == str(checkout / "runs" / "x")
    assert cfg.storage == str(checkout / "shared-runs")
    assert cfg.data.root == str(checkout / "runs" / "x" / "data")
    assert cfg.data.raw_path == str(tmp_path / "raw" / "logs.txt")  # ../../ from configs/ leaves the checkout


def test_a_relative_config_path_on_the_command_line_gives_the_same_paths(checkout: Path, monkeypatch) -> None:
    monkeypatch.chdir(checkout)
    assert load_config("configs/c.yaml") == load_config(checkout / "configs" / "c.yaml")


def test_set_values_and_defaults_are_relative_to_the_current_folder(checkout: Path, tmp_path: Path) -> None:
    cfg = load_config(checkout / "configs" / "c.yaml", {"out_dir": "mine", "data.root": "d"})
    here = tmp_path / "elsewhere"
    assert (cfg.out_dir, cfg.data.root) == (str(here / "mine"), str(here / "d"))
    assert cfg.storage == str(checkout / "shared-runs")  # not overridden: still the file's
    assert load_config(None).out_dir == str(here / "runs" / "default")  # a default: the current folder


def test_a_section_set_as_a_whole_takes_the_current_folder(checkout: Path, tmp_path: Path) -> None:
    cfg = load_config(checkout / "configs" / "c.yaml", {"data": {"root": "d", "source": "parquet"}})
    assert cfg.data.root == str(tmp_path / "elsewhere" / "d")


def test_absolute_paths_uris_and_home_are_kept(checkout: Path, tmp_path: Path) -> None:
    path = checkout / "configs" / "abs.yaml"
    path.write_text(f"out_dir: {tmp_path / 'abs'}\nstorage: s3://bucket/prefix\ndata:\n  root: ~/crossadapt-data\n")
    cfg = load_config(path)
    assert cfg.out_dir == str(tmp_path / "abs") and cfg.storage == "s3://bucket/prefix"
    assert cfg.data.root == str(Path.home() / "crossadapt-data") and cfg.data.raw_path == ""


# ---------------------------------------------------------------- under `ray job submit`


def _job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: bool = True) -> Path:
    """The driver's folder as Ray lays it out for a job submitted with --working-dir (a copy of the
    checkout above, holding configs/c.yaml), made the current folder; ``env``: the variable Ray's
    job supervisor sets, else only the folder's place tells."""
    job = tmp_path / "ray" / "session_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    (job / "configs").mkdir(parents=True)
    (job / "configs" / "c.yaml").write_text(CONFIG)
    monkeypatch.chdir(job)
    if env:
        monkeypatch.setenv(RAY_JOB_ENV, json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_abc.zip"}}))
    else:
        monkeypatch.delenv(RAY_JOB_ENV, raising=False)
    monkeypatch.delenv(SUBMIT_DIR_ENV, raising=False)
    return job


@pytest.mark.parametrize("env", [True, False])
def test_a_submitted_job_is_recognised(tmp_path: Path, monkeypatch, env: bool) -> None:
    job = _job(tmp_path, monkeypatch, env)
    assert job_working_dir() == job


def test_a_plain_run_is_not_a_job(checkout: Path) -> None:
    assert job_working_dir() is None


def test_a_job_without_a_working_dir_is_not_in_a_temporary_copy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(RAY_JOB_ENV, json.dumps({"runtime_env": {}, "metadata": {}}))
    assert job_working_dir() is None


@pytest.mark.parametrize("key, overrides", [
    ("out_dir", {}),                       # ../runs/x from the config: inside the copy
    ("out_dir", {"out_dir": "runs/y"}),   # --set, relative to the job's current folder: the copy too
    ("data.root", {"out_dir": "/abs/out"}),
    ("storage", {"out_dir": "/abs/out", "data.root": "/abs/data"}),
])
def test_relative_outputs_of_a_submitted_job_are_refused_naming_the_key(tmp_path, monkeypatch, key, overrides):
    _job(tmp_path, monkeypatch)
    cfg = load_config("configs/c.yaml", overrides)  # loading resolves; the check says why it is wrong
    with pytest.raises(ConfigError) as err:
        check_job_locations(cfg)
    msg = str(err.value)
    assert msg.startswith(f"{key}: ") and "temporary copy" in msg and SUBMIT_DIR_ENV in msg, msg


def test_absolute_outputs_of_a_submitted_job_pass(tmp_path: Path, monkeypatch) -> None:
    _job(tmp_path, monkeypatch)
    cfg = load_config("configs/c.yaml", {"out_dir": "/mnt/shared/runs/x", "data.root": "/mnt/shared/data",
                                         "storage": "s3://bucket/runs"})
    check_job_locations(cfg)
    assert cfg.out_dir == "/mnt/shared/runs/x"


def test_the_submit_dir_maps_relative_paths_back_to_the_submitted_checkout(tmp_path, monkeypatch) -> None:
    """With CROSSADAPT_SUBMIT_DIR the job's paths are the local run's: configs/c.yaml's ../runs/x is
    <checkout>/runs/x, its ../../raw/logs.txt lies beside the checkout, --set paths are under it."""
    _job(tmp_path, monkeypatch)
    checkout = tmp_path / "home" / "repo"
    monkeypatch.setenv(SUBMIT_DIR_ENV, str(checkout))
    cfg = load_config("configs/c.yaml", {"data.root": "data-here"})
    assert cfg.out_dir == str(checkout / "runs" / "x")
    assert cfg.data.raw_path == str(tmp_path / "home" / "raw" / "logs.txt")
    assert cfg.data.root == str(checkout / "data-here")
    check_job_locations(cfg)  # nothing left in the temporary copy


def test_inputs_shipped_with_a_job_are_read_from_its_copy(tmp_path: Path, monkeypatch) -> None:
    """A raw file inside the working dir travels with the job; one outside it does not exist there."""
    job = _job(tmp_path, monkeypatch)
    (job / "sample.txt").write_text("0\t1\n")
    cfg = load_config("configs/c.yaml", {"out_dir": str(tmp_path / "out"), "data.root": str(tmp_path / "data"),
                                         "storage": "", "data.raw_path": "sample.txt"})
    preflight(cfg, Request("prepare"))  # raw_path found in the job's copy; nothing written there
    outside = load_config("configs/c.yaml", {"out_dir": str(tmp_path / "out"), "data.root": str(tmp_path / "data"),
                                             "storage": ""})
    with pytest.raises(ConfigError, match=rf"data.raw_path: .*not found .*{SUBMIT_DIR_ENV}"):
        preflight(outside, Request("prepare"))


def test_an_imported_teachers_files_are_relative_to_the_config_file(checkout: Path) -> None:
    path = checkout / "configs" / "byo.yaml"
    path.write_text("data:\n  source: table\n  raw_path: logs/*.csv\n  schema: {label: y, time: t, period: 1d}\n"
                    "teacher_import:\n  program: teacher/model.pt\n  tables: teacher/tables.pt\n"
                    "  vocabularies: teacher/vocab.json\n")
    cfg = load_config(path)
    here = checkout / "configs"
    assert cfg.data.raw_path == str(here / "logs" / "*.csv")  # a glob stays a glob, under the file's folder
    assert (cfg.teacher_import.program, cfg.teacher_import.tables, cfg.teacher_import.vocabularies) == (
        str(here / "teacher" / "model.pt"), str(here / "teacher" / "tables.pt"), str(here / "teacher" / "vocab.json"))
