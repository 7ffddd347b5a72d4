"""Time checks before anything trains: the data must hold every period the config names, the test
periods both classes, and a leaking split is refused by the CLI (exit 2, one line) before Ray starts.

The config-level rules (overlaps, order) are tested in test_config.py. Nothing here starts Ray.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from crossadapt import cli
from crossadapt.config import DataConfig, ExperimentConfig
from crossadapt.errors import ConfigError
from crossadapt.experiment.prepare import check_data_periods, prepare_data
from crossadapt.featuremap import FeatureMap, FieldSpec

FM = FeatureMap("toy", (FieldSpec("a", vocab_size=4), FieldSpec("b", vocab_size=3)))


def write_root(root: Path, labels_per_period: list[list[int]]) -> Path:
    """A parquet data root with one period per entry (``period=<k>``, the given labels)."""
    FM.save(root)
    for k, labels in enumerate(labels_per_period):
        d = root / f"period={k}"
        d.mkdir(parents=True)
        n = len(labels)
        pq.write_table(pa.table({"label": pa.array(labels, pa.int8()), "a": pa.array(np.arange(n) % 4),
                                 "b": pa.array(np.arange(n) % 3)}), d / "part-00000.parquet")
    return root


def cfg_for(root: Path, **periods) -> ExperimentConfig:
    spans = {"teacher_periods": (0, 2), "window_periods": (2, 3), "test_periods": (3, 4), "stream_periods": (4, 6)}
    return ExperimentConfig(data=DataConfig(root=str(root), source="parquet", **{**spans, **periods}))


BOTH = [1, 0, 0, 1, 0]


def test_periods_the_data_holds_pass(tmp_path):
    root = write_root(tmp_path / "d", [BOTH] * 6)
    assert prepare_data(cfg_for(root)) == FM


@pytest.mark.parametrize("periods, named", [
    ({"stream_periods": (4, 9)}, "data.stream_periods [4, 9): period(s) 6-8 not in data.root"),
    ({"teacher_periods": (0, 2), "window_periods": (2, 3), "test_periods": (7, 8), "stream_periods": (4, 6)},
     "data.test_periods [7, 8): period(s) 7 not in data.root"),
])
def test_periods_missing_from_the_data_are_named(tmp_path, periods, named):
    root = write_root(tmp_path / "d", [BOTH] * 6)
    with pytest.raises(ConfigError) as err:
        prepare_data(cfg_for(root, **periods))
    assert named in str(err.value) and "which holds periods 0-5" in str(err.value), str(err.value)


def test_a_leaking_split_built_in_code_is_refused_with_the_data(tmp_path):
    """Configs built in code skip load_config: the data check repeats the config-level rules."""
    root = write_root(tmp_path / "d", [BOTH] * 6)
    with pytest.raises(ConfigError, match=r"data\.test_periods \[1, 2\) overlaps data\.teacher_periods \[0, 2\)"):
        check_data_periods(cfg_for(root, test_periods=(1, 2)), FM)


@pytest.mark.parametrize("label", [0, 1])
def test_a_one_class_test_period_is_refused(tmp_path, label):
    root = write_root(tmp_path / "d", [BOTH] * 3 + [[label] * 5] + [BOTH] * 2)
    with pytest.raises(ConfigError, match=rf"data\.test_periods \[3, 4\): its 5 rows .* hold {5 * label} clicks"):
        prepare_data(cfg_for(root))


def test_cli_refuses_teacher_periods_over_the_test_period_before_ray(monkeypatch, capsys):
    """The issue's case: `--set 'data.teacher_periods=[0,9]'` trained the teacher on the test period."""
    import crossadapt.ray_init

    def no_ray(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(crossadapt.ray_init, "init_ray", no_ray)
    code = cli.main(["transfer", "--quick", "--set", "data.teacher_periods=[0,9]"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("crossadapt: error:")
    assert "data.test_periods [8, 9) overlaps data.teacher_periods [0, 9)" in err


def test_cli_names_periods_the_data_lacks_before_training(tmp_path, monkeypatch, capsys):
    """Data on disk is checked after prepare and before the offline stage trains anything."""
    import crossadapt.experiment.offline as offline
    import crossadapt.experiment.run as run

    root = write_root(tmp_path / "d", [BOTH] * 6)
    monkeypatch.setattr(run, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(offline, "run_offline", lambda *a, **k: pytest.fail("training started"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "out"), "tracking": {"wandb": "disabled"},
        "data": {"root": str(root), "source": "parquet", "teacher_periods": [0, 2], "window_periods": [2, 3],
                 "test_periods": [3, 4], "stream_periods": [4, 8]}}))
    assert cli.main(["transfer", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.stream_periods [4, 8): period(s) 6-7 not in data.root" in err and err.count("\n") == 1, err


def test_cli_bad_set_value_is_one_line(capsys):
    assert cli.main(["transfer", "--set", "data.teacher_periods=[0,"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crossadapt: error: --set data.teacher_periods=[0,") and err.count("\n") == 1, err
