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
