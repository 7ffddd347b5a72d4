"""The online stage: replay time-ordered periods through the student/teacher actor pair (Ray glue).

Per period ``k`` of ``data.stream_periods``, for each online method (same stream, seed and start):

1. **Drift.** The JS divergence of period ``k``'s ids against period ``k - 1`` (the reference
   window; the period before the stream for the first one) gives the score ``s``; methods with
   history set ``r_enh = schedule(s)`` (``crossadapt.online.drift.r_enh_from_score``), others 0.
2. **Test.** The student (and the teacher) are evaluated on all of period ``k`` before training on
   it (prequential: test-then-train). These are the per-window metrics.
3. **Train.** Period ``k`` in time order (never shuffled across time), ``batch_size`` current rows
   per step plus ``round(b * r_enh / (1 - r_enh))`` rows drawn from the reservoir, so that the
   historical share of every batch is ``r_enh``. Batches are put in the object store once,
   ``online.steps_per_call`` consecutive steps at a time (never across an exchange); the teacher
   answers their soft labels and the student trains on them, one step per batch. Every ``tau`` steps
   (every step for ``sync_codistill``, never for a frozen teacher) the student's weights go to the
   teacher (when ``teacher_alpha > 0``) and the teacher updates on the batches it served. The
   current rows then enter the reservoir (a uniform sample of everything seen, seeded with the
   retained window).
4. **Commit.** Stream position, both actors' states (weights, optimizers, the teacher's pending
   batches), reservoir, detector, random state and the windows so far are written atomically to
   ``<out>/online/<method>/stream.pt``.

An actor that dies is replaced: both actors restart from the last commit and period ``k`` is
replayed from its start, so no period is skipped and none is trained twice. A rerun with the same
inputs resumes from the commit on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np
import ray
import torch

from crossadapt import atomic
from crossadapt.config import ExperimentConfig, to_dict
from crossadapt.data import arrays as A
from crossadapt.data.synthetic import read_meta
from crossadapt.errors import CheckpointError
from crossadapt.featuremap import FeatureMap
from crossadapt.online.actors import StudentActor, TeacherActor
from crossadapt.online.drift import DriftDetector, r_enh_from_score
from crossadapt.online.methods import get_online_method, teacher_interval
from crossadapt.online.reservoir import Reservoir
from crossadapt.ray_init import cpu_share, resolve_use_gpu

STATE_FILE = "stream.pt"
#: Times one period is replayed after actor failures before the stage gives up.
MAX_RESTARTS = 3


def _say(msg: str) -> None:
    print(f"[crossadapt] {msg}", flush=True)


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
    """One method's replay of the stream, with its actors and its commit file.

    Args:
        method: an online method name (``crossadapt.online.methods.ONLINE_METHODS``).
        cfg: the experiment config (``online``, ``data`` and ``resources`` are read).
        fm: the stream's feature map.
        out_dir: experiment folder; the commit goes to ``<out_dir>/online/<method>/stream.pt``.
        teacher_ckpt, student_ckpt: where both models start.
        history: rows that seed the reservoir (the retained window).
        reference_ids: ids of the period before the stream (the first drift reference), or None.
        seed: seed of the reservoir, the batch mixing and the actors.
    """

    def __init__(self, method: str, cfg: ExperimentConfig, fm: FeatureMap, out_dir: str | Path, teacher_ckpt: str,
                 student_ckpt: str, history: A.Arrays | None, reference_ids: np.ndarray | None, seed: int) -> None:
        self.method = method
        self.spec = get_online_method(method)
        self.cfg = cfg
        self.ocfg = cfg.online
        self.fm = fm
        self.interval = teacher_interval(self.spec, self.ocfg) if self.spec.kd else None
        self.teacher_ckpt, self.student_ckpt = str(teacher_ckpt), str(student_ckpt)
        self.history, self.reference_ids, self.seed = history, reference_ids, seed
        self.periods = A.period_range(cfg.data.stream_periods)
        self.dir = Path(out_dir) / "online" / method
        self.path = self.dir / STATE_FILE
        self.fingerprint = hashlib.sha256(json.dumps({
            "method": method, "online": to_dict(self.ocfg), "periods": self.periods, "seed": seed,
            "root": cfg.data.root, "teacher": _file_id(self.teacher_ckpt), "student": _file_id(self.student_ckpt),
        }, sort_keys=True).encode()).hexdigest()
        self.student = self.teacher = None
        self.restarts = 0
        self.on_step: Callable[[int, int], None] | None = None

    # ------------------------------------------------------------ state

    def _fresh(self) -> dict[str, Any]:
        """The state before the first period (actor states are filled in by the actors)."""
        det = DriftDetector(self.ocfg.top_k, len(self.fm.categorical_names))
        if self.reference_ids is not None:
            det.set_reference(self.reference_ids)
        res = Reservoir(self.ocfg.reservoir_size if self.spec.history else 0, seed=self.seed)
        if self.spec.history and self.history is not None:
            res.add(self.history)
        return {"fingerprint": self.fingerprint, "next": 0, "step": 0, "windows": [], "exchange_seconds": 0.0,
                "train_seconds": 0.0, "detector": det.state_dict(), "reservoir": res.state_dict(),
                "rng": np.random.default_rng([self.seed, 7]).bit_generator.state, "student": None, "teacher": None}

    def _load(self) -> dict[str, Any] | None:
        """The commit on disk if it belongs to this exact run, else None."""
        if not self.path.exists():
            return None
        try:
            raw = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: start over rather than crash
            _say(f"online {self.method}: ignoring unreadable {self.path} ({type(e).__name__}: {e})")
            return None
        if raw.get("fingerprint") != self.fingerprint:
            return None
        raw["reservoir"] = _to_numpy(raw["reservoir"])
        return raw

    def _commit(self, state: dict[str, Any]) -> None:
        state["student"] = ray.get(self.student.get_state.remote())
        state["teacher"] = ray.get(self.teacher.get_state.remote()) if self.teacher is not None else None
        with atomic.atomic_path(self.path) as tmp:
            torch.save({**state, "reservoir": _to_torch(state["reservoir"])}, tmp)

    # ------------------------------------------------------------ actors

    def _actor_options(self) -> dict[str, Any]:
        if resolve_use_gpu(self.cfg.resources):
            return {"num_cpus": 1, "num_gpus": 0.5}  # the pair shares one GPU
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
        if self.spec.kd:  # student_only needs no teacher at all
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
        """Replay every period not yet committed; returns the method's results block.

        ``on_window`` is called with each new window once its period is committed (Tune trials
        report through it); ``on_step(period, steps)`` each time the steps of a period so far have
        been sent to the actors (fault tests kill an actor there, at an exact step count).
        """
        t0 = time.perf_counter()
        self.on_step = on_step
        state = self._load()
        if state is not None and state["next"] > 0:
            _say(f"online {self.method}: resuming at period {self.periods[state['next']] if state['next'] < len(self.periods) else 'end'}")
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
        return {
            "windows": windows,
            "wall_seconds": time.perf_counter() - t0,
            "train_seconds": train,
            "exchange_seconds": state["exchange_seconds"],
            # share of the training wall time the actors spent on the exchange (copying the student's
            # weights out and loading them into the teacher; the object-store transfer overlaps)
            "exchange_share": state["exchange_seconds"] / train if train > 0 else 0.0,
            "steps": state["step"],
            "teacher_updates": windows[-1]["teacher_version"] if windows else 0,
            "restarts": self.restarts,
            "tau": self.interval,
        }

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
                _say(f"online {self.method}: an actor died in period {k} ({type(e).__name__}); "
                     f"restarting both from the last commit and replaying period {k}")
                self._start_actors(committed)
        raise AssertionError("unreachable")

    def _period(self, committed: dict[str, Any]) -> dict[str, Any]:
        """Run one period from ``committed`` (left untouched) and return the state after it."""
        o, spec = self.ocfg, self.spec
        k = self.periods[committed["next"]]
        data = A.read_periods(self.cfg.data.root, [k], self.fm)
        det = DriftDetector(o.top_k, len(self.fm.categorical_names))
        det.load_state_dict(committed["detector"])
        res = Reservoir(0)
        res.load_state_dict(committed["reservoir"])
        rng = np.random.default_rng()
        rng.bit_generator.state = committed["rng"]
        step, exchange = committed["step"], committed["exchange_seconds"]

        t0 = time.perf_counter()
        score = det.score(data["ids"]).aggregate if det.has_reference else 0.0
        det.set_reference(data["ids"])
        r_enh = r_enh_from_score(score, o.theta_low, o.theta_high, o.r_enh_min, o.r_enh_max) if spec.history else 0.0
        if spec.history and o.reset_history_on_shift and score >= o.theta_high:
            res.clear()  # history from before the shift no longer describes the traffic

        exchange_start = self._exchange_time()
        data_ref = ray.put(data)
        evals = [self.student.evaluate.remote(data_ref)] + ([self.teacher.evaluate.remote(data_ref)] if spec.kd else [])
        evals = ray.get(evals)

        n, bs = A.num_rows(data), o.batch_size
        inflight: deque = deque()
        exchanges: list = []  # refs collected at the end of the period, so that an error surfaces
        losses: list[float] = []
        chunk: list = []
        for s0 in range(0, n, bs):
            cur = A.take(data, slice(s0, s0 + bs))
            n_hist = int(round(A.num_rows(cur) * r_enh / (1.0 - r_enh))) if r_enh > 0 and len(res) else 0
            chunk.append(A.concat([cur, res.sample(n_hist, rng)]) if n_hist else cur)
            if spec.history:
                res.add(cur)
            step += 1
            exchange_now = self.interval is not None and step % self.interval == 0
            if len(chunk) < o.steps_per_call and not exchange_now and s0 + bs < n:
                continue
            b = ray.put(chunk)  # the chunk's batches, put once for both actors
            z = self.teacher.soft_labels_many.remote(b) if spec.kd else None
            inflight.append(self.student.train_steps.remote(b, z))
            chunk = []
            if self.on_step is not None:
                self.on_step(k, step - committed["step"])
            if exchange_now:
                # Nothing waits here: calls to one actor run in the order they were made, so the
                # snapshot follows this step, the update follows the snapshot, and every later
                # soft label comes from the new weights.
                if self.needs_student:
                    exchanges.append(self.teacher.receive_student.remote(self.student.publish_weights.remote()))
                exchanges.append(self.teacher.update.remote())
            while len(inflight) > o.max_inflight:
                losses += ray.get(inflight.popleft())
        for ref in inflight:
            losses += ray.get(ref)
        ray.get(exchanges)
        version = ray.get(self.teacher.version.remote()) if self.teacher is not None else 0
        exchange += self._exchange_time() - exchange_start
        seconds = time.perf_counter() - t0

        window = {"period": k, **{m: evals[0][m] for m in ("auc", "logloss", "bias")},
                  "drift_score": float(score), "r_enh": float(r_enh), "rows": n,
                  "steps": step - committed["step"], "train_loss": float(np.mean(losses)) if losses else 0.0,
                  "teacher_version": version, "seconds": seconds}
        if spec.kd:
            window["teacher_auc"] = evals[1]["auc"]
        _say(f"online {self.method} period {k}: auc {window['auc']:.4f} bias {window['bias']:+.3f} "
             f"drift {score:.3f} r_enh {r_enh:.2f} ({window['steps']} steps, {seconds:.1f} s)")
        return {**committed, "next": committed["next"] + 1, "step": step, "windows": committed["windows"] + [window],
                "exchange_seconds": exchange, "train_seconds": committed["train_seconds"] + seconds,
                "detector": det.state_dict(), "reservoir": res.state_dict(), "rng": rng.bit_generator.state}


def stream_inputs(cfg: ExperimentConfig, fm: FeatureMap) -> tuple[A.Arrays, np.ndarray | None]:
    """What every method's stream starts from: the retained window (seeds the reservoir) and the ids
    of the period just before the stream (the first drift reference; None when there is none)."""
    start = cfg.data.stream_periods[0]
    available = set(A.list_periods(cfg.data.root))
    reference = A.read_periods(cfg.data.root, [start - 1], fm)["ids"] if start - 1 in available else None
    return A.read_periods(cfg.data.root, A.period_range(cfg.data.window_periods), fm), reference


def run_online(cfg: ExperimentConfig, fm: FeatureMap, out_dir: str | Path, teacher_ckpt: str, student_ckpt: str,
               methods: tuple[str, ...] | None = None, seed: int | None = None) -> dict[str, Any]:
    """Replay ``data.stream_periods`` for every online method; returns ``{method: results block}``.

    Every method starts from the same student and teacher checkpoints. The reservoir is seeded with
    the retained window (``data.window_periods``); the drift reference starts at the period just
    before the stream. Ray must be initialised.
    """
    for path in (teacher_ckpt, student_ckpt):
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: checkpoint not found (run the offline stage first)")
    methods = tuple(methods or cfg.online.methods)
    for m in methods:
        get_online_method(m)  # unknown names fail before any work
    seed = cfg.seeds[0] if seed is None else seed
    history, reference = stream_inputs(cfg, fm)
    out: dict[str, Any] = {}
    for m in methods:
        out[m] = OnlineStream(m, cfg, fm, out_dir, teacher_ckpt, student_ckpt, history, reference, seed).run()
        w = out[m]["windows"]
        _say(f"online {m}: mean auc {np.mean([x['auc'] for x in w]):.4f}, mean |bias| "
             f"{np.mean([abs(x['bias']) for x in w]):.4f}, {out[m]['steps']} steps, exchange "
             f"{100 * out[m]['exchange_share']:.1f} % of {out[m]['train_seconds']:.1f} s")
    atomic.write_json(Path(out_dir) / "online" / "results.json", out)
    return out


def drift_periods(root: str | Path) -> list[int]:
    """The injected drift periods of synthetic logs (``meta.json``), or ``[]`` for other data."""
    meta = read_meta(root)
    return [] if meta is None else [int(d) for d in meta.get("drift_periods", [])]
