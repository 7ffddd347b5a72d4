"""Ray Train path: a 2-worker DDP run on CPU, progressive distillation's frozen phase, resume state."""

from pathlib import Path

import numpy as np
import pytest
import torch

from crossadapt.config import ModelConfig, ResourcesConfig, SyntheticConfig
from crossadapt.data import arrays as A
from crossadapt.data import ray_data
from crossadapt.data.synthetic import generate
from crossadapt.featuremap import FeatureMap, FieldSpec
from crossadapt.metrics import UndefinedMetricWarning
from crossadapt.models import build_model, load_checkpoint, save_checkpoint
from crossadapt.train import engine
from crossadapt.train.engine import Phase, TrainJob
from crossadapt.train.ray_train import fit

SMALL = ModelConfig(name="dnn", embed_dim=8, hidden_units=(32, 16))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    generate(SyntheticConfig(num_fields=6, vocab_size=200, rows_per_period=6000, num_periods=5,
                             drift_periods=(4,), seed=3), root)
    return root


def _job(tmp_path, fm, **kw) -> TrainJob:
    base = dict(name="t", run_dir=str(tmp_path / "run"), model=SMALL, feature_map=fm.to_dict(),
                phases=(Phase(epochs=2, lr=3e-3),), batch_size=512, seed=0)
    base.update(kw)
    return TrainJob(**base)


def test_two_worker_ddp_run_learns(ray_session, tiny_data, tmp_path):
    fm = FeatureMap.load(tiny_data)
    train, valid = ray_data.window_split(tiny_data, [0, 1, 2], fm, valid_fraction=0.1)
    out = fit(_job(tmp_path, fm, phases=(Phase(epochs=3, lr=3e-3),)), train, valid,
              ResourcesConfig(num_workers=2, cpus_per_worker=0.5))
    assert len(out.history) == 3
    # each epoch sees every training row (90 % of 18000; shards are equal here)
    assert all(h["samples"] == int(round(0.9 * 18000)) for h in out.history)
    test = A.read_periods(tiny_data, [3], fm)
    m = engine.evaluate(load_checkpoint(out.best_checkpoint, expected_feature_map=fm).model, test)
    assert m["auc"] > 0.6, m  # an untrained or broken model sits at 0.5
    assert out.best_valid_auc == max(h["valid_auc"] for h in out.history)


def test_distillation_with_frozen_phase_keeps_projected_embeddings(ray_session, tiny_data, tmp_path):
    fm = FeatureMap.load(tiny_data)
    teacher = build_model(SMALL, fm)
    tpath = tmp_path / "teacher.pt"
    save_checkpoint(tpath, teacher, SMALL, fm)
    init = torch.randn(sum(fm.vocab_sizes), SMALL.embed_dim, generator=torch.Generator().manual_seed(1))
    init_path = tmp_path / "init.pt"
    torch.save({"table": init, "numeric": None}, init_path)
    train, valid = ray_data.window_split(tiny_data, [1], fm, valid_fraction=0.2, r=0.5, seed=4)
    job = _job(tmp_path, fm, teacher_checkpoint=str(tpath), alpha=1.0, init_embeddings=str(init_path),
               phases=(Phase(epochs=2, lr=1e-2, freeze_embeddings=True),))
    out = fit(job, train, valid, ResourcesConfig(num_workers=1))
    model = load_checkpoint(out.best_checkpoint).model
    assert torch.equal(model.embedding.table.weight, init)  # bit-identical after phase-1 steps
    fresh = build_model(SMALL, fm)
    assert any(not torch.equal(a, b) for (n, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters())
               if not n.startswith("embedding"))
    # a seeded sample of r=0.5 of 80 % of one period (Bernoulli, so within a few sigma)
    assert abs(out.history[0]["samples"] - 0.5 * 4800) < 300


