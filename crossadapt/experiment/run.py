"""One experiment end to end: data, offline stage, online stage, results.json and report.md.

results.json is merged, never replaced: the blocks of methods not run now stay while the current
config reproduces them (same fingerprints, see ``crossadapt.experiment.offline``), and are dropped
with a message when not.
"""

from __future__ import annotations

import json
from pathlib import Path

from crossadapt import atomic, log, storage
from crossadapt import fingerprint as F
from crossadapt.config import ExperimentConfig, to_dict
from crossadapt.data import arrays as A
from crossadapt.errors import ConfigError
from crossadapt.experiment.compare import RESULTS_FILE
from crossadapt.experiment.lock import holds_out_dir
from crossadapt.experiment.paired import paired_tests
from crossadapt.experiment.prepare import prepare_data
from crossadapt.experiment.report import write_report
from crossadapt.experiment.track import live_epochs, live_windows, track_offline, track_online, track_report
from crossadapt.experiment.bring_your_own import check_bring_your_own
from crossadapt.models import load_checkpoint
from crossadapt.models.teacher_import import is_imported, load_teacher_model, teacher_trainable
from crossadapt.ray_init import init_ray
from crossadapt.tracking import Tracker

_say = log.sayer(__name__)


def read_results(out_dir: str | Path) -> dict:
    """``<out_dir>/results.json``, or ``{}`` when there is none."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); move it away to start this folder afresh") from None
    return results if isinstance(results, dict) else {}


@holds_out_dir  # one run at a time in out_dir: a second one is refused at once
def run_experiment(cfg: ExperimentConfig, stages: tuple[str, ...] = ("offline", "online"), fresh: bool = False) -> dict:
    """Run the stages and write ``<out_dir>/results.json`` and ``report.md`` (atomically, after each stage).

    Stages finished earlier with the same fingerprints are reused; ``fresh`` trains them all again.
    """
    from crossadapt.experiment.offline import run_offline

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fm = prepare_data(cfg)
    cfg = check_bring_your_own(cfg, fm)  # a user class or an imported teacher that does not fit: before Ray
    atomic.write_json(out / "config.json", to_dict(cfg))
    previous = read_results(out)
    init_ray()
    results: dict = {"config": to_dict(cfg)}
    tracker = Tracker(cfg.tracking, out)
    if "offline" in stages:
        trained: list[dict] = []  # W&B gets the runs trained now; reused ones were sent when they trained
        results.update(run_offline(cfg, fm, out, on_record=lambda r: trained.append(r) if not r["reused"] else None,
                                   previous=previous, fresh=fresh, on_epoch=live_epochs(tracker, cfg)))
        _add_paired_tests(cfg, fm, results)  # over the merged records: kept ones keep their saved scores
        _keep_online(cfg, fm, results, previous)
        atomic.write_json(out / RESULTS_FILE, results)
        track_offline(tracker, cfg, results, records=trained, with_teacher=not results["teacher"]["reused"])
    if "online" in stages:
        _add_online(cfg, fm, results, results["teacher"]["checkpoint"], _crossadapt_students(results, cfg.seeds),
                    tracker)
    _publish(cfg, results, tracker)
    return results


def _publish(cfg: ExperimentConfig, results: dict, tracker: Tracker) -> None:
    """The report (and its plots to W&B), then ``out_dir`` to ``storage``: the end of every run."""
    out = Path(cfg.out_dir)
    write_report(results, out)
    track_report(tracker, cfg, out)
    _say(f"wrote {out / RESULTS_FILE} and {out / 'report.md'}")
    storage.upload(out, cfg.storage)  # results and checkpoints outlive the machine (no-op when unset)


@holds_out_dir
def run_online_stage(cfg: ExperimentConfig, teacher_ckpt: str | None = None, student_ckpt: str | None = None) -> dict:
    """The online stage alone, from given checkpoints or from the offline results in ``out_dir``.

    Its blocks are merged into ``<out_dir>/results.json`` (kept when it exists) and the report.
    """
    from crossadapt.experiment.offline import check_current, plan_offline

    out = Path(cfg.out_dir)
    path = out / RESULTS_FILE
    results: dict = read_results(out) or {"config": to_dict(cfg)}
    if (not teacher_ckpt or not student_ckpt) and "offline_checkpoints" not in results:
        raise ConfigError(f"{path}: no offline results to take checkpoints from; pass --teacher and --student "
                          "or run `crossadapt transfer` first")
    fm = prepare_data(cfg)
    cfg = check_bring_your_own(cfg, fm)
    if not teacher_ckpt or not student_ckpt:
        # only the checkpoints this config would produce: never those of another config, silently
        check_current(plan_offline(cfg, fm, out), results, ("crossadapt",) if not student_ckpt else ())
        teacher_ckpt = teacher_ckpt or results["teacher"]["checkpoint"]
    # One given student starts every seed's streams; otherwise each seed starts from its own.
    students = {s: student_ckpt for s in cfg.seeds} if student_ckpt else _crossadapt_students(results, cfg.seeds)
    # Before Ray or any actor starts: a checkpoint that does not fit the data or the config is named here.
    if is_imported(teacher_ckpt):
        load_teacher_model(teacher_ckpt, fm)
    else:
        load_checkpoint(teacher_ckpt, expected_feature_map=fm, expected_model=("teacher", cfg.teacher))
    for ckpt in dict.fromkeys(students.values()):
        load_checkpoint(ckpt, expected_feature_map=fm, expected_model=("student", cfg.student))
    init_ray()
    tracker = Tracker(cfg.tracking, out)
    _add_online(cfg, fm, results, teacher_ckpt, students, tracker)
    _publish(cfg, results, tracker)
    return results


def _add_online(cfg: ExperimentConfig, fm, results: dict, teacher_ckpt: str, students: dict[int, str],
                tracker: Tracker) -> None:
    """Run the online stage (every method, every seed of ``students``) into ``results``, write them
    and send the online runs to the tracker. Blocks are merged per method into ``results["online"]``."""
    from crossadapt.online.coordinator import drift_periods, drift_trace_of, run_online

    trace = drift_trace_of(cfg, fm)
    new = run_online(cfg, fm, cfg.out_dir, teacher_ckpt=teacher_ckpt, students=students, trace=trace,
                     on_window=live_windows(tracker, cfg))
    results["online"] = merge_online(cfg, fm, results.get("online", {}), new, teacher_ckpt, students)
    results["online_meta"] = {"drift_periods": drift_periods(cfg.data.root), "teacher_checkpoint": teacher_ckpt,
                              "student_checkpoints": {str(s): p for s, p in students.items()},
                              "stream_periods": list(cfg.data.stream_periods),
                              # an imported teacher that cannot be trained stays frozen in every method
                              "teacher_trainable": teacher_trainable(teacher_ckpt),
                              "drift_window_rows": cfg.online.drift_window_rows,
                              "theta_low": cfg.online.theta_low, "theta_high": cfg.online.theta_high,
                              "drift_trace": trace.pooled()}
    atomic.write_json(Path(cfg.out_dir) / RESULTS_FILE, results)
    track_online(tracker, cfg, {**results, "online": new})  # the kept blocks were sent when they ran


def online_fingerprints(cfg: ExperimentConfig, fm, methods, teacher_ckpt: str,
                        students: dict[int, str]) -> dict[str, str]:
    """The fingerprint of each online method's block: its settings, seeds, stream and the checkpoints it starts
    from (the teacher and each seed's student)."""
    from crossadapt.online.coordinator import has_final_test

    periods = sorted({*A.period_range(cfg.data.window_periods), *A.period_range(cfg.data.stream_periods),
                      # the final test's rows, where the final models are scored on them
                      *(A.period_range(cfg.data.test_periods) if has_final_test(cfg) else ())})
    data = F.data_fingerprint(cfg.data.root, fm.to_dict(), periods)
    teacher = F.checkpoint_identity(teacher_ckpt)
    student = {str(s): F.checkpoint_identity(p) for s, p in sorted(students.items())}
    code = F.code_fingerprint()
    user = F.model_code_fingerprint(cfg.student.name)
    if user:  # the online actors rebuild a user class from its current code
        code = F.digest({"code": code, "student_code": user})
    return {m: F.online_fingerprint(cfg.online, m, sorted(students), teacher, student, data, code) for m in methods}


def merge_online(cfg: ExperimentConfig, fm, old: dict, new: dict, teacher_ckpt: str, students: dict[int, str]) -> dict:
    """The online blocks ``new`` (run now) over the blocks of ``old`` that this config and these checkpoints
    reproduce (same fingerprint); the others are dropped with one message. Each block keeps its fingerprint."""
    fps = online_fingerprints(cfg, fm, [*new, *old], teacher_ckpt, students)
    kept = {m: b for m, b in old.items() if m not in new and isinstance(b, dict) and b.get("fingerprint") == fps[m]}
    dropped = sorted(set(old) - set(new) - set(kept))
    if dropped:
        _say(f"results.json: dropped the earlier online block(s) {dropped}: made with another "
             "config, data, code or starting checkpoints; run those online methods again to get them back")
    return {**kept, **{m: {**b, "fingerprint": fps[m]} for m, b in new.items()}}


def _keep_online(cfg: ExperimentConfig, fm, results: dict, previous: dict) -> None:
    """After an offline run: the earlier online blocks that still start from this run's checkpoints."""
    old = previous.get("online")
    if not old or "crossadapt" not in results.get("offline_checkpoints", {}):
        return
    try:
        students = _crossadapt_students(results, cfg.seeds)
    except ConfigError:  # some seed has no crossadapt student now: no earlier block starts from these
        return
    online = merge_online(cfg, fm, old, {}, results["teacher"]["checkpoint"], students)
    if online:
        results["online"] = online
        results["online_meta"] = previous.get("online_meta", {})


def _add_paired_tests(cfg: ExperimentConfig, fm, results: dict) -> None:
    """The ``paired_tests`` block: every offline student against CrossAdapt's of its seed (DeLong), from
    the test scores saved beside the checkpoints of ``results["offline_records"]``."""
    from crossadapt.experiment.offline import test_arrays

    block = paired_tests(results["offline_records"], A.labels_of(test_arrays(cfg, fm)),
                         A.period_range(cfg.data.test_periods))
    results.pop("paired_tests", None)  # no crossadapt among the methods: no block
    if block is not None:
        results["paired_tests"] = block


def _crossadapt_students(results: dict, seeds: tuple[int, ...]) -> dict[int, str]:
    """The offline CrossAdapt student of every seed in ``seeds``: where that seed's online streams start."""
    path = Path(results.get("config", {}).get("out_dir", ".")) / RESULTS_FILE
    try:
        offline_seeds = list(results["offline"]["crossadapt"]["seed"])
        ckpts = list(results["offline_checkpoints"]["crossadapt"])
    except KeyError:
        raise ConfigError(f"{path}: no offline crossadapt students; the online stage starts from them (include "
                          "crossadapt in methods, or pass --student)") from None
    by_seed = dict(zip(offline_seeds, ckpts))
    missing = [s for s in seeds if s not in by_seed]
    if missing:
        raise ConfigError(f"{path}: no offline crossadapt student for seed(s) {missing} (offline seeds "
                          f"{offline_seeds}); run the offline stage with those seeds or pass --student")
    return {s: by_seed[s] for s in seeds}
