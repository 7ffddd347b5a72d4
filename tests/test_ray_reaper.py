"""``kill -9`` of a run leaves no Ray process behind (issue 13, item 8): ``crossadapt.ray_reaper``.

Without the reaper, the dashboard and runtime-env agents of a killed driver's local Ray stay for
60 s or more (they wait for the dead GCS); the end-to-end test allows 20 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossadapt import ray_reaper

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc (Linux)")

REPO = Path(__file__).resolve().parents[1]

# Opens argv[1] for writing (argv[2] == "w") or reading, prints "open", then waits.
OPENER = """
import sys, time
f = open(sys.argv[1], sys.argv[2])
print("open", flush=True)
time.sleep(600)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _opener(path: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", OPENER, str(path), mode], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "open"
    return proc


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_reap_ends_the_writers_of_a_session_only(tmp_path: Path) -> None:
    session = tmp_path / "session_x"
    (session / "logs").mkdir(parents=True)
    (session / "logs" / "a.log").write_text("")
    writer = _opener(session / "logs" / "a.log", "a")
    reader = _opener(session / "logs" / "a.log", "r")  # a `tail -f` of a log is not Ray's
    neighbour = _opener(tmp_path / "session_x2.log", "w")  # a name that merely starts alike
    try:
        assert ray_reaper.session_pids(session) == [writer.pid]
        assert ray_reaper.reap(session) == [writer.pid]
        writer.wait(timeout=10)
        assert reader.poll() is None and neighbour.poll() is None
    finally:
        for proc in (writer, reader, neighbour):
            proc.kill()
            proc.wait()


# A driver stand-in: starts the reaper of argv[1], then a process writing into it (in a session of its
# own, so only the reaper can end it), prints that pid and waits to be killed.
DRIVER = """
import subprocess, sys, time
from crossadapt import ray_reaper
ray_reaper.start(sys.argv[1])
w = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'w'); time.sleep(600)",
                      sys.argv[1] + "/raylet.out"], start_new_session=True)
while not ray_reaper.session_pids(sys.argv[1]):
    time.sleep(0.05)
print(w.pid, flush=True)
time.sleep(600)
"""


def test_the_reaper_acts_when_its_driver_is_killed(tmp_path: Path) -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=_env())
    try:
        writer = int(driver.stdout.readline())
        time.sleep(1.0)
        assert _alive(writer)  # nothing ends it while the driver lives
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        assert _wait_gone([writer], 15) == []
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


# A driver that writes into its session folder itself (as Ray's driver does) and closes the pipe while it
# still runs (as an exiting Python does, collecting the Popen): the reaper waits for it to be gone.
EXITING_DRIVER = """
import subprocess, sys, time
from crossadapt import ray_reaper
log = open(sys.argv[1] + "/python-core-driver.log", "w")
ray_reaper.start(sys.argv[1])
w = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'w'); time.sleep(600)",
                      sys.argv[1] + "/raylet.out"], start_new_session=True)
while not ray_reaper.session_pids(sys.argv[1]):  # the writer (session_pids leaves out the caller)
    time.sleep(0.05)
print(w.pid, flush=True)
ray_reaper._REAPERS.popitem()[1].stdin.close()
time.sleep(2.0)
print("still here", flush=True)
"""


def test_the_reaper_waits_for_its_driver_to_end(tmp_path: Path) -> None:
    driver = subprocess.Popen([sys.executable, "-c", EXITING_DRIVER, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=_env())
    try:
        writer = int(driver.stdout.readline())
        assert driver.stdout.readline().strip() == "still here"
        assert driver.wait(timeout=30) == 0  # not ended by its own reaper
        assert _wait_gone([writer], 15) == []  # the session's process is, once the driver is gone
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


# A crossadapt driver: starts its local Ray as every command does, runs a task, prints the session
# folder, then waits to be killed.
RAY_DRIVER = """
import time
import ray
from crossadapt.ray_init import init_ray
init_ray(num_cpus=1, object_store_memory=80 * 1024**2)
ray.get(ray.remote(lambda: 1).remote())
print(ray._private.worker.global_worker.node.get_session_dir_path(), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_kill_9_of_a_run_leaves_no_ray_process() -> None:
    env = {k: v for k, v in _env().items() if k != "RAY_ADDRESS"}  # a local Ray, whose session folder is its own
    driver = subprocess.Popen([sys.executable, "-c", RAY_DRIVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    try:
        line = driver.stdout.readline().strip()
        assert line, f"the driver ended before its Ray was up:\n{driver.communicate()[1][-3000:]}"
        session = Path(line)
        assert session.is_absolute() and session.is_dir(), session
        deadline = time.monotonic() + 30  # the raylet starts its two agents on its own time
        while len(pids := ray_reaper.session_pids(session)) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in pids if _alive(p)}
        assert {"ray::DashboardA", "ray::RuntimeEnv"} <= names, names  # the processes that used to stay
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        left = _wait_gone(pids, 20)
        assert left == [], {p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left if _alive(p)}
        assert ray_reaper.session_pids(session) == []
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
