"""Safe defaults: atomic checkpoints and results, weights_only loading, loopback-only Ray, no secrets
in configs or results. Nothing here starts Ray.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import crossadapt
from crossadapt import atomic
from crossadapt.config import ModelConfig, load_config, to_dict
from crossadapt.errors import CheckpointError, ConfigError
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.models import build_model, load_checkpoint, read_checkpoint, save_checkpoint
from crossadapt.projection.actors import open_checkpoint_tensor

PACKAGE = Path(crossadapt.__file__).resolve().parent
FM = FeatureMap("toy", (FieldSpec("a", vocab_size=5), FieldSpec("b", vocab_size=3)))
CFG = ModelConfig(name="dnn", embed_dim=4, hidden_units=(8,))


def new_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(CFG, FM)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "ck" / "best.pt", new_model(0), CFG, FM, {"epoch": 1})


def package_sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


# ---------------------------------------------------------------- atomic checkpoints and results


def test_checkpoint_save_leaves_only_the_file(saved: Path) -> None:
    save_checkpoint(saved, new_model(1), CFG, FM, {"epoch": 2})  # replace it
    assert sorted(p.name for p in saved.parent.iterdir()) == ["best.pt"]
    assert load_checkpoint(saved, expected_feature_map=FM).extra == {"epoch": 2}


@pytest.mark.parametrize("crash", [OSError("disk full"), KeyboardInterrupt()])
def test_checkpoint_crash_mid_write_keeps_the_previous_file(saved: Path, monkeypatch: pytest.MonkeyPatch,
                                                            crash: BaseException) -> None:
    before = saved.read_bytes()

    def half_then_crash(obj, f) -> None:
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise crash

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(type(crash)):
        save_checkpoint(saved, new_model(1), CFG, FM)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["best.pt"]  # no temp file left
    load_checkpoint(saved, expected_feature_map=FM)


def test_checkpoint_with_unsavable_extra_is_refused_before_writing(saved: Path) -> None:
    before = saved.read_bytes()
    with pytest.raises(CheckpointError, match=r"extra\['when'\]: object is not a plain Python value"):
        save_checkpoint(saved, new_model(1), CFG, FM, {"when": object()})
    assert saved.read_bytes() == before and sorted(p.name for p in saved.parent.iterdir()) == ["best.pt"]


def test_results_json_crash_at_rename_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.json"
    atomic.write_json(path, {"auc": 0.8})
    before = path.read_bytes()

    def no_rename(src, dst) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with pytest.raises(OSError, match="rename failed"):
        atomic.write_json(path, {"auc": 0.9})
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["results.json"]


def test_results_with_nan_are_written_as_null(tmp_path: Path) -> None:
    """NaN is not JSON: an undefined figure is null, never an unparsable token, and never a crash
    (a refused outcome.json once failed a whole Ray Train run over one undefined AUC)."""
    path = tmp_path / "results.json"
    atomic.write_json(path, {"auc": float("nan"), "runs": [{"loss": float("inf")}, (1.5, float("-inf"))]})
    text = path.read_text()
    assert json.loads(text) == {"auc": None, "runs": [{"loss": None}, [1.5, None]]}
    assert "NaN" not in text and "Infinity" not in text and os.listdir(tmp_path) == ["results.json"]


def test_evaluate_on_a_period_without_clicks_prints_strict_json(saved: Path, tmp_path: Path, capsys) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crossadapt import cli

    root = tmp_path / "data"
    FM.save(root)
    (root / "period=0").mkdir()
    pq.write_table(pa.table({"label": pa.array([0] * 6, pa.int8()), "a": list(range(5)) + [0], "b": [0, 1, 2] * 2}),
                   root / "period=0" / "part-0.parquet")
    with pytest.warns(UserWarning, match="undefined"):
        assert cli.main(["evaluate", "--checkpoint", str(saved), "--data", str(root), "--periods", "0"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert out["auc"] is None and out["bias"] is None and out["n"] == 6 and out["logloss"] > 0


# ---------------------------------------------------------------- weights_only loading


class Payload:
    """Unpickling this would create ``marker``: a stand-in for code run from a checkpoint file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch_zip", "torch_legacy", "plain_pickle"])
