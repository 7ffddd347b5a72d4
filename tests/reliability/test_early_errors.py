"""Bad input to a command is named before anything starts: exit 2, one line naming the key, file,
flag or period, in seconds, with no Ray started, no data generated and nothing written to out_dir.

Each case runs the real command line in-process (``crossadapt.cli.main``) with Ray's start replaced
by a tripwire. The tiny data below is written once; nothing here starts Ray or trains.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crossadapt import cli
from crossadapt.config import SyntheticConfig
from crossadapt.data.synthetic import generate

SYNTH = SyntheticConfig(num_fields=3, vocab_size=50, rows_per_period=300, num_periods=5, drift_periods=(4,), seed=1)
SPLIT = ["--set", "data.teacher_periods=[0,2]", "--set", "data.window_periods=[2,3]",
         "--set", "data.test_periods=[3,4]", "--set", "data.stream_periods=[4,5]"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Five periods of tiny synthetic logs (the encoded parquet a run reads)."""
    root = tmp_path_factory.mktemp("early") / "data"
    generate(SYNTH, root)
    return root


@pytest.fixture()
def run(monkeypatch, tmp_path, capsys):
    """``run(*argv)``: the command's exit status and its stderr; fails if Ray would start."""
    import crossadapt.experiment.run as run_module
    import crossadapt.ray_init as ray_init

    def tripwire(*a, **k):
        raise AssertionError("Ray was started before the bad input was named")

    monkeypatch.setattr(ray_init, "init_ray", tripwire)
    monkeypatch.setattr(run_module, "init_ray", tripwire)

    def call(*argv: str) -> tuple[int, str]:
        t0 = time.perf_counter()
        code = cli.main(list(argv))
        elapsed = time.perf_counter() - t0
        err = capsys.readouterr().err
        assert elapsed < 60, f"took {elapsed:.0f} s to refuse {argv}"  # seconds, not a training run
        return code, err

    return call


def config(tmp_path: Path, root: Path | None, **extra) -> list[str]:
    """``--config`` of a run on the tiny data (synthetic: the same world, regenerated never) into tmp_path/out."""
    text = {"out_dir": str(tmp_path / "out"), "seeds": [0],
            "data": {"root": str(root) if root else str(tmp_path / "fresh"), "teacher_periods": [0, 2],
                     "window_periods": [2, 3], "test_periods": [3, 4], "stream_periods": [4, 5]},
            "synthetic": {"num_fields": SYNTH.num_fields, "vocab_size": SYNTH.vocab_size,
                          "rows_per_period": SYNTH.rows_per_period, "num_periods": SYNTH.num_periods,
                          "drift_periods": list(SYNTH.drift_periods), "seed": SYNTH.seed}}
    for key, value in extra.items():
        text[key] = {**text.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(text))  # JSON is YAML
    return ["--config", str(path)]


def refused(code_err: tuple[int, str], *names: str) -> str:
    code, err = code_err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("crossadapt: error: "), err
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]


def nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists(), sorted(p.name for p in (tmp_path / "out").iterdir())
    assert not (tmp_path / "fresh").exists()  # no synthetic logs generated either


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("command", ["transfer", "demo", "train", "online", "zoo"])
def test_unknown_student_model(run, data, tmp_path, command):
    refused(run(command, *config(tmp_path, data), "--set", "student.name=dcnv9"), "student.name", "'dcnv9'", "dcnv2")
    nothing_written(tmp_path)


def test_teacher_hyper_parameter_the_model_refuses(run, data, tmp_path):
    refused(run("transfer", *config(tmp_path, data), "--set", "teacher.hidden_units=[16, 0]"),
            "teacher.hidden_units[1]", "got 0")
    nothing_written(tmp_path)


@pytest.mark.parametrize("setting, named", [
    ("teacher.embed_dim=0", "teacher.embed_dim: must be >= 1, got 0"),
    ("student.dropout=1.5", "student.dropout: must be in [0, 1), got 1.5"),
])
def test_a_model_value_out_of_range_is_named_under_its_section(run, data, tmp_path, setting, named):
    """A range declared on ModelConfig's field is named under the section it is given in."""
    refused(run("transfer", *config(tmp_path, data), "--set", setting), named)
    nothing_written(tmp_path)


def test_unknown_offline_method(run, data, tmp_path):
    refused(run("transfer", *config(tmp_path, data), "--set", "methods=[scratch, krossadapt]"),
            "methods", "'krossadapt'", "crossadapt_full_window")
    nothing_written(tmp_path)