def test_phases_switch_freezing_in_engine():
    fm = FeatureMap("t", tuple(FieldSpec(f"f{i}", vocab_size=20) for i in range(3)))
    model = build_model(SMALL, fm)
    data = engine.to_tensors({"ids": np.random.default_rng(0).integers(0, 20, (256, 3)),
                              "dense": np.zeros((256, 0), np.float32),
                              "label": np.random.default_rng(1).integers(0, 2, 256).astype(np.float32)})
    job = _job(Path("/tmp"), fm)
    gen = torch.Generator().manual_seed(0)
    before = model.embedding.table.weight.detach().clone()
    for phase, changes in ((Phase(1, 1e-2, True), False), (Phase(1, 1e-2, False), True)):
        engine.apply_phase(model, phase)
        opt = engine.make_optimizer(model, phase.lr)
        engine.train_steps(model, opt, data, engine.batches(256, 64, 4, gen, "cpu"), None, job)
        assert (not torch.equal(model.embedding.table.weight, before)) == changes


def test_window_split_is_time_ordered_and_sampled(ray_session, tiny_data):
    fm = FeatureMap.load(tiny_data)
    train, valid = ray_data.window_split(tiny_data, [0, 1], fm, valid_fraction=0.25)
    assert train.count() == 9000 and valid.count() == 3000
    full = A.read_periods(tiny_data, [0, 1], fm)
    v = ray_data.materialize_arrays(valid, fm)
    assert np.array_equal(v["ids"], full["ids"][9000:])  # the time tail, in order
    s1, _ = ray_data.window_split(tiny_data, [0, 1], fm, 0.25, r=0.1, seed=7)
    s2, _ = ray_data.window_split(tiny_data, [0, 1], fm, 0.25, r=0.1, seed=7)
    a1, a2 = ray_data.materialize_arrays(s1, fm), ray_data.materialize_arrays(s2, fm)
    assert 700 < A.num_rows(a1) < 1100 and np.array_equal(a1["ids"], a2["ids"])
    st, _ = ray_data.window_split(tiny_data, [0, 1], fm, 0.25, r=0.1, seed=7, mode="stratified")
    assert st.count() == round(0.1 * 6000) + round(0.1 * 3000)


def test_window_split_positive_rate_sample(ray_session, tiny_data):
    """The Ray Data sampler keeps clicks with keep_pos and the rest with keep_neg, seeded, from the
    pool only. ~1 800 rows at a 50 % target: the rate's sd is about 0.01 (the delta-method formula of
    test_sampling.py), so 0.05 is 5 sd; the size's sd is about 25 rows, 150 is 6 sd."""
    from crossadapt.data.sampling import positive_rate_plan

    fm = FeatureMap.load(tiny_data)
    pool = A.read_periods(tiny_data, [0, 1], fm)
    labels = pool["label"][:9000]
    plan = positive_rate_plan(float(labels.mean()), 0.2, 0.5)
    s1, _ = ray_data.window_split(tiny_data, [0, 1], fm, 0.25, r=0.2, seed=7, mode="positive_rate", positive=plan)
    s2, _ = ray_data.window_split(tiny_data, [0, 1], fm, 0.25, r=0.2, seed=7, mode="positive_rate", positive=plan)
    a1, a2 = ray_data.materialize_arrays(s1, fm), ray_data.materialize_arrays(s2, fm)
    assert np.array_equal(a1["ids"], a2["ids"])
    assert abs(a1["label"].mean() - 0.5) < 0.05 and abs(A.num_rows(a1) - 0.2 * 9000) < 150, (a1["label"].mean(),
                                                                                           A.num_rows(a1))
    pool_rows = {r.tobytes() for r in pool["ids"][:9000]}
    assert all(r.tobytes() in pool_rows for r in a1["ids"])  # never a validation row
    with pytest.raises(Exception, match="needs the pool's PositiveRatePlan"):
        ray_data.window_split(tiny_data, [0, 1], fm, 0.25, r=0.1, seed=7, mode="positive_rate", positive=plan)


