"""Bring your own: a user student class, a deployed TorchScript teacher, and export for serving.

The world: a small time-stamped CSV click log drawn from a factor model, and a "deployed" teacher
defined here (that factor model, TorchScript-compiled) with its own tables and vocabularies. The
end-to-end test runs prepare -> transfer -> online -> export on it with the student class
``tests.byo_models:TinyGated`` of a test module, then scores the export in a fresh Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from crossadapt.config import (
    DataConfig,
    DistillConfig,
    ExperimentConfig,
    ModelConfig,
    OnlineConfig,
    OptimConfig,
    ResourcesConfig,
    TableSchema,
    TeacherImportConfig,
    TrackingConfig,
)
from crossadapt.data import arrays as A
from crossadapt.errors import CheckpointError, ConfigError, DataError
from crossadapt.featuremap import FeatureMap
from crossadapt.models import build_model, save_checkpoint
from crossadapt.models.export import export_student
from crossadapt.models.registry import check_model

DAY = 86400
T0 = 1_709_251_200  # 2024-03-01T00:00:00Z
DAYS, ROWS, USERS, NEW_USERS, ITEMS, SITES, K = 6, 300, 60, 10, 30, 4, 4


class FactorTeacher(nn.Module):
    """The deployed model: user . item + site bias + price weight + bias (site table 2 wide)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, sites: torch.Tensor) -> None:
        super().__init__()
        self.user = nn.Embedding.from_pretrained(users, freeze=False)
        self.item = nn.Embedding.from_pretrained(items, freeze=False)
        self.site = nn.Embedding.from_pretrained(sites, freeze=False)
        self.price = nn.Parameter(torch.tensor(-0.4))
        self.bias = nn.Parameter(torch.tensor(-0.5))

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        u, v, s = self.user(ids[:, 0]), self.item(ids[:, 1]), self.site(ids[:, 2])
        return (u * v).sum(1) + s[:, 0] + self.price * dense[:, 0] + self.bias


class OneInput(nn.Module):
    """A teacher with the wrong signature (ids only)."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.float().sum(1)


def make_world(folder: Path, seed: int = 0) -> dict[str, Path]:
    """``logs.csv`` (unix-seconds times, 0/1 ``click``, one malformed line) and the teacher's
    ``model.pt`` (TorchScript), ``tables.pt`` and ``vocab.json`` (row 0: OOV). Users ``u60``-``u69``
    appear only in the last two days and are not in the teacher's vocabulary."""
    rng = np.random.default_rng(seed)
    users = rng.normal(0, 0.8, (USERS + NEW_USERS, K)).astype(np.float32)
    items = rng.normal(0, 0.8, (ITEMS, K)).astype(np.float32)
    site_bias = rng.normal(0, 0.5, SITES).astype(np.float32)
    lines = ["ts,user,item,site,price,click"]
    for day in range(DAYS):
        n_users = USERS + (NEW_USERS if day >= DAYS - 2 else 0)
        u, i, s = rng.integers(0, n_users, ROWS), rng.integers(0, ITEMS, ROWS), rng.integers(0, SITES, ROWS)
        price = rng.lognormal(0, 0.5, ROWS).astype(np.float32)
        logit = (users[u] * items[i]).sum(1) + site_bias[s] - 0.4 * price - 0.5
        click = (rng.random(ROWS) < 1 / (1 + np.exp(-logit))).astype(int)
        t = T0 + day * DAY + np.sort(rng.integers(0, DAY, ROWS))
        lines += [f"{t[r]},u{u[r]},i{i[r]},s{s[r]},{price[r]:.3f},{click[r]}" for r in range(ROWS)]
    lines.insert(50, "not-a-time,u1,i1,s1,1.0,1")
    (folder / "logs.csv").write_text("\n".join(lines) + "\n")
    zero = lambda d: np.zeros((1, d), np.float32)  # noqa: E731 - the OOV row
    site_table = np.hstack([site_bias[:, None], rng.normal(0, 0.1, (SITES, 1)).astype(np.float32)])
    tables = {"user": torch.from_numpy(np.vstack([zero(K), users[:USERS]])),
              "item": torch.from_numpy(np.vstack([zero(K), items])),
              "site": torch.from_numpy(np.vstack([zero(2), site_table]))}
    vocab = {"oov_index": 0, "fields": {"user": {f"u{k}": k + 1 for k in range(USERS)},
                                        "item": {f"i{k}": k + 1 for k in range(ITEMS)},
                                        "site": {f"s{k}": k + 1 for k in range(SITES)}}}
    torch.jit.script(FactorTeacher(tables["user"], tables["item"], tables["site"]).eval()).save(str(folder / "model.pt"))
    torch.save(tables, folder / "tables.pt")
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return {"logs": folder / "logs.csv", "program": folder / "model.pt", "tables": folder / "tables.pt",
            "vocab": folder / "vocab.json"}