def test_checkpoint_with_a_code_payload_is_refused_without_running_it(tmp_path: Path, saved: Path,
                                                                      writer: str) -> None:
    marker = tmp_path / "pwned"
    obj = {**read_checkpoint(saved), "extra": {"x": Payload(marker)}}
    path = tmp_path / "evil.pt"
    if writer == "plain_pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=writer == "torch_zip")
    for load in (load_checkpoint, read_checkpoint):
        with pytest.raises(CheckpointError) as info:
            load(path)
        msg = str(info.value)
        assert "evil.pt" in msg and "weights_only=True" in msg
        if writer != "plain_pickle":  # a protocol-4 pickle is refused at its first frame, before any global
            assert "(it asks for builtins.open)" in msg or "(it asks for io.open)" in msg
        assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg  # no unsafe advice
    if writer == "torch_zip":  # the projection actors' memory-mapped reader (zip format only)
        with pytest.raises(CheckpointError, match="evil.pt"):
            open_checkpoint_tensor(path)
    assert not marker.exists()


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    calls = []
    for src in package_sources():
        for node in ast.walk(ast.parse(src.read_text(), str(src))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                kw = {k.arg: k.value for k in node.keywords}
                safe = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                calls.append((f"{src.relative_to(PACKAGE.parent)}:{node.lineno}", safe))
    assert calls, "expected torch.load calls (checkpoint reader)"
    assert [where for where, safe in calls if not safe] == []


def test_no_pickle_loads_in_the_package() -> None:
    """Only torch.load(weights_only=True) deserialises files; a bare pickle.load would run any payload."""
    offenders = []
    for src in package_sources():
        for node in ast.walk(ast.parse(src.read_text(), str(src))):
            if (isinstance(node, ast.Attribute) and node.attr in ("load", "loads", "Unpickler")
                    and isinstance(node.value, ast.Name) and node.value.id in ("pickle", "cloudpickle", "dill")):
                offenders.append(f"{src.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == []


# ---------------------------------------------------------------- network exposure


def test_local_ray_and_its_dashboard_bind_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard runs (Ray Train's placement-group cleaner needs its State API) on 127.0.0.1 only."""
    import ray

    from crossadapt import ray_init

    seen: dict = {}
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    ray_init.init_ray(num_cpus=1)
    assert seen["include_dashboard"] is True
    assert seen["dashboard_host"] == "127.0.0.1" and seen["_node_ip_address"] == "127.0.0.1"


def test_nothing_in_the_package_binds_to_all_interfaces() -> None:
    offenders = [
        f"{src.relative_to(PACKAGE.parent)}:{node.lineno}"
        for src in package_sources()
        for node in ast.walk(ast.parse(src.read_text(), str(src)))
        if isinstance(node, ast.Constant) and node.value in ("0.0.0.0", "::")
    ]
    assert offenders == []


# ---------------------------------------------------------------- secrets

SECRET = "0123456789abcdef0123456789abcdef01234567"  # the shape of a W&B API key


def test_wandb_key_in_the_environment_never_reaches_config_or_results(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    yaml_path = tmp_path / "exp.yaml"
    yaml_path.write_text("tracking:\n  wandb: online\n  project: p\n  experiment: e\n")
    cfg = load_config(yaml_path, {"distill.r": 0.2})
    out = tmp_path / "run"
    atomic.write_json(out / "config.json", to_dict(cfg))
    atomic.write_json(out / "results.json", {"config": to_dict(cfg), "metrics": {"auc": 0.8}})
    for path in out.iterdir():
        assert SECRET not in path.read_text()
    assert SECRET not in repr(cfg)


def test_a_key_pasted_into_the_config_is_refused_without_echoing_it(tmp_path: Path) -> None:
    yaml_path = tmp_path / "exp.yaml"
    yaml_path.write_text(f"tracking:\n  api_key: {SECRET}\n")
    with pytest.raises(ConfigError, match=r"tracking\.api_key") as info:
        load_config(yaml_path)
    assert SECRET not in str(info.value)