def test_unknown_online_method(run, data, tmp_path):
    refused(run("demo", *config(tmp_path, data), "--set", "online.methods=[crossadapt, replay]"),
            "online.methods", "'replay'", "student_replay")
    nothing_written(tmp_path)


def test_unknown_zoo_model(run, data, tmp_path):
    refused(run("zoo", *config(tmp_path, data), "--models", "lr", "dnm"), "--models dnm", "unknown model")
    nothing_written(tmp_path)


@pytest.mark.parametrize("key, named", [("seeds", "seeds: empty"), ("methods", "methods: empty"),
                                        ("online.methods", "online.methods: empty")])
def test_empty_lists(run, data, tmp_path, key, named):
    refused(run("demo", *config(tmp_path, data), "--set", f"{key}=[]"), named)
    nothing_written(tmp_path)


def test_repeated_seed(run, data, tmp_path):
    refused(run("transfer", *config(tmp_path, data), "--set", "seeds=[0, 1, 0]"), "seeds", "repeats")


def test_demo_without_crossadapt_students_for_its_online_stage(run, data, tmp_path):
    refused(run("demo", *config(tmp_path, data), "--set", "methods=[scratch, kd]"), "methods", "crossadapt")
    nothing_written(tmp_path)


# ---------------------------------------------------------------- periods


def test_stream_periods_past_the_data_on_disk(run, data, tmp_path):
    msg = refused(run("online", *config(tmp_path, data), "--set", "data.stream_periods=[4, 7]"),
                  "data.stream_periods [4, 7)", "5-6", str(data))
    assert "0-4" in msg  # what the data has
    nothing_written(tmp_path)


def test_periods_past_what_the_generator_will_write(run, tmp_path):
    refused(run("transfer", *config(tmp_path, None), "--set", "data.stream_periods=[4, 9]"),
            "data.stream_periods [4, 9)", "synthetic.num_periods=5")
    nothing_written(tmp_path)


def test_periods_past_what_the_converter_will_write(run, tmp_path):
    raw = tmp_path / "raw.tsv"
    raw.write_text("0\t1\n")
    args = config(tmp_path, None, data={"source": "criteo", "raw_path": str(raw), "num_periods": 4})
    refused(run("transfer", *args), "data.stream_periods [4, 5)", "data.num_periods=4")
    nothing_written(tmp_path)


# ---------------------------------------------------------------- files and folders


def test_raw_logs_not_found(run, tmp_path):
    args = config(tmp_path, None, data={"source": "criteo", "raw_path": str(tmp_path / "nope.tsv")})
    refused(run("transfer", *args), "data.raw_path", "nope.tsv", "not found")
    nothing_written(tmp_path)


def test_parquet_root_without_a_feature_map(run, tmp_path):
    refused(run("train", *config(tmp_path, None, data={"source": "parquet"})), "data.root", "feature_map.json",
            "crossadapt prepare")
    nothing_written(tmp_path)


def test_out_dir_that_cannot_be_created(run, data, tmp_path):
    (tmp_path / "afile").write_text("x")
    refused(run("transfer", *config(tmp_path, data), "--out", str(tmp_path / "afile" / "out")),
            "out_dir", "afile", "is a file")


def test_out_dir_that_is_a_file(run, data, tmp_path):
    (tmp_path / "out").write_text("x")
    refused(run("transfer", *config(tmp_path, data)), "out_dir", "is a file, not a folder")


def test_out_dir_without_write_permission(run, data, tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes everywhere: the unwritable case is the file-in-the-way one above")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused(run("transfer", *config(tmp_path, data), "--out", str(locked / "out")), "out_dir", "not writable")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("storage, named", [("s4://bucket/x", "scheme 's4'"), ("s3://", "no bucket"),
                                            ("file://relative/x", "absolute path")])
def test_storage_uri_of_the_wrong_form(run, data, tmp_path, storage, named):
    refused(run("transfer", *config(tmp_path, data), "--set", f"storage={storage}"), "storage", named)
    nothing_written(tmp_path)


def test_storage_inside_out_dir(run, data, tmp_path):
    refused(run("transfer", *config(tmp_path, data), "--set", f"storage={tmp_path / 'out' / 'copies'}"),
            "storage", "inside out_dir")


