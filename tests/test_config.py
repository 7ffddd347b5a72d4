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
