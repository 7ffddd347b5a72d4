"""End a local Ray's processes when the process that started it ends, even by ``kill -9`` (Linux).

``ray.init`` starts the GCS, raylet, monitor and log monitor with ``PR_SET_PDEATHSIG``: the kernel
kills them with the driver. The raylet's own children are not bound that way: after a SIGKILL of the
driver the dashboard agent and the runtime-env agent see the raylet die, then wait 60 s for the dead
GCS (Ray 2.60 ``process_watcher.report_raylet_error_logs`` publishes the error with a fixed 60 s
timeout) before they exit: two orphans for a minute or more after every killed run.

So ``init_ray`` starts this file as a small process of its own (``start``) after a local Ray is up.
It reads a pipe whose writing end only the driver holds; end of file means the driver is ending,
however it ends. Once the driver's process is gone (the pipe may close while it still shuts down),
it ends every process of this user that holds a file open for writing in that Ray's session folder (its logs: every Ray process writes there, nothing else does; a ``tail -f`` of
a log reads). The session folder is unique to one local Ray. Not the environment: Ray's processes
set their title, which overwrites what ``/proc/<pid>/environ`` shows. Standard library only: it
runs as a script.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Seconds between SIGTERM and SIGKILL for a process of the session.
GRACE_S = 1.0
# The reaper of each session started by this process: kept referenced, since closing the pipe (as
# garbage collection of the Popen would) is the signal to reap.
_REAPERS: dict[str, subprocess.Popen] = {}


def start(session_dir: str | os.PathLike) -> subprocess.Popen | None:
    """Start the reaper of the local Ray in ``session_dir`` (a no-op off Linux, where ``/proc`` is missing)."""
    session = str(Path(session_dir).resolve())
    if not sys.platform.startswith("linux") or session in _REAPERS:
        return None
    # A session of its own: Ctrl-C at the terminal or a kill of the driver's process group leaves it
    # to do its job. The pipe's writing end is not inherited by the driver's other children (CLOEXEC).
    driver = f"{os.getpid()}:{_start_ticks(os.getpid())}"
    proc = subprocess.Popen([sys.executable, "-u", str(Path(__file__).resolve()), session, driver],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _REAPERS[session] = proc
    return proc


def _writes_into(pid: str, prefix: str) -> bool:
    """Whether process ``pid`` has a file under ``prefix`` open for writing."""
    fds = Path("/proc", pid, "fd")
    for fd in os.listdir(fds):
        try:
            if not os.readlink(fds / fd).startswith(prefix):
                continue
            flags = next(line for line in Path("/proc", pid, "fdinfo", fd).read_text().splitlines()
                         if line.startswith("flags:"))
        except (OSError, StopIteration):
            continue
        if int(flags.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
            return True
    return False


def _start_ticks(pid: int | str) -> int | None:
    """When process ``pid`` started (clock ticks since boot), to tell a reused pid; None when it is gone."""
    try:
        return int(Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _zombie(pid: str) -> bool:
    try:
        return Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def session_pids(session_dir: str | os.PathLike) -> list[int]:
    """Live processes (of this user) that write into ``session_dir``: the processes of that Ray."""
    prefix = str(Path(session_dir).resolve()) + os.sep
    me, found = str(os.getpid()), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            if _writes_into(pid, prefix) and not _zombie(pid):
                found.append(int(pid))
        except OSError:  # gone meanwhile, or another user's process
            continue
    return found


def reap(session_dir: str | os.PathLike) -> list[int]:
    """SIGTERM every process of ``session_dir``, SIGKILL those left after ``GRACE_S``; the pids found."""
    found = left = session_pids(session_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + GRACE_S
        while (left := session_pids(session_dir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not left:
            break
    return found


def main(session_dir: str, driver: str) -> None:
    """Wait for the end of standard input, then for the driver (``<pid>:<start ticks>``) to be gone (an
    exiting Python closes the pipe before it ends), then reap the processes of ``session_dir``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    pid, ticks = driver.split(":")
    while (now := _start_ticks(pid)) is not None and str(now) == ticks and not _zombie(pid):
        time.sleep(0.1)
    reap(session_dir)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
