"""The progress lines (k of N, elapsed, ETA), the heartbeat, and the logging set-up of the command line."""

from __future__ import annotations

import io
import logging

import pytest

from crossadapt import log
from crossadapt.progress import Heartbeat, Progress, duration, progress_line


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (-3, "0s"), (44.6, "45s"), (59.4, "59s"), (60, "1m00s"),
                                           (125, "2m05s"), (3599, "59m59s"), (3600, "1h00m"), (3725, "1h02m"),
                                           (90000, "25h00m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_progress_line_eta_is_mean_time_of_done_items_times_items_left():
    # 3 of 18 in 130 s: 130 / 3 * 15 = 650 s left
    assert progress_line("students", 3, 18, 130.0, "kd-seed1") == \
        "students: job 3 of 18 done (kd-seed1), 2m10s elapsed, ETA 10m50s"
    assert progress_line("online", 15, 15, 3725.0, unit="stream") == "online: stream 15 of 15 done, all done in 1h02m"
    assert progress_line("x", 0, 4, 5.0) == "x: job 0 of 4 done, 5s elapsed"


def test_progress_counts_and_times_with_its_clock():
    clock = FakeClock()
    p = Progress("online", 4, unit="stream", clock=clock)
    clock.t += 30
    assert p.done("kd seed 0") == "online: stream 1 of 4 done (kd seed 0), 30s elapsed, ETA 1m30s"
    clock.t += 50  # 80 s for 2: 40 s each, 2 left
    assert p.done() == "online: stream 2 of 4 done, 1m20s elapsed, ETA 1m20s"
    clock.t += 40
    p.done()
    clock.t += 40
    assert p.done() == "online: stream 4 of 4 done, all done in 2m40s"


def test_heartbeat_is_due_once_per_interval():
    clock = FakeClock()
    hb = Heartbeat(60.0, clock=clock)
    clock.t += 59.9
    assert not hb.due()
    clock.t += 0.1
    assert hb.due() and not hb.due()  # due at 60 s, then the next minute starts
    clock.t += 30
    assert not hb.due()
    clock.t += 30
    assert hb.due()


def test_setup_prints_crossadapt_info_and_other_libraries_warnings_only():
    buf = io.StringIO()
    old_root_level = logging.getLogger().level
    try:
        log.setup(log.NORMAL, stream=buf, propagate_env=False)
        say = log.sayer("crossadapt.experiment.offline")
        say("teacher test auc 0.7000")
        logging.getLogger("crossadapt.train.engine").debug("epoch line")
        logging.getLogger("somelib").info("chatter")
        logging.getLogger("somelib").warning("trouble")
        assert buf.getvalue().splitlines() == ["[crossadapt] teacher test auc 0.7000", "[somelib] warning: trouble"]
        buf.truncate(0), buf.seek(0)
        log.setup(log.VERBOSE, stream=buf, propagate_env=False)  # replaces the handler: one line each
        logging.getLogger("crossadapt.train.engine").debug("epoch line")
        assert buf.getvalue().splitlines() == ["[crossadapt] epoch line"]
        buf.truncate(0), buf.seek(0)
        log.setup(log.QUIET, stream=buf, propagate_env=False)
        say("teacher test auc 0.7000")
        logging.getLogger("crossadapt.cli").warning("careful")
        assert buf.getvalue().splitlines() == ["[crossadapt] warning: careful"]
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if isinstance(h, log._Handler)]:
            root.removeHandler(h)
        root.setLevel(old_root_level)
        logging.getLogger(log.ROOT).setLevel(logging.NOTSET)


def test_cli_takes_quiet_and_verbose_before_or_after_the_command():
    from crossadapt.cli import build_parser

    p = build_parser()
    assert p.parse_args(["--quiet", "tables", "x"]).level == log.QUIET
    assert p.parse_args(["tables", "x", "-v"]).level == log.VERBOSE
    assert not hasattr(p.parse_args(["tables", "x"]), "level")
    with pytest.raises(SystemExit):
        p.parse_args(["tables", "x", "-q", "-v"])


def test_conversion_passes_report_rows_with_an_eta_when_the_total_is_known(caplog):
    from crossadapt.data.converters.conversion import _reported

    batches = [[0] * 30, [0] * 30, [0] * 40]
    with caplog.at_level(logging.INFO, logger="crossadapt.data.converters.conversion"):
        assert list(_reported(iter(batches), "criteo x.txt: pass 2 of 2", total=100, heartbeat_s=0.0)) == batches
        list(_reported(iter(batches[:1]), "criteo x.txt: pass 1 of 2", heartbeat_s=0.0))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("criteo x.txt: pass 2 of 2: row 30 of 100 done, 0s elapsed, ETA ")
    assert lines[2].startswith("criteo x.txt: pass 2 of 2: row 100 of 100 done, all done in ")
    assert lines[3].startswith("criteo x.txt: pass 2 of 2: done, 100 valid rows in ")
    assert lines[4].startswith("criteo x.txt: pass 1 of 2: 30 valid rows so far, ")  # no total: no ETA
    assert len(lines) == 6


