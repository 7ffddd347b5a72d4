"""The online stage: replay time-ordered periods through the student/teacher actor pair (Ray glue).

Once per run, the drift detector (``crossadapt.online.drift``) runs over the traffic: the rows
before the stream, then the stream itself, its score refreshed after every ``online.batch_size``
rows. Each score is measured on rows already seen, so replaying this trace is what a live
detector beside the stream would have decided; it depends on the traffic alone and every method
and seed replays the same one.

Then for every online method and every seed (each seed's stream starts from its own student
checkpoint and the teacher), period by period ``k`` of ``data.stream_periods``:

1. **Test.** The student (and the teacher) are evaluated on all of period ``k`` before training on
   it (prequential: test-then-train). These are the per-window metrics.
2. **Train.** Period ``k`` in time order (never shuffled across time), cut by
   ``crossadapt.online.mixing.StreamBatcher`` into batches of exactly ``batch_size`` rows: methods
   with history take a share ``r_enh`` of each batch from the reservoir, ``r_enh`` following from
   the drift score in force at the batch's first row (measured on earlier rows); rows that do not
   fill a last batch wait for the next period. Batches are put in the object store once,
   ``online.steps_per_call`` consecutive steps at a time (never across an exchange); the teacher
   answers their soft labels and the student trains on them, one step per batch. Every ``tau`` steps
   (every step for ``sync_codistill``, never for a frozen teacher) the student's weights go to the
   teacher (when ``teacher_alpha > 0``) and the teacher updates on the batches it served.
3. **Commit.** Stream position, both actors' states (weights, optimizers, the teacher's pending
   batches), reservoir, waiting rows, random state and the windows so far are written atomically to
   ``<out>/online/<method>/seed<s>/stream.pt``.

An actor that dies is replaced: both actors restart from the last commit and period ``k`` is
replayed from its start, so no period is skipped and none is trained twice. A rerun with the same
inputs resumes from the commit on disk. Times: ``train_seconds`` covers the training loop only
(the exchange share divides by it), ``eval_seconds`` the per-period tests.

**End of the stream.** The final student is written as ``student.pt`` beside the commit (and the
final teacher as ``teacher.pt`` for methods with a teacher). When ``data.test_periods`` lie after
the stream (the paper's protocol), both are scored once on them: the run's ``final_test``. When the
test periods lie before the stream (the demo's layout) ``final_test`` is null: models adapted to
later traffic scored on earlier rows would measure hindsight, not prediction; the prequential
windows are then the online figures.

**Memory.** No stream period, test split or warm-up traffic is read whole: periods are read in
record batches (``A.PeriodChunks``, 65,536 rows: the actors score each chunk in the batch
``engine.evaluate`` uses, so the scores are the resident ones, and the batcher carries rows
across chunks as across periods, so the batches are the same), the drift trace consumes record
batches, and the reservoir holds at most ``online.reservoir_size`` rows. The retained window that
seeds the reservoir is still read whole, once per run: one ``add`` of it keeps the reservoir's
random draws those of today's results (chunked adds would draw differently).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import ray
import torch

from crossadapt import atomic, log
from crossadapt.concurrency import run_concurrently
from crossadapt.config import ExperimentConfig, to_dict
from crossadapt.data import arrays as A
from crossadapt.data.synthetic import read_meta
from crossadapt.errors import CheckpointError, ConfigError
from crossadapt.featuremap import FeatureMap
from crossadapt.metrics import evaluate_predictions, fmt
from crossadapt.models import load_checkpoint, read_checkpoint, save_checkpoint
from crossadapt.models.teacher_import import is_imported, load_teacher_model
from crossadapt.online.actors import StudentActor, TeacherActor
from crossadapt.online.drift import DriftTrace, WindowDriftDetector, drift_trace
from crossadapt.online.methods import get_online_method, teacher_interval
from crossadapt.online.mixing import StreamBatcher
from crossadapt.online.summary import summarize_runs
from crossadapt.progress import Heartbeat, Progress
from crossadapt.ray_init import cpu_share, resolve_use_gpu
from crossadapt.train import engine

STATE_FILE = "stream.pt"
#: The student after the stream, as a checkpoint, beside the commit.
FINAL_STUDENT = "student.pt"
#: The teacher after the stream (methods with a teacher), beside the commit.
FINAL_TEACHER = "teacher.pt"
#: Times one period is replayed after actor failures before the stage gives up.
MAX_RESTARTS = 3


_say = log.sayer(__name__)
_log = logging.getLogger(__name__)


def _file_id(path: str) -> list:
    st = os.stat(path)
    return [str(path), st.st_size, st.st_mtime_ns]


def _to_torch(x: Any) -> Any:
    """Numpy arrays inside nested dicts/lists as tensors (checkpoints load with ``weights_only``)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, dict):
        return {k: _to_torch(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_to_torch(v) for v in x]
    return x


def _to_numpy(x: Any) -> Any:
    if torch.is_tensor(x):
        return x.numpy()
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_to_numpy(v) for v in x]
    return x


