"""One run at a time in an output folder: a lock file naming its holder, with a heartbeat.

Two runs writing one ``out_dir`` interleave checkpoints and the last ``results.json`` wins, so every
command that writes an ``out_dir`` (transfer, online, demo, train, zoo, tune) holds
``<out_dir>/.crossadapt.lock`` while it runs, and a second one is refused at once (``OutDirInUse``,
exit 2) with the holder's pid, host, command and start time.

A file rather than ``fcntl``/``flock``: those are unreliable or missing on NFS and EFS, where a
cluster's ``out_dir`` lives. The file is created whole and atomically (written aside, then
``os.link``ed into place; ``O_EXCL`` where links are unsupported). Its holder touches it every
``HEARTBEAT_S`` seconds. A lock is stale, and taken over with a logged warning, when its holder is gone:

- written on this host (same host name, boot and pid namespace): its pid is gone or now another
  process (its start time differs);
- written on another host: it was not touched for ``STALE_AFTER_S`` seconds, measured on the file
  server's clock (the lock's mtime against a file written now), so clocks of the hosts do not matter.

Released on normal exit, on an error and on Ctrl-C; a run killed otherwise leaves a stale lock.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from crossadapt.errors import OutDirInUse

log = logging.getLogger(__name__)

LOCK_FILE = ".crossadapt.lock"
#: Seconds between touches of a held lock.
HEARTBEAT_S = 15.0
#: A lock of another host untouched this long is stale (many heartbeats: a busy NFS server may lag).
STALE_AFTER_S = 120.0

# Locks this process holds: path -> [token, depth]. A command holding its out_dir may call library
# functions that take the same lock (e.g. run_experiment -> train_teacher): they nest.
_HELD: dict[Path, list] = {}
_HELD_GUARD = threading.Lock()

F = TypeVar("F", bound=Callable[..., Any])


def host_id() -> str:
    """This host as far as pids mean the same process: host name, boot id and pid namespace."""
    parts = [socket.gethostname()]
    for path, read in (("/proc/sys/kernel/random/boot_id", lambda p: Path(p).read_text().strip()),
                       ("/proc/self/ns/pid", os.readlink)):
        try:
            parts.append(read(path))
        except OSError:  # not Linux: the host name alone
            pass
    return "|".join(parts)


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot; Linux), to tell a reused pid; None if unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    return shlex.join(argv)


def _holder_info(token: str, command: str | None) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "host_id": host_id(),
            "pid_start": _start_ticks(os.getpid()), "command": command or _command(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"), "token": token}


def _read(path: Path) -> dict[str, Any] | None:
    """The holder written in ``path``; None when it is absent or unreadable."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "token" in info else None


def _create(path: Path, info: dict[str, Any]) -> bool:
    """Create ``path`` holding ``info``, whole, unless it exists; whether it was created."""
    tmp = path.with_name(f"{LOCK_FILE}.{info['token']}.tmp")
    data = json.dumps(info, indent=1).encode()
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        # NFS: a retried link whose first try succeeded answers EEXIST; the link count tells.
        return os.stat(tmp).st_nlink == 2
    except OSError:  # a filesystem without hard links: exclusive create (atomic on NFSv3+ and EFS)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _age(path: Path) -> float | None:
    """Seconds since ``path`` was last touched, on the clock of the filesystem that holds it."""
    probe = path.with_name(f"{LOCK_FILE}.{secrets.token_hex(8)}.probe")
    try:
        probe.write_bytes(b"")
        now = probe.stat().st_mtime
        return max(0.0, now - path.stat().st_mtime)
    except OSError:
        return None
    finally:
        probe.unlink(missing_ok=True)


def stale_reason(path: Path, holder: dict[str, Any]) -> str | None:
    """Why the lock ``holder`` read from ``path`` is stale, or None when its run may be alive."""
    pid = holder.get("pid")
    if holder.get("host_id") == host_id() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"its process {pid} on this host is gone"
        except PermissionError:  # another user's live process
            return None
        start = _start_ticks(pid)
        if holder.get("pid_start") is not None and start is not None and start != holder["pid_start"]:
            return f"its process {pid} on this host is gone (the pid now belongs to another process)"
        return None
    age = _age(path)
    if age is not None and age > STALE_AFTER_S:
        return f"no heartbeat from host {holder.get('host', '?')} for {age:.0f} s"
    return None