def byo_config(folder: Path, world: dict[str, Path], **teacher_files) -> ExperimentConfig:
    files = {"program": str(world["program"]), "tables": str(world["tables"]), "vocabularies": str(world["vocab"]),
             **teacher_files}
    return ExperimentConfig(
        out_dir=str(folder / "run"), seeds=(0,), methods=("crossadapt",),
        data=DataConfig(source="table", raw_path=str(world["logs"]), root=str(folder / "data"), min_count=1,
                        teacher_periods=(0, 2), window_periods=(2, 4), test_periods=(4, 5), stream_periods=(5, 6),
                        schema=TableSchema(label="click", categorical=("user", "item", "site"), numeric=("price",),
                                           time="ts", period="1d")),
        teacher_import=TeacherImportConfig(**files),
        student=ModelConfig(name="tests.byo_models:TinyGated", embed_dim=4),
        optim=OptimConfig(lr=1e-2, epochs=2, patience=2, batch_size=128),
        distill=DistillConfig(phase1_epochs=1, phase2_epochs=1, r=0.5, batch_size=64),
        online=OnlineConfig(methods=("crossadapt",), batch_size=100, tau=1, reservoir_size=300),
        resources=ResourcesConfig(num_workers=1, cpus_per_worker=1.0, use_gpu="false", checkpoint_interval_s=0),
        tracking=TrackingConfig(wandb="disabled"),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("byo")
    return folder, make_world(folder)


def tiny_fm(numeric: bool = True) -> FeatureMap:
    fields = [{"name": "a", "type": "categorical", "vocab_size": 7}, {"name": "b", "type": "categorical", "vocab_size": 5}]
    if numeric:
        fields.append({"name": "x", "type": "numeric", "encoder": "none"})
    return FeatureMap.from_dict({"dataset": "t", "fields": fields, "label": "label", "time": "ts"})


# ---------------------------------------------------------------- user student classes


def test_user_class_is_built_by_module_and_class_name():
    fm = tiny_fm()
    model = build_model(ModelConfig(name="tests.byo_models:TinyGated", embed_dim=3), fm)
    assert type(model).__module__ == "tests.byo_models" and type(model).__name__ == "TinyGated"
    check_model(ModelConfig(name="tests.byo_models:TinyGated", embed_dim=3), fm, "student")


@pytest.mark.parametrize("name, words", [
    ("tests.byo_models.TinyGated", "package.module:ClassName"),           # not module:Class, and no zoo model
    ("no_such_module_xyz:Net", "cannot import 'no_such_module_xyz:Net'"),
    ("tests.byo_models:Missing", "has no 'Missing'"),
    ("tests.byo_models:NOT_A_CLASS", "not a torch.nn.Module subclass"),
    ("tests.byo_models:NoFeatureMap", "(feature_map, cfg)"),
    ("tests.byo_models:NoSharedEmbedding", "FeatureEmbedding"),
    ("tests.byo_models:WrongOutput", "logits of shape (B,)"),
    ("os:system", "not a torch.nn.Module subclass"),                  # importlib, never eval: nothing runs
])
def test_a_user_class_that_does_not_fit_is_named(name, words):
    with pytest.raises(ConfigError) as e:
        check_model(ModelConfig(name=name, embed_dim=3), tiny_fm(), "student")
    assert str(e.value).startswith("student.name:") and words in str(e.value)


# ---------------------------------------------------------------- export


def scored_in_fresh_process(folder: Path, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """Logits of the exported program in a new Python without crossadapt on its path (torch only)."""
    torch.save({"ids": ids, "dense": dense}, folder / "batch.pt")
    script = ("import json, sys, torch\n"
              "m = json.load(open('export/manifest.json'))\n"
              "p = torch.export.load('export/' + m['program']).module()\n"
              "b = torch.load('batch.pt')\n"
              "torch.save(p(b['ids'], b['dense']).detach(), 'logits.pt')\n"
              "assert not any(k.split('.')[0] == 'crossadapt' for k in sys.modules), 'crossadapt was imported'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, check=True, timeout=300)
    return torch.load(folder / "logits.pt")


def test_export_gives_the_same_logits_in_a_process_without_crossadapt(tmp_path):
    fm = tiny_fm()
    torch.manual_seed(0)
    cfg = ModelConfig(name="dcnv2", embed_dim=4, hidden_units=(8,), num_cross_layers=1)
    model = build_model(cfg, fm).eval()
    ckpt = save_checkpoint(tmp_path / "student.pt", model, cfg, fm)
    manifest = export_student(ckpt, tmp_path / "export")
    assert {p.name for p in (tmp_path / "export").iterdir()} == {"model.pt2", "feature_map.json", "tables.pt",
                                                                  "manifest.json"}
    assert manifest["vocabularies"] is None and manifest["inputs"]["ids"]["fields"] == ["a", "b"]
    g = torch.Generator().manual_seed(1)
    ids = torch.stack([torch.randint(0, 7, (33,), generator=g), torch.randint(0, 5, (33,), generator=g)], 1)
    dense = torch.randn(33, 1, generator=g)
    with torch.no_grad():
        want = model(ids, dense)
    got = scored_in_fresh_process(tmp_path, ids, dense)
    assert got.shape == (33,) and float((got - want).abs().max()) <= 1e-6
    tables = torch.load(tmp_path / "export" / "tables.pt")
    assert torch.equal(tables["b"], model.embedding.table.weight[7:12]) and tables["x"].shape == (4,)
    with pytest.raises(DataError, match="not empty"):
        export_student(ckpt, tmp_path / "export")


# ---------------------------------------------------------------- imported teacher: bad files


def _prepare(cfg):
    from crossadapt.experiment.bring_your_own import check_bring_your_own
    from crossadapt.experiment.prepare import prepare_data

    return check_bring_your_own(cfg, prepare_data(cfg))


def test_teacher_tables_that_do_not_match_its_vocabularies_are_named(world, tmp_path):
    folder, w = world
    tables = torch.load(w["tables"])
    torch.save({**tables, "item": tables["item"][:10]}, tmp_path / "short.pt")  # vocab names rows up to 30
    with pytest.raises(DataError, match=r"field 'item': value 'i29' maps to row 30 .* has 10 rows"):
        _prepare(byo_config(tmp_path, w, tables=str(tmp_path / "short.pt")))
    torch.save({k: v for k, v in tables.items() if k != "site"}, tmp_path / "no_site.pt")
    with pytest.raises(DataError, match=r"field 'site' of .*vocab.json has no table"):
        _prepare(byo_config(tmp_path, w, tables=str(tmp_path / "no_site.pt")))
    assert not (tmp_path / "data").exists()  # checked before the log is converted


def test_teacher_with_the_wrong_signature_is_named_before_training(world, tmp_path):
    folder, w = world
    torch.jit.script(OneInput()).save(str(tmp_path / "one_input.pt"))
    with pytest.raises(CheckpointError, match=r"teacher_import.program: .*one_input.pt: the program does not run as "
                                              r"forward\(ids int64 \[3, 3\], dense float32 \[3, 1\]\)"):
        _prepare(byo_config(tmp_path, w, program=str(tmp_path / "one_input.pt")))
    assert not (tmp_path / "run" / "teacher").exists() or not any((tmp_path / "run" / "teacher").rglob("teacher.json"))


def test_encoder_adopts_the_teachers_vocabularies(world, tmp_path):
    folder, w = world
    cfg = _prepare(byo_config(tmp_path, w))
    fm = FeatureMap.load(cfg.data.root)
    assert fm.vocab_sizes == [USERS + 1, ITEMS + 1, SITES + 1]
    assert cfg.teacher.name == "imported" and cfg.teacher.embed_dim == K
    data = A.read_periods(cfg.data.root, range(0, DAYS), fm)
    raw = [ln.split(",") for ln in w["logs"].read_text().splitlines()[1:] if not ln.startswith("not-a-time")]
    want = np.array([[int(r[1][1:]) + 1 if int(r[1][1:]) < USERS else 0, int(r[2][1:]) + 1, int(r[3][1:]) + 1]
                     for r in raw])
    assert np.array_equal(data["ids"], want)  # the teacher's rows, new users at its OOV row 0


def test_a_frozen_teacher_program_is_reported_and_stays_frozen_online(world, tmp_path):
    from crossadapt.config import to_dict
    from crossadapt.models.teacher_import import read_manifest, teacher_trainable
    from crossadapt.online.actors import TeacherWorker

    folder, w = world
    frozen = torch.jit.freeze(torch.jit.load(str(w["program"])).eval())  # parameters folded into constants
    frozen.save(str(tmp_path / "frozen.pt"))
    cfg = byo_config(tmp_path, w, program=str(tmp_path / "frozen.pt"))
    cfg = _prepare(cfg)
    manifest = next((tmp_path / "run" / "teacher").glob("imported-*/teacher.json"))
    assert read_manifest(manifest)["trainable"] is False and teacher_trainable(manifest) is False
    fm = FeatureMap.load(cfg.data.root)
    worker = TeacherWorker(str(manifest), fm.to_dict(), to_dict(cfg.online), updates=True, device="cpu")
    assert worker.updates is False  # asked to update, but nothing in the program can be trained
    data = A.read_periods(cfg.data.root, [5], fm)
    batch = {k: v[:50] for k, v in data.items()}
    teacher = torch.jit.load(str(w["program"])).eval()
    with torch.no_grad():
        want = teacher(torch.from_numpy(batch["ids"]), torch.from_numpy(batch["dense"])).numpy()
    assert np.allclose(worker.soft_labels(batch), want, atol=1e-5)  # float32 constant folding: rounding only


# ---------------------------------------------------------------- end to end


def test_csv_teacher_student_prepare_transfer_online_export(ray_session, world, tmp_path):
    from crossadapt.experiment.bring_your_own import checkpoint_to_export
    from crossadapt.experiment.run import run_experiment, run_online_stage
    from crossadapt.models import load_checkpoint

    folder, w = world
    cfg = byo_config(tmp_path, w)
    results = run_experiment(cfg, stages=("offline",))
    assert results["teacher"]["imported"] is True and results["teacher"]["trainable"] is True
    # the teacher is the data's own model: far above chance on the test day
    assert results["teacher"]["auc"] > 0.7
    student = results["offline"]["crossadapt"]["auc"][0]
    assert 0.6 < student <= 1.0  # chance sd on 300 test rows is about 0.035
    online = run_online_stage(cfg)
    run = online["online"]["crossadapt"]["runs"][0]
    final = Path(run["final_checkpoint"])
    ck = load_checkpoint(final)
    assert ck.model_cfg.name == "tests.byo_models:TinyGated" and ck.extra["online_method"] == "crossadapt"
    assert str(final) == checkpoint_to_export(cfg)
    manifest = export_student(final, tmp_path / "export", data_root=cfg.data.root)
    assert manifest["vocabularies"] == "vocab.json"
    fm = FeatureMap.load(cfg.data.root)
    data = A.read_periods(cfg.data.root, [5], fm)
    ids, dense = torch.from_numpy(data["ids"][:64]), torch.from_numpy(data["dense"][:64])
    with torch.no_grad():
        want = ck.model.eval()(ids, dense)
    got = scored_in_fresh_process(tmp_path, ids, dense)
    assert float((got - want).abs().max()) <= 1e-6
