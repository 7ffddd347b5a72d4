"""Fingerprints (no Ray): what changes a stage's fingerprint, and what must not."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossadapt import fingerprint as F
from crossadapt.config import (
    DataConfig,
    DistillConfig,
    ExperimentConfig,
    ModelConfig,
    OnlineConfig,
    ProjectionConfig,
    ResourcesConfig,
    SyntheticConfig,
    TrackingConfig,
)
from crossadapt.data.synthetic import generate
from crossadapt.errors import DataError
from crossadapt.experiment.offline import plan_offline
from crossadapt.featuremap import FeatureMap
from crossadapt.train.engine import Phase, TrainJob

METHODS = ("scratch", "kd", "crossadapt", "crossadapt_no_projection", "crossadapt_no_phases", "crossadapt_full_window")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp") / "data"
    generate(SyntheticConfig(num_fields=3, vocab_size=50, rows_per_period=300, num_periods=6, drift_periods=(5,),
                             seed=1), root)
    return root, FeatureMap.load(root)


def _cfg(root: Path, out: str = "/tmp/out-a", **changes) -> ExperimentConfig:
    cfg = ExperimentConfig(out_dir=out, seeds=(0, 1),
                           data=DataConfig(root=str(root), teacher_periods=(0, 3), window_periods=(3, 4),
                                           test_periods=(4, 5), stream_periods=(5, 6)))
    return dataclasses.replace(cfg, **changes)


def _fps(cfg: ExperimentConfig, fm: FeatureMap) -> dict[str, str]:
    plan = plan_offline(cfg, fm, cfg.out_dir)
    out = {"teacher": plan.teacher.fingerprint, "projection": plan.projection}
    for m in METHODS:
        for s in (0, 1):
            out[f"{m}-{s}"] = plan.student(m, s).fingerprint
    return out


def _changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {k for k in a if a[k] != b[k]}


def test_digest_is_canonical():
    assert F.digest({"a": 1, "b": [1, 2.5]}) == F.digest({"b": [1, 2.5], "a": 1})
    assert F.digest({"a": 1}) != F.digest({"a": 2})
    assert F.digest({"a": 0.1}) != F.digest({"a": 0.1000001})
    assert len(F.digest({})) == 64 and F.short(F.digest({})) == F.digest({})[: F.SHORT]


def test_code_fingerprint_follows_the_sources(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    first = F.code_fingerprint.__wrapped__(str(pkg))
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\x00")
    (pkg / "notes.txt").write_text("not code")
    assert F.code_fingerprint.__wrapped__(str(pkg)) == first
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert F.code_fingerprint.__wrapped__(str(pkg)) != first
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (pkg / "sub" / "b.py").rename(pkg / "b.py")  # same bytes, another module path
    assert F.code_fingerprint.__wrapped__(str(pkg)) != first
    assert F.code_fingerprint() == F.code_fingerprint.__wrapped__(None)  # the crossadapt package itself


def _write(root: Path, period: int, labels: list[int]) -> None:
    folder = root / f"period={period}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"label": pa.array(labels, pa.int8()), "f0": pa.array(range(len(labels)), pa.int64())}),
                   folder / "part-00000.parquet")


def test_data_fingerprint_is_the_files_content_not_their_place_or_time(tmp_path):
    fmd = {"dataset": "t", "fields": [{"name": "f0"}], "meta": {"note": "a"}}
    a = tmp_path / "a"
    for k in range(3):
        _write(a, k, [0, 1, 0, 1])
    base = F.data_fingerprint(a, fmd, [0, 1])
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b, copy_function=shutil.copy)  # a copy: new paths and modification times
    assert F.data_fingerprint(b, fmd, [0, 1]) == base
    assert F.data_fingerprint(a, {**fmd, "meta": {"note": "b"}}, [0, 1]) == base  # meta is no encoding
    assert F.data_fingerprint(a, {**fmd, "fields": [{"name": "f1"}]}, [0, 1]) != base
    assert F.data_fingerprint(a, fmd, [0, 2]) != base
    _write(b, 1, [1, 1, 0, 1])  # one label flipped: same rows, same size (and, here, the same footer)
    assert F.data_fingerprint(b, fmd, [0, 1]) != base
    assert F.data_fingerprint(b, fmd, [0]) == F.data_fingerprint(a, fmd, [0])
    bad = b / "period=1" / "part-00000.parquet"
    bad.write_bytes(bad.read_bytes()[:-5])  # truncated
    with pytest.raises(DataError, match="part-00000.parquet"):
        F.data_fingerprint(b, fmd, [0, 1])
    with pytest.raises(DataError, match="period 7"):
        F.data_fingerprint(a, fmd, [7])


def test_train_fingerprint_is_what_is_learned_not_where():
    job = TrainJob(name="a", run_dir="/x", model=ModelConfig(), phases=(Phase(3, 1e-3),), seed=0,
                   teacher_checkpoint="/t/best.pt", alpha=1.0)
    data = {"rows": "d", "valid_fraction": 0.1}
    fp = F.train_fingerprint(job, data, 2, "c", {"teacher": "T"})
    same = dataclasses.replace(job, name="b", run_dir="/y", checkpoint_interval_s=0.0, teacher_checkpoint="/u/best.pt",
                               train_key="sample0", valid_key="v", fingerprint="zz")
    assert F.train_fingerprint(same, data, 2, "c", {"teacher": "T"}) == fp
    for other in (dataclasses.replace(job, seed=1), dataclasses.replace(job, batch_size=64),
                  dataclasses.replace(job, phases=(Phase(3, 2e-3),)), dataclasses.replace(job, amp="bf16"),
                  dataclasses.replace(job, model=ModelConfig(embed_dim=8)), dataclasses.replace(job, alpha=0.5)):
        assert F.train_fingerprint(other, data, 2, "c", {"teacher": "T"}) != fp
    assert F.train_fingerprint(job, {**data, "valid_fraction": 0.2}, 2, "c", {"teacher": "T"}) != fp
    assert F.train_fingerprint(job, data, 1, "c", {"teacher": "T"}) != fp  # batch_size is per worker
    assert F.train_fingerprint(job, data, 2, "c2", {"teacher": "T"}) != fp
    assert F.train_fingerprint(job, data, 2, "c", {"teacher": "T2"}) != fp


def test_placement_and_run_lists_leave_every_stage_as_it_is(world):
    root, fm = world
    base = _fps(_cfg(root), fm)
    cfg = _cfg(root, out="/tmp/elsewhere", storage="s3://b/p", seeds=(1,), methods=("scratch",),
               tracking=TrackingConfig(wandb="disabled", experiment="x"),
               resources=ResourcesConfig(use_gpu="false", cpus_per_worker=0.5, max_failures=0,
                                         checkpoint_interval_s=0),
               projection=ProjectionConfig(num_actors=7, actor_min_rows=0, report_rows=10))
    assert _changed(base, _fps(cfg, fm)) == set()


def test_each_change_reaches_exactly_the_stages_it_determines(world):
    root, fm = world
    base_cfg = _cfg(root)
    base = _fps(base_cfg, fm)
    sampled = {f"{m}-{s}" for m in ("crossadapt", "crossadapt_no_projection", "crossadapt_no_phases") for s in (0, 1)}
    taught = {f"{m}-{s}" for m in METHODS if m != "scratch" for s in (0, 1)}
    projected = {f"{m}-{s}" for m in ("crossadapt", "crossadapt_no_phases", "crossadapt_full_window") for s in (0, 1)}

    def changed(**kw) -> set[str]:
        return _changed(base, _fps(dataclasses.replace(base_cfg, **kw), fm))

    # the rerun: another r and another history
    assert changed(distill=DistillConfig(r=0.3)) == sampled
    history = dataclasses.replace(base_cfg.data, teacher_periods=(0, 2))
    assert changed(data=history) == {"teacher", "projection"} | taught
    # the loss weight touches every method with a teacher, never scratch
    assert changed(distill=DistillConfig(alpha=0.5)) == taught
    assert changed(projection=ProjectionConfig(method="rsvd")) == {"projection"} | projected
    assert changed(student=ModelConfig(name="dcnv2", embed_dim=16)) == {"projection"} | {k for k in base if "-" in k}
    assert changed(teacher=ModelConfig(name="dnn", embed_dim=8)) == {"teacher", "projection"} | taught
    assert changed(resources=ResourcesConfig(num_workers=1)) == set(base)  # the teacher too, so everything
    window = changed(data=dataclasses.replace(base_cfg.data, window_periods=(2, 4)))
    assert window == {k for k in base if "-" in k}
    assert changed(data=dataclasses.replace(base_cfg.data, valid_fraction=0.2)) == set(base)


def test_online_fingerprint_ignores_the_method_list_and_call_batching():
    base = OnlineConfig()
    fp = F.online_fingerprint(base, "crossadapt", (0,), "T", "S", "D", "C")
    same = dataclasses.replace(base, methods=("crossadapt",), max_inflight=2, steps_per_call=1)
    assert F.online_fingerprint(same, "crossadapt", (0,), "T", "S", "D", "C") == fp
    assert F.online_fingerprint(dataclasses.replace(base, tau=3), "crossadapt", (0,), "T", "S", "D", "C") != fp
    for args in (("student_only", (0,), "T", "S", "D", "C"), ("crossadapt", (0, 1), "T", "S", "D", "C"),
                 ("crossadapt", (0,), "T2", "S", "D", "C"), ("crossadapt", (0,), "T", "S2", "D", "C"),
                 ("crossadapt", (0,), "T", "S", "D2", "C")):
        assert F.online_fingerprint(base, *args) != fp