def test_tune_space_not_found(run, data, tmp_path):
    refused(run("tune", *config(tmp_path, data), "--space", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")
    nothing_written(tmp_path)


def test_online_search_without_an_offline_run(run, data, tmp_path):
    space = Path(cli.__file__).resolve().parents[1] / "tune_spaces" / "online.yaml"
    refused(run("tune", *config(tmp_path, data), "--space", str(space)), "results.json", "crossadapt transfer")
    nothing_written(tmp_path)


def test_online_without_an_offline_run(run, data, tmp_path):
    refused(run("online", *config(tmp_path, data)), "results.json", "--teacher", "crossadapt transfer")
    nothing_written(tmp_path)


def test_online_teacher_that_is_a_folder(run, data, tmp_path):
    refused(run("online", *config(tmp_path, data), "--teacher", str(tmp_path), "--student", str(tmp_path / "s.pt")),
            "--teacher", "is a folder")


def test_online_student_not_found(run, data, tmp_path):
    (tmp_path / "t.pt").write_bytes(b"PK")
    refused(run("online", *config(tmp_path, data), "--teacher", str(tmp_path / "t.pt"), "--student",
                str(tmp_path / "s.pt")), "--student", "s.pt", "not found")


# ---------------------------------------------------------------- evaluate and checkpoints


@pytest.mark.parametrize("periods", ["abc", "3:1", "2:2", "-1:2", "1:x"])
def test_evaluate_periods_that_are_not_a_range(run, data, tmp_path, periods):
    refused(run("evaluate", "--checkpoint", str(tmp_path / "c.pt"), "--data", str(data), f"--periods={periods}"),
            "--periods", repr(periods))


def test_evaluate_a_text_file_as_checkpoint(run, data, tmp_path):
    (tmp_path / "notes.pt").write_text("train for 3 epochs\n")
    msg = refused(run("evaluate", "--checkpoint", str(tmp_path / "notes.pt"), "--data", str(data), "--periods", "3"),
                  "notes.pt", "not a readable checkpoint", "text")
    assert "KeyError" not in msg


def test_evaluate_a_folder_as_checkpoint(run, data, tmp_path):
    refused(run("evaluate", "--checkpoint", str(tmp_path), "--data", str(data), "--periods", "3"),
            str(tmp_path), "is a folder")


# ---------------------------------------------------------------- validate


def test_validate_prints_the_resolved_config_and_starts_nothing(run, data, tmp_path, capsys):
    import yaml

    code = cli.main(["validate", *config(tmp_path, None), "--set", "distill.r=0.25", "--out", "rel-out"])
    shown = yaml.safe_load(capsys.readouterr().out)
    assert code == 0 and shown["distill"]["r"] == 0.25
    assert shown["out_dir"] == str(Path.cwd() / "rel-out")  # --out: relative to the current folder
    assert shown["data"]["root"] == str(tmp_path / "fresh")
    nothing_written(tmp_path)
    assert not (Path.cwd() / "rel-out").exists()


def test_validate_output_is_the_yaml_alone_with_warnings_on_stderr(data, tmp_path, monkeypatch, capsys):
    """The tiny data's test split (300 rows) is warned about on stderr; stdout parses as the config."""
    import yaml

    from crossadapt.experiment import prepare

    monkeypatch.setattr(prepare, "_warned", set())
    assert cli.main(["validate", *config(tmp_path, data)]) == 0
    captured = capsys.readouterr()
    assert yaml.safe_load(captured.out)["data"]["root"] == str(data)
    assert "warning:" in captured.err and "holds only 300 rows" in captured.err


def test_validate_help_of_a_command_line_is_not_an_interruption(capsys):
    assert cli.main(["validate", "--", "transfer", "--no-such-flag"]) == 2  # argparse's usage error
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert cli.main(["validate", "--", "transfer", "--help"]) == 0
    captured = capsys.readouterr()
    assert "--config" in captured.out and "interrupted" not in captured.err


def test_validate_a_whole_command_line(run, data, tmp_path):
    refused(run("validate", "--", "zoo", *config(tmp_path, data), "--models", "lr", "dnm"), "--models dnm")
    refused(run("validate", "--", "evaluate", "--checkpoint", "x", "--data", "y", "--periods", "1"), "takes no config")


def test_validate_without_paths_checks_what_needs_no_filesystem(run, tmp_path, capsys):
    """A cluster command: its /mnt paths do not exist here, its names and periods are still checked."""
    cluster = ["--set", "out_dir=/mnt/shared/runs/demo", "--set", "data.root=/mnt/shared/data",
               "--set", "storage=s3://BUCKET/crossadapt", "--set", "resources.use_gpu=true"]
    assert cli.main(["validate", "--no-paths", "--", "transfer", *config(tmp_path, None), *cluster]) == 0
    assert "/mnt/shared/runs/demo" in capsys.readouterr().out
    refused(run("validate", "--no-paths", "--", "transfer", *config(tmp_path, None), *cluster,
                "--set", "data.stream_periods=[4, 8]"), "data.stream_periods", "synthetic.num_periods=5")


# ---------------------------------------------------------------- a checkpoint that is not the config's model


def test_online_teacher_whose_hidden_units_differ_from_the_config(run, tiny_online_world, tmp_path):
    """The config must describe the model that runs (it is recorded with the results): a teacher
    checkpoint with hidden_units (32, 16) under a config saying (64,) is refused, naming both and the
    --set that makes them agree, before any actor starts."""
    root, _, teacher, student = tiny_online_world
    args = config(tmp_path, root, data={"source": "parquet", "teacher_periods": [0, 3], "window_periods": [3, 4],
                                        "test_periods": [4, 5], "stream_periods": [5, 8]},
                  teacher={"name": "dnn", "embed_dim": 8, "hidden_units": [64]},
                  student={"name": "dcnv2", "embed_dim": 8, "hidden_units": [32], "num_cross_layers": 2})
    msg = refused(run("online", *args, "--teacher", teacher, "--student", student),
                  teacher, "hidden_units=[32, 16]", "teacher.hidden_units is [64]", "--set 'teacher.hidden_units=[32, 16]'")
    assert "embed_dim" not in msg  # only what differs is named
    assert not (tmp_path / "out" / "online").exists()
    refused(run("validate", "--", "online", *args, "--teacher", teacher, "--student", student), "teacher.hidden_units")


# ---------------------------------------------------------------- a test split too small to compare on


@pytest.mark.parametrize("rows, clicks, warned", [(20, 4, True), (2000, 240, True), (60_000, 7_200, False)])
def test_a_tiny_test_split_is_warned_about_once(data, tmp_path, monkeypatch, capsys, rows, clicks, warned):
    """20 test rows once gave AUC 0.98: below TEST_AUC_SD_WARN of chance spread the run says so (once)."""
    from crossadapt.config import load_config
    from crossadapt.experiment import prepare
    from crossadapt.featuremap import FeatureMap
    from crossadapt.metrics import chance_auc_sd

    monkeypatch.setattr(prepare, "label_counts", lambda *a: (rows, clicks))
    monkeypatch.setattr(prepare, "_warned", set())
    cfg = load_config(config(tmp_path, data)[1])
    for _ in range(2):  # checked before and after the data is prepared: said once
        prepare.check_data_periods(cfg, FeatureMap.load(data))
    out = capsys.readouterr().out
    sd = chance_auc_sd(clicks, rows - clicks)
    assert (sd > prepare.TEST_AUC_SD_WARN) == warned
    if warned:
        assert out.count("warning:") == 1 and f"holds only {rows} rows ({clicks} clicks)" in out
        assert f"0.5 ± {sd:.3f}" in out and "data.test_periods [3, 4)" in out
    else:
        assert "warning" not in out


# ---------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("how", [KeyboardInterrupt, lambda: SystemExit(0)])
def test_ctrl_c_says_interrupted_and_how_to_resume(monkeypatch, capsys, how):
    """Python's KeyboardInterrupt, and Ray Train's own Ctrl-C handler (which ends the driver with
    sys.exit(0) while a run trains), both end in one line and exit status 130, never a silent 0."""
    def interrupted(args):
        raise how()

    monkeypatch.setattr(cli, "cmd_transfer", interrupted)
    assert cli.main(["transfer"]) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"crossadapt: transfer interrupted; {cli.RESUME['transfer']}"]


def test_other_exits_pass_through(monkeypatch):
    def failing(args):
        raise SystemExit(3)

    monkeypatch.setattr(cli, "cmd_transfer", failing)
    with pytest.raises(SystemExit) as e:
        cli.main(["transfer"])
    assert e.value.code == 3


def test_the_callers_ctrl_c_handler_comes_back_after_ray_train():
    """Train V2 leaves its own SIGINT handler installed after fit; a later Ctrl-C would be swallowed."""
    import signal

    from crossadapt.train.ray_train import _caller_sigint

    before = signal.getsignal(signal.SIGINT)
    with _caller_sigint():
        signal.signal(signal.SIGINT, lambda *a: None)  # what TorchTrainer.fit does
    assert signal.getsignal(signal.SIGINT) is before