def test_use_gpu_true_without_a_gpu_fails_at_once(ray_session):
    """A local Ray with no GPU cannot get one: use_gpu=true is a clear error, not a 60 s startup loop."""
    import time

    import ray

    from crossadapt.config import ResourcesConfig
    from crossadapt.errors import ResourcesError
    from crossadapt.ray_init import resolve_use_gpu

    if ray.cluster_resources().get("GPU", 0) > 0:
        pytest.skip("this Ray has a GPU")
    assert resolve_use_gpu(ResourcesConfig(use_gpu="auto")) is False
    assert resolve_use_gpu(ResourcesConfig(use_gpu="false")) is False
    t0 = time.monotonic()
    with pytest.raises(ResourcesError, match="use_gpu=true"):
        resolve_use_gpu(ResourcesConfig(use_gpu="true"))
    assert time.monotonic() - t0 < 5


def _one_class_valid(fm: FeatureMap, rows: int = 400) -> A.Arrays:
    """Validation rows without a click: AUC is undefined on them, LogLoss is not."""
    ids = np.random.default_rng(2).integers(0, 20, (rows, fm.num_fields))
    return {"ids": ids, "dense": np.zeros((rows, 0), np.float32), "label": np.zeros(rows, np.float32)}


def test_one_class_validation_stops_on_logloss_in_engine():
    """The issue's avazu case: no click in the validation rows once meant AUC NaN, no best model."""
    fm = FeatureMap("t", tuple(FieldSpec(f"f{i}", vocab_size=20) for i in range(3)))
    rng = np.random.default_rng(0)
    train = engine.to_tensors({"ids": rng.integers(0, 20, (512, 3)), "dense": np.zeros((512, 0), np.float32),
                               "label": (rng.random(512) < 0.3).astype(np.float32)})
    valid = engine.to_tensors(_one_class_valid(fm))
    job = _job(Path("/tmp"), fm, phases=(Phase(epochs=6, lr=3e-2),), batch_size=64, patience=2)
    improved_at: list[int] = []

    def on_epoch(record, state, model, opt, improved, done):
        if improved:
            improved_at.append(record["epoch"])

    torch.manual_seed(0)
    with pytest.warns(UndefinedMetricWarning):
        state = engine.run_phases(build_model(SMALL, fm), job, train, valid, None, on_epoch=on_epoch)
    losses = [h["valid_logloss"] for h in state["history"]]
    assert all(h["valid_auc"] is None for h in state["history"])
    assert state["monitor"] == "logloss" and state["best_auc"] is None
    assert improved_at[0] == 0  # the first epoch is always a best model: best.pt always exists
    assert state["best_logloss"] == min(losses) and improved_at[-1] == int(np.argmin(losses))
    assert improved_at == [e for e in range(len(losses)) if losses[e] < min(losses[:e], default=np.inf)]


def test_validation_score_prefers_auc_and_never_ranks_nan_first():
    assert engine.validation_score({"auc": 0.7, "logloss": 0.4}) == ("auc", 0.7)
    assert engine.validation_score({"auc": None, "logloss": 0.4}) == ("logloss", -0.4)
    assert engine.validation_score({"auc": None, "logloss": float("nan")}) == ("logloss", -np.inf)


def test_one_class_validation_on_ray_train_keeps_a_best_model(ray_session, tiny_data, tmp_path):
    """best.pt is written, outcome.json holds null (never NaN) and nothing is retried."""
    import json

    fm = FeatureMap.load(tiny_data)
    train, _ = ray_data.window_split(tiny_data, [0], fm, valid_fraction=0.1)
    valid = A.read_periods(tiny_data, [1], fm)
    valid = ray_data.dataset_from_arrays(A.take(valid, valid["label"] == 0), fm)
    out = fit(_job(tmp_path, fm), train, valid, ResourcesConfig(num_workers=1, max_failures=0))
    text = (tmp_path / "run" / "outcome.json").read_text()
    assert json.loads(text)["best_valid_auc"] is None and "NaN" not in text
    assert out.best_valid_auc is None and Path(out.best_checkpoint).is_file()
    assert len(out.history) == 2 and all(h["valid_auc"] is None for h in out.history)
