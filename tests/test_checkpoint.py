"""Checkpoints: exact round trips, and a clear error for every way a file can be wrong."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from crossadapt.config import ModelConfig
from crossadapt.errors import CheckpointError, FeatureMapMismatch
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.models import LoadedCheckpoint, build_model, load_checkpoint, read_checkpoint, save_checkpoint
from crossadapt.models.checkpoint import FORMAT

NAMES = ["lr", "dnn", "deepfm", "dcn", "dcnv2", "xdeepfm", "autoint"]
VOCABS = [20, 27, 34, 41, 50]


def cfg_for(name: str, embed_dim: int = 8) -> ModelConfig:
    return ModelConfig(name=name, embed_dim=embed_dim, hidden_units=(32, 16), num_cross_layers=2,
                       cin_layer_units=(8, 8), attention_dim=8, num_heads=2, batch_norm=True, dropout=0.1)


@pytest.fixture(scope="module")
def fm() -> FeatureMap:
    cats = tuple(FieldSpec(f"c{i}", vocab_size=v) for i, v in enumerate(VOCABS))
    return FeatureMap("toy", cats + (FieldSpec("price", type="numeric"),), meta={"note": "meta is ignored"})


def batch(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.stack([torch.randint(0, v, (n,), generator=g) for v in VOCABS], dim=1)
    return ids, torch.randn(n, 1, generator=g)


def trained(name: str, fm: FeatureMap) -> nn.Module:
    """A model whose weights and batch-norm statistics moved away from their init."""
    torch.manual_seed(0)
    model = build_model(cfg_for(name), fm)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids, dense = batch()
    for _ in range(3):
        loss = model(ids, dense).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture()
def saved(tmp_path: Path, fm: FeatureMap) -> Path:
    return save_checkpoint(tmp_path / "ck.pt", trained("dnn", fm), cfg_for("dnn"), fm, {"epoch": 2})


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_reproduces_identical_logits(name: str, tmp_path: Path, fm: FeatureMap) -> None:
    model = trained(name, fm)
    extra = {"job": "teacher", "valid_auc": np.float64(0.75), "history": [{"epoch": np.int64(1)}], "ok": True}
    path = save_checkpoint(tmp_path / "sub" / "best.pt", model, cfg_for(name), fm, extra)
    ck = load_checkpoint(path, expected_feature_map=fm)
    assert isinstance(ck, LoadedCheckpoint)
    assert ck.model_cfg == cfg_for(name)  # tuples restored from the stored lists
    assert ck.feature_map.fingerprint() == fm.fingerprint()
    assert ck.extra == {"job": "teacher", "valid_auc": 0.75, "history": [{"epoch": 1}], "ok": True}
    assert type(ck.extra["valid_auc"]) is float
    assert not ck.model.training
    ids, dense = batch()
    with torch.no_grad():
        assert torch.equal(ck.model(ids, dense), model(ids, dense))


def test_saved_file_is_the_documented_plain_dict(saved: Path, fm: FeatureMap) -> None:
    raw = torch.load(saved, weights_only=True)
    assert set(raw) == {"format", "state_dict", "model_config", "feature_map", "extra"}
    assert raw["format"] == FORMAT == "crossadapt-checkpoint-v1"
    assert raw["model_config"]["hidden_units"] == [32, 16]
    assert raw["feature_map"] == fm.to_dict()
    assert raw["state_dict"]["embedding.table.weight"].shape == (sum(VOCABS), 8)
    assert [p.name for p in saved.parent.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_other_feature_map_raises_mismatch(saved: Path, fm: FeatureMap) -> None:
    fields = list(fm.fields)
    fields[2] = dataclasses.replace(fields[2], vocab_size=35)
    other = FeatureMap("toy", tuple(fields))
    with pytest.raises(FeatureMapMismatch, match=r"checkpoint .*ck\.pt.*field 'c2' differs"):
        load_checkpoint(saved, expected_feature_map=other)
    # Only meta differs: the same encoding, so it loads.
    load_checkpoint(saved, expected_feature_map=FeatureMap("toy", fm.fields, meta={"x": 1}))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_file(saved: Path, keep: float) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"ck\.pt: not a readable checkpoint"):
        load_checkpoint(saved)


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"garbage\.pt: not a readable checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        load_checkpoint(path)


def test_wrong_format_tag_and_foreign_objects(tmp_path: Path, saved: Path) -> None:
    raw = read_checkpoint(saved)
    path = tmp_path / "other.pt"
    torch.save({**raw, "format": "fuxictr-v2"}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt: not a crossadapt-checkpoint-v1 file.*fuxictr-v2"):
        load_checkpoint(path)
    torch.save(raw["state_dict"], path)  # a bare state_dict
    with pytest.raises(CheckpointError, match="format tag"):
        load_checkpoint(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="format tag: 'Tensor'"):
        load_checkpoint(path)
    del raw["extra"]
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"lacks key\(s\) \['extra'\]"):
        load_checkpoint(path)


class Payload:
    """Not an allowed type for weights_only loading: unpickling it must not run, just fail."""


def test_arbitrary_objects_are_refused_at_load(tmp_path: Path, saved: Path) -> None:
    raw = read_checkpoint(saved)
    path = tmp_path / "evil.pt"
    torch.save({**raw, "extra": {"x": Payload()}}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_wrong_shape_names_the_key_and_shapes(tmp_path: Path, saved: Path) -> None:
    raw = read_checkpoint(saved)
    raw["model_config"]["embed_dim"] = 4  # the config no longer matches the weights
    path = tmp_path / "bad.pt"
    torch.save(raw, path)
    expected = (r"bad\.pt: .*key 'embedding\.numeric' has shape \(1, 8\), expected \(1, 4\); "
                r"key 'embedding\.table\.weight' has shape \(172, 8\), expected \(172, 4\)")
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_missing_and_unexpected_keys(tmp_path: Path, saved: Path) -> None:
    raw = read_checkpoint(saved)
    sd = raw["state_dict"]
    sd["head.extra"] = torch.zeros(1)
    del sd["embedding.numeric"]
    path = tmp_path / "keys.pt"
    torch.save(raw, path)
    expected = r"missing key\(s\) \['embedding\.numeric'\], unexpected key\(s\) \['head\.extra'\]"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_bad_config_inside_checkpoint(tmp_path: Path, saved: Path) -> None:
    raw = read_checkpoint(saved)
    path = tmp_path / "cfg.pt"
    torch.save({**raw, "model_config": {**raw["model_config"], "name": "widedeep"}}, path)
    with pytest.raises(CheckpointError, match=r"cfg\.pt: cannot rebuild the model.*unknown model 'widedeep'"):
        load_checkpoint(path)
    torch.save({**raw, "model_config": {**raw["model_config"], "layers": 3}}, path)
    with pytest.raises(CheckpointError, match=r"cfg\.pt: .*model\.layers"):
        load_checkpoint(path)


def test_save_refuses_non_plain_extra_and_wrong_config(tmp_path: Path, fm: FeatureMap) -> None:
    model = build_model(cfg_for("dnn"), fm)
    with pytest.raises(CheckpointError, match=r"extra\['cfg'\]: ModelConfig is not a plain Python value"):
        save_checkpoint(tmp_path / "a.pt", model, cfg_for("dnn"), fm, {"cfg": cfg_for("dnn")})
    with pytest.raises(CheckpointError, match=r"model is a DNN but model_cfg.name is 'dcnv2'"):
        save_checkpoint(tmp_path / "a.pt", model, cfg_for("dcnv2"), fm)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_file(tmp_path: Path, fm: FeatureMap, saved: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    before = saved.read_bytes()

    def crash(obj, f) -> None:
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(saved, build_model(cfg_for("dnn"), fm), cfg_for("dnn"), fm)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == ["ck.pt"]
    load_checkpoint(saved)


def test_saves_the_module_inside_a_ddp_like_wrapper(tmp_path: Path, fm: FeatureMap) -> None:
    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    model = trained("dcnv2", fm)
    path = save_checkpoint(tmp_path / "w.pt", Wrapper(model), cfg_for("dcnv2"), fm)
    assert "embedding.table.weight" in read_checkpoint(path)["state_dict"]
    ids, dense = batch()
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path).model(ids, dense), model(ids, dense))


def test_read_checkpoint_mmap_row_range(saved: Path) -> None:
    full = read_checkpoint(saved)["state_dict"]["embedding.table.weight"]
    mapped = read_checkpoint(saved, mmap=True)["state_dict"]["embedding.table.weight"]
    assert torch.equal(mapped[20:47], full[20:47])
    assert not torch.equal(full[20:47], torch.zeros(27, 8))