def _refusal(out_dir: Path, path: Path, holder: dict[str, Any] | None) -> OutDirInUse:
    if holder is None:
        return OutDirInUse(f"out_dir {out_dir} is in use by another run (lock file {path} is being written or is "
                           "unreadable); wait for that run, or choose another out_dir")
    age = _age(path)
    beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
    return OutDirInUse(
        f"out_dir {out_dir} is in use by another run: pid {holder.get('pid')} on host {holder.get('host')}, "
        f"started {holder.get('started')}, command: {holder.get('command')}{beat}. Wait for it to end or choose "
        f"another out_dir. (A lock whose run is gone is taken over by itself: at once on the same host, after "
        f"{STALE_AFTER_S:.0f} s without a heartbeat from another host; lock file {path})")


def _take_over(path: Path, holder: dict[str, Any], token: str) -> None:
    """Remove the stale lock ``holder`` from ``path``, unless another run replaced it meanwhile."""
    aside = path.with_name(f"{LOCK_FILE}.{token}.stale")
    try:
        os.rename(path, aside)  # atomic: of two runs taking over, one moves the stale lock
    except FileNotFoundError:
        return
    moved = _read(aside)
    if moved is not None and moved.get("token") != holder.get("token"):
        try:  # a live lock that replaced the stale one meanwhile: put it back
            os.link(aside, path)
        except OSError:
            pass
    aside.unlink(missing_ok=True)


def _beat(path: Path, token: str, stop: threading.Event) -> None:
    """Touch ``path`` every ``HEARTBEAT_S`` while it is this run's lock."""
    while not stop.wait(HEARTBEAT_S):
        holder = _read(path)
        if holder is None or holder.get("token") != token:
            log.warning("the lock %s was taken over by another run (%s): its results may interleave with this one's",
                        path, (holder or {}).get("command", "unknown"))
            return
        try:
            os.utime(path)
        except OSError:
            pass


@contextmanager
def hold(out_dir: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold ``out_dir``'s lock for the duration (created with the folder); yields the lock file.

    Raises ``OutDirInUse`` at once when another live run holds it; takes a stale one over with a
    warning. ``command`` is what the lock says the holder runs (default: this process's argv).
    """
    out = Path(out_dir).absolute()
    path = out / LOCK_FILE
    with _HELD_GUARD:
        if path in _HELD:
            _HELD[path][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield path
        finally:
            with _HELD_GUARD:
                _HELD[path][1] -= 1
        return

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(12)
    info = _holder_info(token, command)
    for _ in range(20):
        if _create(path, info):
            break
        holder = _read(path)
        if holder is None:  # being created by another run (or garbage): judged by its age
            age = _age(path)
            if age is None or age <= STALE_AFTER_S:
                time.sleep(0.2)
                holder = _read(path)
                if holder is None:
                    raise _refusal(out, path, None)
            else:
                holder = {"token": None}
        why = "it is unreadable and old" if holder.get("token") is None else stale_reason(path, holder)
        if why is None:
            raise _refusal(out, path, holder)
        log.warning("taking over the lock of out_dir %s from pid %s on host %s (command: %s): %s", out,
                    holder.get("pid"), holder.get("host"), holder.get("command"), why)
        _take_over(path, holder, token)
    else:
        raise OutDirInUse(f"out_dir {out}: could not take its lock {path} (other runs keep taking it)")

    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(path, token, stop), name="crossadapt-lock-heartbeat", daemon=True)
    beat.start()
    with _HELD_GUARD:
        _HELD[path] = [token, 1]
    try:
        yield path
    finally:
        stop.set()
        with _HELD_GUARD:
            _HELD.pop(path, None)
        holder = _read(path)
        if holder is not None and holder.get("token") == token:
            path.unlink(missing_ok=True)
        if created:  # a run refused before writing anything leaves no empty folder behind
            try:
                out.rmdir()
            except OSError:
                pass


def holds_out_dir(fn: F) -> F:
    """Decorate a function whose first argument is an ``ExperimentConfig``: it runs holding ``cfg.out_dir``."""
    @functools.wraps(fn)
    def wrapper(cfg, *args, **kwargs):
        with hold(cfg.out_dir):
            return fn(cfg, *args, **kwargs)
    return wrapper  # type: ignore[return-value]