class OnlineStream:
    """One method's replay of the stream for one seed, with its actors and its commit file.

    Args:
        method: an online method name (``crossadapt.online.methods.ONLINE_METHODS``).
        cfg: the experiment config (``online``, ``data`` and ``resources`` are read).
        fm: the stream's feature map.
        out_dir: experiment folder; the commit goes to ``<out_dir>/online/<method>/seed<seed>/stream.pt``.
        teacher_ckpt, student_ckpt: where both models start.
        history: rows that seed the reservoir (the retained window), or None.
        trace: the stream's drift scores (:func:`stream_inputs`).
        seed: seed of the reservoir, the batch mixing and the actors.
        test: the rows of ``data.test_periods`` when they lie after the stream (:func:`has_final_test`):
            the final models are scored on them once the stream ends; None: no final test.
        actor_cpus: CPUs each actor asks for (streams running side by side share the free CPUs);
            None: half of the CPUs free when the actors start.
    """

    def __init__(self, method: str, cfg: ExperimentConfig, fm: FeatureMap, out_dir: str | Path, teacher_ckpt: str,
                 student_ckpt: str, history: A.Arrays | None, trace: DriftTrace, seed: int,
                 test: A.Arrays | None = None, actor_cpus: float | None = None) -> None:
        self.method = method
        self.spec = get_online_method(method)
        self.cfg = cfg
        self.ocfg = cfg.online
        self.fm = fm
        self.interval = teacher_interval(self.spec, self.ocfg) if self.spec.kd else None
        self.teacher_ckpt, self.student_ckpt = str(teacher_ckpt), str(student_ckpt)
        self.history, self.trace, self.seed, self.test = history, trace, seed, test
        self.actor_cpus = actor_cpus
        self.periods = A.period_range(cfg.data.stream_periods)
        self.dir = Path(out_dir) / "online" / method / f"seed{seed}"
        self.path = self.dir / STATE_FILE
        self.fingerprint = hashlib.sha256(json.dumps({
            # every online setting but the method list (adding a method must not restart the others)
            "method": method,
            "online": {k: v for k, v in to_dict(self.ocfg).items() if k not in ("methods", "concurrent_streams")},
            "periods": self.periods, "seed": seed,
            "root": cfg.data.root, "teacher": _file_id(self.teacher_ckpt), "student": _file_id(self.student_ckpt),
            "trace": trace.to_dict(),
        }, sort_keys=True).encode()).hexdigest()
        self.student = self.teacher = None
        self.restarts = 0
        self.heartbeat = Heartbeat()  # period lines by default only when periods are long; all with --verbose
        self.on_step: Callable[[int, int], None] | None = None

    # ------------------------------------------------------------ state

    def _batcher(self, state: dict[str, Any] | None = None) -> StreamBatcher:
        batcher = StreamBatcher(self.ocfg, self.spec.history, self.seed, self.trace)
        if state is None:
            batcher.warm_up(self.history)
        else:
            batcher.load_state_dict(state)
        return batcher

    def _fresh(self) -> dict[str, Any]:
        """The state before the first period (actor states are filled in by the actors)."""
        return {"fingerprint": self.fingerprint, "next": 0, "start": 0, "step": 0, "windows": [],
                "exchange_seconds": 0.0, "train_seconds": 0.0, "eval_seconds": 0.0,
                "batcher": self._batcher().state_dict(), "student": None, "teacher": None}

    def _load(self) -> dict[str, Any] | None:
        """The commit on disk if it belongs to this exact run, else None."""
        if not self.path.exists():
            return None
        try:
            raw = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: start over rather than crash
            _say(f"online {self.method} seed {self.seed}: ignoring unreadable {self.path} ({type(e).__name__}: {e})")
            return None
        if raw.get("fingerprint") != self.fingerprint:
            return None
        raw["batcher"] = _to_numpy(raw["batcher"])
        return raw

    def _commit(self, state: dict[str, Any]) -> None:
        state["student"] = ray.get(self.student.get_state.remote())
        state["teacher"] = ray.get(self.teacher.get_state.remote()) if self.teacher is not None else None
        with atomic.atomic_path(self.path) as tmp:
            torch.save({**state, "batcher": _to_torch(state["batcher"])}, tmp)

    # ------------------------------------------------------------ actors

    def _actor_options(self) -> dict[str, Any]:
        if ray.util.get_current_placement_group() is not None:
            # Inside a Tune trial: its placement group holds only the trial's own bundle, so the
            # pair asks for nothing more and runs on the trial's reservation (tune_spaces size
            # trial_cpus for the trial and its two actors).
            return {"num_cpus": 0}
        if resolve_use_gpu(self.cfg.resources):
            return {"num_cpus": 1, "num_gpus": 0.5}  # the pair shares one GPU
        if self.actor_cpus is not None:
            return {"num_cpus": self.actor_cpus}
        free = ray.available_resources().get("CPU", 0.0)
        return {"num_cpus": min(1.0, cpu_share(free, 2)) if free > 0 else 0.01}

    def _start_actors(self, state: dict[str, Any]) -> None:
        self._kill_actors()
        opts = self._actor_options()
        online = to_dict(self.ocfg)
        fmd = self.fm.to_dict()
        self.student = StudentActor.options(**opts).remote(self.student_ckpt, fmd, online, kd=self.spec.kd,
                                                           seed=self.seed)
        actors = [self.student]
        if self.spec.kd:  # methods without distillation need no teacher at all
            self.teacher = TeacherActor.options(**opts).remote(self.teacher_ckpt, fmd, online,
                                                               updates=self.interval is not None,
                                                               student_checkpoint=self.student_ckpt, seed=self.seed)
            actors.append(self.teacher)
        calls = []
        if state["student"] is not None:
            calls.append(self.student.set_state.remote(state["student"]))
        if self.teacher is not None and state["teacher"] is not None:
            calls.append(self.teacher.set_state.remote(state["teacher"]))
        ray.get(calls + [a.version.remote() for a in actors])  # alive and loaded before the first batch
        self.needs_student = self.teacher is not None and ray.get(self.teacher.needs_student.remote())

    def _exchange_time(self) -> float:
        """Seconds both live actors spent on the exchange so far (copying out, loading in)."""
        actors = [a for a in (self.student, self.teacher) if a is not None]
        return float(sum(ray.get([a.exchange_time.remote() for a in actors])))

    def _kill_actors(self) -> None:
        for a in (self.student, self.teacher):
            if a is not None:
                ray.kill(a)
        self.student = self.teacher = None

    # ------------------------------------------------------------ the stream

    def run(self, on_window: Callable[[dict[str, Any]], None] | None = None,
            on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Replay every period not yet committed; returns this seed's run block.

        ``on_window`` is called with each new window once its period is committed (Tune trials
        report through it); ``on_step(period, steps)`` each time the steps of a period so far have
        been sent to the actors (fault tests kill an actor there, at an exact step count).
        """
        t0 = time.perf_counter()
        self.on_step = on_step
        state = self._load()
        if state is not None and state["next"] > 0:
            at = self.periods[state["next"]] if state["next"] < len(self.periods) else "end"
            _say(f"online {self.method} seed {self.seed}: resuming at period {at}")
        state = state or self._fresh()
        if state["next"] < len(self.periods):
            self._start_actors(state)
            try:
                while state["next"] < len(self.periods):
                    state = self._period_with_retries(state)
                    if on_window is not None:
                        on_window(state["windows"][-1])
            finally:
                self._kill_actors()
        windows = state["windows"]
        train = state["train_seconds"]
        batcher = self._batcher(state["batcher"])
        return {
            "seed": self.seed,
            "student_checkpoint": self.student_ckpt,
            "final_checkpoint": self._save_final(state),
            **self._final_test(state),
            "windows": windows,
            "wall_seconds": time.perf_counter() - t0,
            # the training loops only (batching, steps, soft labels, teacher updates, exchanges)
            "train_seconds": train,
            "eval_seconds": state["eval_seconds"],
            "exchange_seconds": state["exchange_seconds"],
            # share of the training time the actors spent on the exchange (copying the student's
            # weights out and loading them into the teacher; the object-store transfer overlaps)
            "exchange_share": state["exchange_seconds"] / train if train > 0 else 0.0,
            "steps": state["step"],
            "batch_size": self.ocfg.batch_size,
            "rows_trained": batcher.rows_trained,
            "history_rows": batcher.history_rows,
            "rows_untrained": batcher.carry_rows,  # the stream's last rows, fewer than one batch
            "teacher_updates": windows[-1]["teacher_version"] if windows else 0,
            "restarts": self.restarts,
            "tau": self.interval,
        }

    def _save_final(self, state: dict[str, Any]) -> str:
        """The student after the whole stream as a checkpoint (``<seed folder>/student.pt``): what
        ``crossadapt export`` serves. Written once per stream fingerprint."""
        path = self.dir / FINAL_STUDENT
        if path.is_file() and read_checkpoint(path)["extra"].get("fingerprint") == self.fingerprint:
            return str(path)
        ck = load_checkpoint(self.student_ckpt, expected_feature_map=self.fm)
        ck.model.load_state_dict(state["student"]["model"])
        save_checkpoint(path, ck.model, ck.model_cfg, self.fm, {"fingerprint": self.fingerprint, "online_method": self.method,
                                                                "seed": self.seed, "periods": self.periods,
                                                                "start_checkpoint": self.student_ckpt})
        return str(path)

    def _final_test(self, state: dict[str, Any]) -> dict[str, Any]:
        """The final teacher as ``teacher.pt`` (methods with one) and both final models scored on the
        test rows after the stream: ``{"final_teacher_checkpoint", "final_test"}``; ``final_test`` is
        ``{"periods", "rows", "auc", "logloss", "bias", "teacher": {...} | None}`` (the student's
        figures at the top) or None without test rows (see the module docstring)."""
        models: dict[str, torch.nn.Module] = {}
        teacher_path = None
        for role, start, saved in (("student", self.student_ckpt, state["student"]),
                                   ("teacher", self.teacher_ckpt, state["teacher"])):
            if saved is None:  # no teacher in this method (or no period replayed): nothing to score
                continue
            if role == "teacher" and is_imported(start):  # scored, but no zoo checkpoint to write
                models[role] = load_teacher_model(start, self.fm)
                models[role].load_state_dict(saved["model"])
                continue
            ck = load_checkpoint(start, expected_feature_map=self.fm)
            ck.model.load_state_dict(saved["model"])
            models[role] = ck.model.eval()
            if role == "teacher":
                teacher_path = str(self.dir / FINAL_TEACHER)
                save_checkpoint(teacher_path, ck.model, ck.model_cfg, self.fm,
                                {"fingerprint": self.fingerprint, "online_method": self.method, "seed": self.seed,
                                 "periods": self.periods, "start_checkpoint": start,
                                 "version": int(saved.get("version", 0))})
        out: dict[str, Any] = {"final_teacher_checkpoint": teacher_path, "final_test": None}
        if self.test is None or "student" not in models:
            return out
        scored = {r: {k: v for k, v in engine.evaluate(m, self.test).items() if k in ("auc", "logloss", "bias")}
                  for r, m in models.items()}
        out["final_test"] = {"periods": list(self.cfg.data.test_periods), "rows": self.test.rows,
                             **scored["student"], "teacher": scored.get("teacher")}
        t = scored.get("teacher")
        _say(f"online {self.method} seed {self.seed} final test on periods {list(self.cfg.data.test_periods)}: "
             f"student auc {fmt(scored['student']['auc'])} bias {fmt(scored['student']['bias'], '+.3f')}"
             + (f", teacher auc {fmt(t['auc'])} bias {fmt(t['bias'], '+.3f')}" if t else ""))
        return out

    def _period_with_retries(self, committed: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(MAX_RESTARTS + 1):
            try:
                state = self._period(committed)
                self._commit(state)
                return state
            except ray.exceptions.RayActorError as e:
                if attempt == MAX_RESTARTS:
                    raise
                self.restarts += 1
                k = self.periods[committed["next"]]
                _say(f"online {self.method} seed {self.seed}: an actor died in period {k} ({type(e).__name__}); "
                     f"restarting both from the last commit and replaying period {k}")
                self._start_actors(committed)
        raise AssertionError("unreachable")

    @staticmethod
    def _score(period: A.PeriodChunks, *scorers: Callable) -> list[dict[str, float]]:
        """AUC, LogLoss and bias of each actor's model (``scorers``: their ``scores.remote``) on
        ``period``, read chunk by chunk; only the scores and labels are held."""
        scores: list[list] = [[] for _ in scorers]
        labels = []
        for chunk in period:  # one chunk in the object store at a time
            ref = ray.put(chunk)
            for out, got in zip(scores, ray.get([score(ref) for score in scorers])):
                out.append(got)
            labels.append(chunk["label"])
        y = np.concatenate(labels) if labels else np.zeros(0, np.float32)
        return [evaluate_predictions(y, np.concatenate(s) if s else np.zeros(0, np.float32)) for s in scores]

    def _period(self, committed: dict[str, Any]) -> dict[str, Any]:
        """Run one period from ``committed`` (left untouched) and return the state after it."""
        o, spec = self.ocfg, self.spec
        k = self.periods[committed["next"]]
        # The period is read in chunks twice (scored, then trained on), never whole: chunks of
        # engine.predict_logits' batch give the resident scores, and the batcher carries the rows
        # that do not fill a batch to the next chunk as it does to the next period: the same batches.
        period = A.PeriodChunks(self.cfg.data.root, [k], self.fm)
        batcher = self._batcher(committed["batcher"])
        trained0, hist0 = batcher.rows_trained, batcher.history_rows
        step, exchange = committed["step"], committed["exchange_seconds"]

        t0 = time.perf_counter()
        exchange_start = self._exchange_time()
        evals = self._score(period, self.student.scores.remote, *( [self.teacher.scores.remote] if spec.kd else []))
        t_train = time.perf_counter()

        inflight: deque = deque()
        exchanges: list = []  # refs collected at the end of the period, so that an error surfaces
        losses: list[float] = []
        r_enh: list[float] = []
        chunk: list = []

        def submit() -> None:
            b = ray.put(chunk)  # the chunk's batches, put once for both actors
            z = self.teacher.soft_labels_many.remote(b) if spec.kd else None
            inflight.append(self.student.train_steps.remote(b, z))
            if self.on_step is not None:
                self.on_step(k, step - committed["step"])

        for batch, info in (b for chunk in period for b in batcher.batches(chunk)):
            chunk.append(batch)
            r_enh.append(info["r_enh"])
            step += 1
            exchange_now = self.interval is not None and step % self.interval == 0
            if len(chunk) >= o.steps_per_call or exchange_now:
                submit()
                chunk = []
            if exchange_now:
                # Nothing waits here: calls to one actor run in the order they were made, so the
                # snapshot follows this step, the update follows the snapshot, and every later
                # soft label comes from the new weights.
                if self.needs_student:
                    exchanges.append(self.teacher.receive_student.remote(self.student.publish_weights.remote()))
                exchanges.append(self.teacher.update.remote())
            while len(inflight) > o.max_inflight:
                losses += ray.get(inflight.popleft())
        if chunk:
            submit()
        for ref in inflight:
            losses += ray.get(ref)
        ray.get(exchanges)
        version = ray.get(self.teacher.version.remote()) if self.teacher is not None else 0
        exchange += self._exchange_time() - exchange_start
        t_end = time.perf_counter()

        n, start = period.rows, committed["start"]
        window = {"period": k, **{m: evals[0][m] for m in ("auc", "logloss", "bias")},
                  **self.trace.summary(start, start + n),
                  "r_enh": float(np.mean(r_enh)) if r_enh else 0.0, "rows": n,
                  "rows_trained": batcher.rows_trained - trained0, "history_rows": batcher.history_rows - hist0,
                  "steps": step - committed["step"], "train_loss": float(np.mean(losses)) if losses else 0.0,
                  "teacher_version": version, "seconds": t_end - t0, "train_seconds": t_end - t_train,
                  "eval_seconds": t_train - t0}
        if spec.kd:
            window["teacher_auc"] = evals[1]["auc"]
        _log.log(logging.INFO if self.heartbeat.due() else logging.DEBUG,
                 f"online {self.method} seed {self.seed} period {k}: auc {fmt(window['auc'])} bias "
                 f"{fmt(window['bias'], '+.3f')} drift {window['drift_score']:.3f} (max {window['drift_score_max']:.3f}, "
                 f"{window['shifts']} shift) r_enh {window['r_enh']:.2f} ({window['steps']} steps, "
                 f"{window['seconds']:.1f} s)")
        return {**committed, "next": committed["next"] + 1, "start": start + n, "step": step,
                "windows": committed["windows"] + [window], "exchange_seconds": exchange,
                "train_seconds": committed["train_seconds"] + window["train_seconds"],
                "eval_seconds": committed["eval_seconds"] + window["eval_seconds"],
                "batcher": batcher.state_dict()}


def _warmup_ids(cfg: ExperimentConfig, fm: FeatureMap) -> np.ndarray | None:
    """Ids of the last ``3 * online.drift_window_rows`` rows before the stream (the detector's three
    windows), as far back as the data goes; None when the stream starts the data."""
    need = 3 * cfg.online.drift_window_rows
    available = set(A.list_periods(cfg.data.root))
    parts: list[np.ndarray] = []
    k = cfg.data.stream_periods[0] - 1
    while k in available and sum(p.shape[0] for p in parts) < need:
        tail: list[np.ndarray] = []  # the period's last `need` rows, read in record batches
        for _, a in A.iter_period_batches(cfg.data.root, [k], fm):
            tail.append(a["ids"])
            while sum(t.shape[0] for t in tail) - tail[0].shape[0] >= need:
                tail.pop(0)
        if tail:
            parts.insert(0, np.concatenate(tail)[-need:])
        k -= 1
    return np.concatenate(parts)[-need:] if parts else None


def drift_trace_of(cfg: ExperimentConfig, fm: FeatureMap) -> DriftTrace:
    """The drift detector run over the rows before the stream and then the stream (one refresh per
    ``online.batch_size`` rows); seeded with 0, so every method and seed shares it."""
    o = cfg.online
    det = WindowDriftDetector(len(fm.categorical_names), o.drift_window_rows, o.top_k, o.theta_high, seed=0)
    # record batches, never a whole period: refreshes fall every batch_size rows whatever the blocks
    blocks = (a["ids"] for _, a in A.iter_period_batches(cfg.data.root, A.period_range(cfg.data.stream_periods), fm))
    return drift_trace(det, blocks, o.batch_size, warmup=_warmup_ids(cfg, fm))


def stream_inputs(cfg: ExperimentConfig, fm: FeatureMap) -> tuple[A.Arrays, DriftTrace]:
    """What every method's stream starts from: the retained window (seeds the reservoir) and the
    stream's drift trace."""
    return A.read_periods(cfg.data.root, A.period_range(cfg.data.window_periods), fm), drift_trace_of(cfg, fm)


def has_final_test(cfg: ExperimentConfig) -> bool:
    """Whether the online stage scores its final models: ``data.test_periods`` lie after the stream."""
    return cfg.data.test_periods[0] >= cfg.data.stream_periods[1]


def run_online(cfg: ExperimentConfig, fm: FeatureMap, out_dir: str | Path, teacher_ckpt: str,
               students: Mapping[int, str], methods: tuple[str, ...] | None = None,
               trace: DriftTrace | None = None,
               on_window: Callable[[str, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Replay ``data.stream_periods`` for every online method and seed; returns ``{method: block}``.

    ``students`` maps each seed to the student checkpoint its streams start from (the offline
    CrossAdapt student of that seed); every seed's stream starts from the same teacher. A block is
    ``{"runs": [one run per seed], "summary": mean ± std over seeds}``. ``trace``: the stream's
    drift trace when the caller computed it already (:func:`drift_trace_of`). ``on_window(method, seed,
    window)`` sees each period's window once it is committed. One "stream k of N" line with an ETA
    follows each stream. ``online.concurrent_streams`` streams run at a time (they share nothing: the
    same results in any number). Ray must be initialised.
    """
    if not students:
        raise ConfigError("run_online: no seed to run (students is empty)")
    for path in (teacher_ckpt, *students.values()):
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: checkpoint not found (run the offline stage first)")
    methods = tuple(methods or cfg.online.methods)
    for m in methods:
        get_online_method(m)  # unknown names fail before any work
    history = A.read_periods(cfg.data.root, A.period_range(cfg.data.window_periods), fm)
    # scored in chunks of engine.predict_logits' batch: the resident scores, never the split whole
    test = A.PeriodChunks(cfg.data.root, A.period_range(cfg.data.test_periods), fm) if has_final_test(cfg) else None
    if test is None:
        _say(f"online: no final test (data.test_periods {list(cfg.data.test_periods)} lie before the stream "
             f"{list(cfg.data.stream_periods)}; the prequential windows are the online figures)")
    trace = trace if trace is not None else drift_trace_of(cfg, fm)
    _say(f"online: drift trace over {int(trace.ends[-1]) if trace.ends.size else 0} stream rows, "
         f"{int(trace.shifts.sum())} shift(s) declared, max score {float(trace.scores.max()) if trace.scores.size else 0:.3f}")
    out: dict[str, Any] = {}
    streams = [(m, seed, ckpt) for m in methods for seed, ckpt in students.items()]
    at_once = min(cfg.online.concurrent_streams, len(streams))
    progress = Progress("online", len(streams), unit="stream")
    lock = threading.Lock()  # one stream's callback or progress line at a time
    actor_cpus = _side_by_side_cpus(at_once)

    def replay(m: str, seed: int, ckpt: str) -> dict[str, Any]:
        def feed(w: dict[str, Any]) -> None:
            with lock:
                on_window(m, seed, w)

        run = OnlineStream(m, cfg, fm, out_dir, teacher_ckpt, ckpt, history, trace, seed, test,
                           actor_cpus=actor_cpus).run(on_window=feed if on_window else None)
        aucs = [w["auc"] for w in run["windows"] if w["auc"] is not None]
        with lock:
            _say(progress.done(f"{m} seed {seed}: mean auc {fmt(float(np.mean(aucs)) if aucs else None)}"))
        return run

    if at_once > 1:
        _say(f"online: {len(streams)} streams, {at_once} at a time")
    runs_of = run_concurrently([lambda s=s: replay(*s) for s in streams], at_once)
    for m in methods:
        runs = [run for (name, _, _), run in zip(streams, runs_of) if name == m]
        out[m] = {"runs": runs, "summary": summarize_runs(runs)}
        ov = out[m]["summary"]["overall"]
        _say(f"online {m}: mean auc {fmt(ov['auc']['mean'])} ± {fmt(ov['auc']['std'])}, mean |bias| "
             f"{fmt(ov['abs_bias']['mean'])} over {len(runs)} seed(s); {ov['steps']['mean']:.0f} steps of "
             f"{cfg.online.batch_size} rows; exchange {100 * ov['exchange_share']['mean']:.1f} % of training time")
        ft = out[m]["summary"]["final_test"]
        if ft is not None:
            _say(f"online {m}: final test auc {fmt(ft['auc']['mean'])} ± {fmt(ft['auc']['std'])}, bias "
                 f"{fmt(ft['bias']['mean'], '+.3f')} ± {fmt(ft['bias']['std'])} over {len(runs)} seed(s)")
    atomic.write_json(Path(out_dir) / "online" / "results.json", {**out, "drift": trace.to_dict()})
    return out


def _side_by_side_cpus(streams: int) -> float | None:
    """CPUs per actor when ``streams`` streams run at once: the free CPUs split over their actors
    (two per stream), so that no pair waits for another's CPUs; None for one stream at a time (the
    pair then asks for its own share). A Tune trial or a GPU decides first, ``OnlineStream._actor_options``."""
    return cpu_share(ray.available_resources().get("CPU", 0.0), 2 * streams) if streams > 1 else None


def drift_periods(root: str | Path) -> list[int]:
    """The injected drift periods of synthetic logs (``meta.json``), or ``[]`` for other data."""
    meta = read_meta(root)
    return [] if meta is None else [int(d) for d in meta.get("drift_periods", [])]
