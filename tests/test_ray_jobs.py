"""ray_jobs/ end to end: ``ray job submit`` to a local Ray head that this test starts and stops itself.

Other Ray instances may run on the same machine (the session fixture, other users): this test never
runs ``ray stop``, which would kill them all. Its head runs ``ray start --head --block`` in a session
of its own, with a private temp dir and auth token; stopping it signals that process and then kills
only what carries this head's marks (its session id or its temp dir in the environment).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
JOBS = ("prepare", "train_teacher", "transfer", "online", "tune")
# What the working-dir upload leaves out (Ray also honours .gitignore): it stays a few hundred KB.
EXCLUDES = [".git", ".venv", "runs", "**/__pycache__", "*.egg-info", ".pytest_cache", "wandb"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds its processes in /proc")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now (all sockets held open until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalHead:
    """A Ray head with a dashboard on 127.0.0.1, token auth and nothing shared with other Ray instances.

    Every port with a fixed default (GCS 6379, client server 10001, dashboard 8265, agent 52365) is
    picked free, so it starts beside any other Ray on the machine.
    """

    def __init__(self) -> None:
        # Short and private: Ray's unix sockets live under it (108-byte path limit), and it marks
        # every process of this head through the environment they inherit.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="crj", dir="/tmp"))
        self.gcs_port, self.dashboard_port, client_port, agent_port = _free_ports(4)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.token = secrets.token_hex(16)
        token_file = self.temp_dir / "auth_token"
        token_file.write_text(self.token)
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        # Ray 2.60 turns token auth on whenever ~/.ray/auth_token exists; set it explicitly, with a
        # token of this head's own, so the test neither depends on nor touches the user's token.
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file), OMP_NUM_THREADS="1",
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")  # `python` = this venv
        self.env = env
        self.log = self.temp_dir / "head.log"
        cmd = [
            str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent_port}",
            "--num-cpus=1", f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def api(self, path: str) -> Any:
        """GET ``<dashboard>/api/<path>`` with this head's token; the decoded JSON."""
        headers = {"Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(f"{self.address}/api/{path}", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the job API answers (authenticated), or fail with the head's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"ray start exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.api("jobs/")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        pytest.fail(f"the Ray head did not answer at {self.address} within {timeout:.0f} s:\n"
                    f"{self.log.read_text()[-3000:]}")

    def wait_for_job(self, job_id: str, timeout: float = 300.0) -> str:
        """Poll the job until it ends; its final status (SUCCEEDED, FAILED or STOPPED)."""
        deadline = time.monotonic() + timeout
        while (status := self.api(f"jobs/{job_id}")["status"]) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} still {status} after {timeout:.0f} s")
            time.sleep(0.5)
        return status

    def ray(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
        """Run ``ray <args>`` against this head with its token (cwd: the repo)."""
        return subprocess.run([str(RAY), *args], env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)

    def pids(self) -> list[int]:
        """Live processes of this head: in its session, or with its temp dir in their environment.

        The second catches the job driver, which Ray starts in a session of its own.
        """
        marker = f"{self.temp_dir}/".encode()  # as in RAY_AUTH_TOKEN_PATH, inherited by every process
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                state, _ppid, _pgrp, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
                if state == "Z":  # exited, waiting to be reaped: nothing left to stop
                    continue
                if int(session) == self.proc.pid or marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except (OSError, ValueError):  # gone meanwhile, or another user's process
                continue
        return found

    def stop(self) -> None:
        """Stop this head only: SIGTERM to ``ray start --block`` (it stops its Ray processes), then
        SIGKILL whatever of this head is left (e.g. dashboard subprocesses), then remove the temp dir."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        assert not left, f"processes of the test head still running: {left}"


@pytest.fixture
def ray_head():
    """A private local Ray head, stopped (and checked to be gone) after the test."""
    head = LocalHead()
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()


def _tiny_config(tmp_path: Path) -> Path:
    """Four small synthetic periods (teacher 0, window 1, test 2, stream 3) under ``tmp_path``."""
    cfg = {
        "out_dir": str(tmp_path / "out"),
        "data": {"root": str(tmp_path / "data"), "teacher_periods": [0, 1], "window_periods": [1, 2],
                 "test_periods": [2, 3], "stream_periods": [3, 4]},
        "synthetic": {"num_fields": 4, "vocab_size": 100, "rows_per_period": 500, "num_periods": 4,
                      "drift_periods": [3]},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_prepare_job_submitted_to_local_head(ray_head: LocalHead, tmp_path: Path) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:  # the head really checks tokens
        urllib.request.urlopen(f"{ray_head.address}/api/jobs/", timeout=10)
    assert refused.value.code == 401

    config = _tiny_config(tmp_path)
    job_id = f"crossadapt-test-{secrets.token_hex(4)}"
    submit = ray_head.ray(
        "job", "submit", "--address", ray_head.address, "--submission-id", job_id, "--no-wait",
        "--working-dir", str(REPO), "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
        "--", "python", "ray_jobs/prepare.py", "--config", str(config),
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    status = ray_head.wait_for_job(job_id)
    logs = ray_head.api(f"jobs/{job_id}/logs")["logs"]
    assert status == "SUCCEEDED", logs
    assert "synthetic, 4 fields" in logs  # the job's own output, from the submitted script

    data = tmp_path / "data"
    feature_map = json.loads((data / "feature_map.json").read_text())
    assert len(feature_map["fields"]) == 4
    for k in range(4):
        files = sorted((data / f"period={k}").glob("*.parquet"))
        assert files, f"period {k} has no parquet file"
        assert sum(pq.read_metadata(f).num_rows for f in files) == 500


@pytest.mark.parametrize("job", JOBS)
def test_job_scripts_run_the_cli_subcommand(job: str) -> None:
    """Each script is the matching ``crossadapt`` subcommand (its --help shows that parser)."""
    command = {"train_teacher": "train"}.get(job, job)
    out = subprocess.run([sys.executable, str(REPO / "ray_jobs" / f"{job}.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: crossadapt {command} "), out.stdout
