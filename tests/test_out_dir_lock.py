"""One run at a time in an out_dir (issue 13, item 5): the lock file, its holder, staleness, release.

The end-to-end case (two `crossadapt transfer` runs on one out_dir) is the last test; the others
drive ``crossadapt.experiment.lock`` directly, with holders in other processes where a pid matters.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from crossadapt.errors import OutDirInUse
from crossadapt.experiment import lock
from crossadapt.experiment.lock import LOCK_FILE, hold

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("crossadapt")

# A process that holds the lock of argv[1] until its stdin closes (prints "held" once it does).
HOLDER = """
import sys
from crossadapt.experiment.lock import hold
with hold(sys.argv[1], command="holder-under-test"):
    print("held", flush=True)
    sys.stdin.read()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.fixture
def other_holder(tmp_path: Path):
    """Start another process holding ``tmp_path / "run"``; yields ``(out_dir, process)``; ends it after."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=_env())
    try:
        assert proc.stdout.readline().strip() == "held"
        yield out, proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=30)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@contextmanager
def _logged(caplog: pytest.LogCaptureFixture, pattern: str):
    """The block logs a warning of the lock matching ``pattern`` (a take-over is said, not silent)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=lock.__name__):
        yield
    assert any(re.search(pattern, r.getMessage()) for r in caplog.records if r.name == lock.__name__), caplog.text


def _write_lock(out: Path, **fields) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "host_id": lock.host_id(), "pid_start": None,
            "command": "crossadapt transfer --config old.yaml", "started": "2020-01-01T00:00:00+00:00",
            "token": "old", **fields}
    path = out / LOCK_FILE
    path.write_text(json.dumps(info))
    return path