def test_ray_lines_dropped_are_exactly_the_two_known_ones_from_their_process():
    from crossadapt.ray_logs import is_noise

    gcs = {"pid": "gcs_server", "is_err": True}
    kill = "[2026-11-28 05:00:01,123 E 123 456] gcs_actor_manager.cc:1234: Failed to kill actor 0a1b, status: RpcError"
    assert is_noise(gcs, kill)
    assert not is_noise({"pid": 4242, "actor_name": "RayTrainWorker"}, kill)  # same words, another process
    assert not is_noise(gcs, "[2026-11-28 05:00:01,123 E 123 456] gcs_server.cc:99: Failed to start GCS server")
    watcher = ("[2026-11-28 05:00:01,123 E 77 77] core_worker.cc:2900: Actor with class name: 'PreemptionWatcher' "
               "and ID: '9f' has constructor arguments in the object store and max_restarts > 0.")
    assert is_noise({"pid": 77, "actor_name": "TrainController"}, watcher)
    assert not is_noise({"pid": 77, "actor_name": "TrainController"}, "Training failed: ValueError")
    reused = ("[2026-11-28 06:55:15,574 E 21421 21555] core_worker.cc:4621: Mismatched ActorID: ignoring KillActor "
              "for previous actor c97fb5bd626f4cf2997813b601000000, current actor ID: NIL_ID")
    assert is_noise({"pid": 21421}, reused) and not is_noise({"pid": 21421}, reused.replace("KillActor", "Task"))


def test_ray_never_collapses_two_processes_crossadapt_lines(monkeypatch):
    """Two lanes' last lines differ only in words with digits: Ray's deduplicator held the second back
    and never printed it; after ``configure_environment`` both pass, and other lines still collapse."""
    from ray._private import ray_logging

    from crossadapt import ray_logs

    monkeypatch.delenv("RAY_DEDUP_LOGS_ALLOW_REGEX", raising=False)
    monkeypatch.setattr(ray_logging, "RAY_DEDUP_LOGS", True)  # as for a user (conftest turns it off)
    dedup = ray_logging.LogDeduplicator(5, None, None, _timesource=lambda: 0.0)
    monkeypatch.setattr(ray_logging, "stdout_deduplicator", dedup)
    ours = ["[crossadapt] students lane 1 of 2: job 10 of 10 done (kd-seed1: 9 epochs), all done in 3m06s",
            "[crossadapt] students lane 2 of 2: job 8 of 8 done (kd-seed2: 11 epochs), all done in 3m07s"]
    theirs = ["worker 1 started in 3s", "worker 2 started in 4s"]

    def printed() -> list[str]:
        out = []
        for pid, lines in ((1, [ours[0], theirs[0]]), (2, [ours[1], theirs[1]])):
            for batch in dedup.deduplicate({"ip": "a", "pid": pid, "lines": lines}):
                out += batch["lines"]
        return out

    assert printed() == [ours[0], theirs[0]]  # Ray alone: the second process's lines are held back
    dedup.recent.clear()
    ray_logs.configure_environment()
    assert printed() == [ours[0], theirs[0], ours[1]]


def test_worker_runtime_env_leaves_what_a_submitted_job_sets_to_the_submission(monkeypatch):
    """Ray refuses to merge a driver's runtime env with the submitted one when both set a field or variable."""
    import json

    from crossadapt.ray_logs import SETUP_HOOK, runtime_env

    monkeypatch.setenv(log.LEVEL_ENV, "INFO")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert runtime_env() == {"worker_process_setup_hook": SETUP_HOOK,
                             "env_vars": {log.LEVEL_ENV: "INFO", "TORCH_CPP_LOG_LEVEL": "ERROR"}}
    monkeypatch.setenv(log.LEVEL_ENV, "DEBUG")  # --verbose: torch's C++ warnings shown too
    assert runtime_env()["env_vars"] == {log.LEVEL_ENV: "DEBUG"}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(
        {"runtime_env": {"working_dir": "gcs://x.zip", "worker_process_setup_hook": "mine.hook",
                         "env_vars": {log.LEVEL_ENV: "WARNING"}}}))
    assert runtime_env() == {}


def test_only_ray_datas_listing_race_is_kept_off_the_console():
    """The completion thread of Ray Data's listing pool, interrupted after the listing finished, dies
    quietly; the same error in any other thread, or another error there, is printed."""
    import threading

    from ray.data._internal.util import _InterruptibleQueue  # the queue whose put raises

    from crossadapt.ray_logs import _quiet_listing_race

    seen = []
    hook = _quiet_listing_race(lambda args: seen.append((args.thread.name, args.exc_type)))

    def run(name, fn):
        old = threading.excepthook
        threading.excepthook = hook
        try:
            t = threading.Thread(target=fn, name=name)
            t.start()
            t.join()
        finally:
            threading.excepthook = old

    def ray_put_interrupted():
        q = _InterruptibleQueue(1, threading.Event())
        q._interrupted_event.set()
        q.put(1)  # raises InterruptedError inside ray/data/_internal/util.py

    run("pool-4/completion-signaler", ray_put_interrupted)
    run("mine", ray_put_interrupted)
    run("pool-4/completion-signaler", lambda: 1 / 0)
    assert seen == [("mine", InterruptedError), ("pool-4/completion-signaler", ZeroDivisionError)]
