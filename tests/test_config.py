import pytest

from crossadapt.config import ExperimentConfig, load_config, to_dict
from crossadapt.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_round_trip():
    cfg = load_config()
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.distill.r == 0.1 and cfg.teacher.embed_dim == 16 and cfg.student.embed_dim == 32
    from crossadapt.config import from_dict

    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg


def test_yaml_and_overrides(tmp_path):
    p = write(tmp_path, "distill:\n  r: 0.2\nstudent:\n  name: dcn\n  hidden_units: [64, 32]\n")
    cfg = load_config(p, {"online.tau": 5})
    assert cfg.distill.r == 0.2 and cfg.student.name == "dcn" and cfg.student.hidden_units == (64, 32)
    assert cfg.online.tau == 5
    assert load_config(write(tmp_path, "optim:\n  lr: 1e-3\n")).optim.lr == 1e-3  # YAML reads 1e-3 as a string


@pytest.mark.parametrize(
    "text,match",
    [
        ("distill:\n  rr: 0.2\n", r"distill\.rr"),
        ("bogus: 1\n", "bogus"),
        ("distill:\n  r: 0\n", r"distill\.r"),
        ("distill:\n  r: 1.5\n", r"distill\.r"),
        ("online:\n  tau: 0\n", r"online\.tau"),
        ("online:\n  theta_low: 0.2\n  theta_high: 0.1\n", "theta_low"),
        ("optim:\n  lr: fast\n", r"optim\.lr"),
        ("optim:\n  lr: .nan\n", r"optim\.lr"),
        ("student:\n  embed_dim: 3.5\n", r"student\.embed_dim"),
        ("distill:\n  kind: kl\n", r"distill\.kind"),
        ("[1, 2]\n", "mapping"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_local_paths_become_absolute_uris_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"out_dir": "runs/x", "data.root": "s3://bucket/logs"})
    assert cfg.out_dir == str(tmp_path / "runs" / "x")  # Ray workers do not share the driver's folder
    assert cfg.data.root == "s3://bucket/logs" and cfg.data.raw_path == ""


@pytest.mark.parametrize("text, want", [("true", "true"), ("false", "false"), ("auto", "auto"), ('"true"', "true")])
def test_use_gpu_takes_yaml_booleans(tmp_path, text, want):
    """`--set resources.use_gpu=true` (YAML reads a boolean) is the README's and cluster.yaml's command."""
    assert load_config(write(tmp_path, f"resources:\n  use_gpu: {text}\n")).resources.use_gpu == want
    assert load_config(None, {"resources.use_gpu": text == "true"}).resources.use_gpu in ("true", "false")
    with pytest.raises(ConfigError, match="resources.use_gpu"):
        load_config(None, {"resources.use_gpu": "yes"})


# ---------------------------------------------------------------- sections merge over their role's defaults

# One key per section of ExperimentConfig, set to a value unlike its default. The test below fails
# when a section is added without an entry here.
SECTION_CHANGES = {
    "data": ("valid_fraction", 0.2),
    "synthetic": ("zipf_a", 1.3),
    "teacher": ("dropout", 0.1),
    "student": ("dropout", 0.1),
    "teacher_import": ("format", "torchscript"),
    "optim": ("patience", 5),
    "distill": ("alpha", 0.5),
    "projection": ("oversample", 4),
    "resources": ("max_failures", 0),
    "online": ("tau", 7),
    "tracking": ("project", "elsewhere"),
}


def _sections() -> list[str]:
    import dataclasses
    import typing

    return [k for k, tp in typing.get_type_hints(ExperimentConfig).items() if dataclasses.is_dataclass(tp)]


def test_every_section_has_a_merge_case():
    assert sorted(SECTION_CHANGES) == sorted(_sections())


@pytest.mark.parametrize("section", sorted(SECTION_CHANGES))
def test_partial_section_changes_only_its_keys(tmp_path, section):
    """`--set <section>.<key>=v` and a YAML section naming only that key both give the role's default
    section with that one key changed (the student stays DCNv2(32), the teacher DNN(16))."""
    import dataclasses

    key, value = SECTION_CHANGES[section]
    defaults = load_config()  # ExperimentConfig() with its paths made absolute
    default = getattr(defaults, section)
    assert getattr(default, key) != value
    want = dataclasses.replace(default, **{key: value})
    by_set = load_config(None, {f"{section}.{key}": value})
    by_yaml = load_config(write(tmp_path, f"{section}:\n  {key}: {value}\n"))
    assert getattr(by_set, section) == want and getattr(by_yaml, section) == want
    assert by_set == by_yaml == dataclasses.replace(defaults, **{section: want})  # nothing else moved


def test_student_dropout_keeps_the_default_student():
    """The issue's case: `--set student.dropout=0.1` once made the student DNN(d=16), the teacher."""
    from crossadapt.cli import _config, build_parser

    cfg = _config(build_parser().parse_args(["transfer", "--set", "student.dropout=0.1"]))
    assert (cfg.student.name, cfg.student.embed_dim, cfg.student.dropout) == ("dcnv2", 32, 0.1)
    assert (cfg.teacher.name, cfg.teacher.embed_dim) == ("dnn", 16)
    named = load_config(None, {"student.name": "deepfm"}).student
    assert (named.name, named.embed_dim) == ("deepfm", 32)  # another model keeps the student's other defaults


def test_merged_section_is_still_validated():
    with pytest.raises(ConfigError, match=r"student.*dropout"):
        load_config(None, {"student.dropout": 1.5})
    with pytest.raises(ConfigError, match="theta_low"):
        load_config(None, {"online.theta_low": 0.5})  # against the default theta_high 0.1


# ---------------------------------------------------------------- time split


@pytest.mark.parametrize(
    "periods, keys",
    [
        ({"teacher_periods": [0, 9]}, ("data.test_periods [8, 9)", "data.teacher_periods [0, 9)", "overlaps")),
        ({"window_periods": [6, 10]}, ("data.test_periods [8, 9)", "data.window_periods [6, 10)", "overlaps")),
        ({"stream_periods": [7, 16]}, ("data.stream_periods [7, 16)", "data.window_periods [6, 8)", "overlaps")),
        ({"stream_periods": [8, 16]}, ("data.test_periods [8, 9)", "data.stream_periods [8, 16)", "overlaps")),
        ({"test_periods": [3, 4]}, ("data.test_periods [3, 4)", "data.teacher_periods [0, 6)", "overlaps")),
        ({"teacher_periods": [10, 12], "window_periods": [12, 14], "test_periods": [2, 3], "stream_periods": [3, 9]},
         ("data.test_periods [2, 3)", "data.teacher_periods [10, 12)", "comes before")),
    ],
)
def test_leaking_time_splits_are_refused_naming_both_ranges(periods, keys):
    with pytest.raises(ConfigError) as err:
        load_config(None, {f"data.{k}": v for k, v in periods.items()})
    for k in keys:
        assert k in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "periods",
    [
        {},  # the default: history 0-5, window 6-7, test 8, stream 9-15
        # the paper's protocol (issue 16): history 4 / window 4 / stream 1 / test 1, test after the stream
        {"teacher_periods": [0, 4], "window_periods": [4, 8], "stream_periods": [8, 9], "test_periods": [9, 10]},
        # the teacher may have seen the window (the released code trains it on both)
        {"teacher_periods": [0, 8], "window_periods": [6, 8], "test_periods": [8, 9], "stream_periods": [9, 16]},
    ],
)
def test_sound_time_splits_load(periods):
    cfg = load_config(None, {f"data.{k}": v for k, v in periods.items()})
    assert all(list(getattr(cfg.data, f"{k}")) == v for k, v in periods.items())


def test_shipped_configs_load():
    from crossadapt.cli import CONFIG_DIR

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        load_config(path)  # each one a sound time split