def test_the_lock_names_its_holder_and_goes_with_it(tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"
    with hold(out, command="crossadapt demo") as path:
        info = json.loads(path.read_text())
        assert path == out / LOCK_FILE
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["command"] == "crossadapt demo" and info["started"]
        with hold(out):  # the same process again (a command calling a library function that locks): nests
            assert path.is_file()
        assert path.is_file()  # still held by the outer block
        (out / "results.json").write_text("{}")
    assert not path.exists()
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # nothing else left behind


def test_released_on_error_and_on_ctrl_c(tmp_path: Path) -> None:
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with hold(tmp_path / "run"):
                raise exc
        assert not (tmp_path / "run" / LOCK_FILE).exists(), type(exc)


def test_a_second_run_is_refused_with_the_holder(other_holder) -> None:
    out, proc = other_holder
    t0 = time.monotonic()
    with pytest.raises(OutDirInUse) as refused:
        with hold(out):
            pytest.fail("entered a held out_dir")
    assert time.monotonic() - t0 < 5  # at once, not after a timeout
    message = str(refused.value)
    assert f"pid {proc.pid} on host {socket.gethostname()}" in message
    assert "command: holder-under-test" in message and "started 20" in message and str(out) in message
    assert (out / LOCK_FILE).is_file()  # the holder's lock is untouched
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == proc.pid


def test_the_lock_of_a_killed_run_is_taken_over(other_holder, caplog) -> None:
    out, proc = other_holder
    proc.send_signal(signal.SIGKILL)  # no chance to release
    proc.wait(timeout=30)
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == proc.pid  # the fault left its lock
    with _logged(caplog, rf"taking over the lock .* pid {proc.pid} .* is gone"):
        with hold(out) as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_reused_pid_does_not_keep_a_lock(tmp_path: Path, caplog) -> None:
    # our own (live) pid, but recorded with another start time: the process that wrote it is gone
    _write_lock(tmp_path, pid=os.getpid(), pid_start=lock._start_ticks(os.getpid()) - 1)
    with _logged(caplog, "pid now belongs to another process"):
        with hold(tmp_path):
            pass


def test_another_hosts_lock_is_stale_only_without_heartbeat(tmp_path: Path, caplog) -> None:
    # Its pid says nothing here; its age on the filesystem's clock does.
    path = _write_lock(tmp_path, pid=_dead_pid(), host="node-7", host_id="node-7|other-boot|pid:[1]")
    with pytest.raises(OutDirInUse, match="pid .* on host node-7"):
        with hold(tmp_path):
            pass
    old = path.stat().st_mtime - lock.STALE_AFTER_S - 30
    os.utime(path, (old, old))
    with _logged(caplog, "no heartbeat from host node-7"):
        with hold(tmp_path):
            pass
    assert not path.exists()


def test_the_heartbeat_touches_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    with hold(tmp_path) as path:
        old = time.time() - 1000
        os.utime(path, (old, old))
        deadline = time.monotonic() + 10
        while path.stat().st_mtime < old + 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_mtime > old + 500


def test_an_unreadable_fresh_lock_is_refused_an_old_one_taken(tmp_path: Path, caplog) -> None:
    path = tmp_path / LOCK_FILE
    path.write_text("")  # e.g. another run's exclusive create, not written yet
    with pytest.raises(OutDirInUse, match="being written or is unreadable"):
        with hold(tmp_path):
            pass
    old = time.time() - lock.STALE_AFTER_S - 30
    os.utime(path, (old, old))
    with _logged(caplog, "unreadable and old"):
        with hold(tmp_path):
            pass


# ---------------------------------------------------------------- two crossadapt runs, one out_dir


def _tiny_transfer_config(tmp_path: Path) -> Path:
    cfg = {
        "out_dir": str(tmp_path / "run"), "seeds": [0], "methods": ["scratch", "crossadapt"],
        "data": {"root": str(tmp_path / "data"), "teacher_periods": [0, 2], "window_periods": [2, 3],
                 "test_periods": [3, 4], "stream_periods": [4, 5]},
        "synthetic": {"num_fields": 4, "vocab_size": 100, "rows_per_period": 1500, "num_periods": 5,
                      "drift_periods": [4]},
        "teacher": {"name": "dnn", "embed_dim": 4, "hidden_units": [16]},
        "student": {"name": "dnn", "embed_dim": 8, "hidden_units": [16]},
        "optim": {"epochs": 2, "patience": 1, "batch_size": 256},
        "distill": {"phase1_epochs": 1, "phase2_epochs": 1, "batch_size": 128, "allow_weak_teacher": True},
        "resources": {"num_workers": 1, "cpus_per_worker": 1.0, "use_gpu": "false", "checkpoint_interval_s": 0},
        "tracking": {"wandb": "disabled"},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.skipif(not CLI.exists(), reason="the crossadapt command is not installed in this environment")
def test_two_concurrent_runs_on_one_out_dir(ray_session, tmp_path: Path) -> None:
    config = _tiny_transfer_config(tmp_path)
    out = tmp_path / "run"
    # the first run joins this session's Ray rather than starting one (seconds of start-up saved)
    env = {**_env(), "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    # The data first: the second run's checks of it then see it whole, never half-written by the first.
    prepare = subprocess.run([str(CLI), "prepare", "--config", str(config)], capture_output=True, text=True,
                             env=_env(), cwd=tmp_path, timeout=300)
    assert prepare.returncode == 0, prepare.stdout + prepare.stderr
    first = subprocess.Popen([str(CLI), "transfer", "--config", str(config)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK_FILE).is_file():
            assert first.poll() is None, f"the first run ended before it held the lock:\n{first.stdout.read()}"
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.1)

        t0 = time.monotonic()
        second = subprocess.run([str(CLI), "transfer", "--config", str(config), "--set", "seeds=[1]"],
                                capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused: nothing was tested"
        assert second.returncode == 2, second.stdout + second.stderr
        assert time.monotonic() - t0 < 60  # refused before Ray or the data: seconds even on a busy machine
        message = second.stderr.strip().splitlines()
        assert len(message) == 1 and message[0].startswith(f"crossadapt: error: out_dir {out} is in use"), message
        assert f"pid {first.pid} on host {socket.gethostname()}" in message[0]
        assert f"transfer --config {config}" in message[0] and "started 20" in message[0]

        output, _ = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, output
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["offline"]) == ["crossadapt", "scratch"]
    assert all(block["seed"] == [0] for block in results["offline"].values())  # the first run's seeds only
    assert results["config"]["seeds"] == [0]
    assert (out / "report.md").is_file()
    assert not (out / LOCK_FILE).exists()  # released at the end
