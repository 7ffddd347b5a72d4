"""ray_jobs/ end to end: ``ray job submit`` to a local Ray head that this test starts and stops itself.

Other Ray instances may run on the same machine (the session fixture, other users): this test never
runs ``ray stop``, which would kill them all. Its head runs ``ray start --head --block`` in a session
of its own, with a private temp dir and auth token; stopping it signals that process and then kills
only what carries this head's marks (its session id or its temp dir in the environment).

The head is also "the cluster ``ray start`` recorded on this machine" for every process run with its
environment (``RAY_TMPDIR`` points at its temp dir, where it writes ``ray_current_cluster``): a
plain ``ray.init()`` there joins it, as it would join another user's head in ``/tmp/ray``.
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

from crossadapt import ray_reaper

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
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # `python` = this venv
                   RAY_TMPDIR=str(self.temp_dir))  # Ray's default temp dir (<it>/ray) for processes run with env
        self.env = env
        self.log = self.temp_dir / "head.log"
        cmd = [
            str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent_port}",
            "--num-cpus=2", f"--temp-dir={self.temp_dir / 'ray'}", "--disable-usage-stats",
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
                # `ray start` records the cluster once it is up, which may be after the job API answers
                if (self.temp_dir / "ray" / "ray_current_cluster").is_file():
                    self.session_dir = (self.temp_dir / "ray" / "session_latest").resolve()  # before others start
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
        """Live processes of this head: in its session, with its temp dir in their environment, or writing
        into it (``ray_reaper.session_pids``: Ray's agents set their title over what ``environ`` shows).

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
        return sorted({*found, *ray_reaper.session_pids(self.temp_dir)})

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


@pytest.fixture(scope="module")
def ray_head():
    """A private local Ray head, shared by this file's tests, stopped (and checked to be gone) after them."""
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


# ---------------------------------------------------------------- which Ray a run joins (issue 13, item 6)

# A crossadapt command line whose command starts Ray as every command does (``init_ray`` after the
# CLI's own argument handling) and prints the session it got, instead of training.
PROBE = """
import sys
import ray
from crossadapt import cli
from crossadapt.ray_init import init_ray

def probe(args):
    init_ray()
    print("SESSION", ray._private.worker.global_worker.node.get_session_dir_path(), flush=True)
    return 0

cli.cmd_train = probe
sys.exit(cli.main(sys.argv[1:]))
"""


def _session_of(ray_head: LocalHead, argv: list[str], code: str = PROBE) -> Path:
    """The Ray session a driver run with the head's environment (``RAY_ADDRESS`` unset) ends up in."""
    env = {**ray_head.env, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, *argv], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return Path(next(line.split(" ", 1)[1] for line in out.stdout.splitlines() if line.startswith("SESSION ")))


def test_a_local_run_starts_its_own_ray_and_address_joins_a_cluster(ray_head: LocalHead) -> None:
    # The fault: a plain ray.init() joins the cluster recorded on the machine (here, this head).
    plain = "import ray; ray.init(); print('SESSION', ray._private.worker.global_worker.node.get_session_dir_path())"
    assert _session_of(ray_head, [], plain) == ray_head.session_dir

    own = _session_of(ray_head, ["train"])
    assert own != ray_head.session_dir and own.parent == ray_head.session_dir.parent

    joined = _session_of(ray_head, ["train", "--address", f"127.0.0.1:{ray_head.gcs_port}"])
    assert joined == ray_head.session_dir


# ---------------------------------------------------------------- config paths under `ray job submit`
#
# Contract (crossadapt.paths, crossadapt.experiment.preflight): relative paths in a config file resolve
# against the file's folder, --set ones against the current folder. Under `ray job submit` both lie in
# Ray's temporary copy of the working dir, so a run refuses them (exit 2, naming the key) unless the
# job's env names the folder it was submitted from (CROSSADAPT_SUBMIT_DIR): they then resolve there.


def _needs_config_relative_paths() -> None:
    pytest.importorskip("crossadapt.paths", reason="config paths relative to the config file and CROSSADAPT_SUBMIT_DIR "
                                                   "(crossadapt.paths) are not in this checkout yet")


def _checkout(tmp_path: Path, shared_data: Path) -> Path:
    """A copy of this checkout (what `--working-dir .` uploads) with ../shared/data beside it, as in the repo."""
    checkout = tmp_path / "crossadapt"
    for name in ("crossadapt", "ray_jobs", "configs"):
        shutil.copytree(REPO / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    sample = "criteo/criteo_sample.txt"
    (tmp_path / "shared" / "data" / "criteo").mkdir(parents=True)
    shutil.copy(shared_data / sample, tmp_path / "shared" / "data" / sample)
    return checkout


def _submit(ray_head: LocalHead, cwd: Path, entrypoint: list[str], env_vars: dict[str, str] | None = None) -> tuple[str, str]:
    """``ray job submit --working-dir . [--runtime-env-json ...] -- <entrypoint>`` from ``cwd``; (status, logs)."""
    job_id = f"crossadapt-test-{secrets.token_hex(4)}"
    runtime = ["--runtime-env-json", json.dumps({"env_vars": env_vars})] if env_vars else []
    submit = subprocess.run([str(RAY), "job", "submit", "--address", ray_head.address, "--submission-id", job_id,
                             "--no-wait", "--working-dir", ".", *runtime, "--", *entrypoint],
                            env=ray_head.env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    status = ray_head.wait_for_job(job_id, timeout=900)
    return status, ray_head.api(f"jobs/{job_id}/logs")["logs"]


def _results_under_ray(ray_head: LocalHead) -> list[Path]:
    return sorted((ray_head.temp_dir / "ray").rglob("results.json"))


@pytest.mark.slow
def test_submitted_transfer_writes_results_where_the_config_says(ray_head: LocalHead, tmp_path: Path,
                                                                  shared_data: Path) -> None:
    _needs_config_relative_paths()
    checkout = _checkout(tmp_path, shared_data)
    command = ["python", "ray_jobs/transfer.py", "--config", "configs/criteo_sample.yaml"]
    out_dir = checkout / "runs" / "criteo-sample"  # configs/criteo_sample.yaml: ../runs/criteo-sample

    # The command as is: the config's folder is Ray's temporary copy; refused, nothing written there.
    status, logs = _submit(ray_head, checkout, command)
    assert status == "FAILED", logs
    assert "out_dir" in logs and "CROSSADAPT_SUBMIT_DIR" in logs, logs
    assert _results_under_ray(ray_head) == []

    # Naming the folder it was submitted from: the results land where the config says. (One seed, one
    # method and few epochs keep it short; none touches a path.)
    small = [f"--set={kv}" for kv in ("seeds=[0]", "methods=[crossadapt]", "optim.epochs=2", "optim.patience=1",
                                      "distill.phase1_epochs=1", "distill.phase2_epochs=1", "tracking.wandb=disabled")]
    status, logs = _submit(ray_head, checkout, [*command, *small], {"CROSSADAPT_SUBMIT_DIR": str(checkout)})
    assert status == "SUCCEEDED", logs
    results = json.loads((out_dir / "results.json").read_text())
    assert list(results["offline"]) == ["crossadapt"] and results["offline"]["crossadapt"]["seed"] == [0]
    assert results["config"]["out_dir"] == str(out_dir)
    assert results["config"]["data"]["raw_path"] == str(tmp_path / "shared" / "data" / "criteo" / "criteo_sample.txt")
    assert _results_under_ray(ray_head) == []


def test_a_relative_out_dir_set_under_submit(ray_head: LocalHead, tmp_path: Path, shared_data: Path) -> None:
    _needs_config_relative_paths()
    checkout = _checkout(tmp_path, shared_data)
    validate = ["python", "-m", "crossadapt.cli", "validate", "--config", "configs/criteo_sample.yaml",
                "--set", "out_dir=elsewhere/run"]
    status, logs = _submit(ray_head, checkout, validate)  # into Ray's temporary copy: an error naming the key
    assert status == "FAILED" and "out_dir" in logs and "temporary copy" in logs, logs

    status, logs = _submit(ray_head, checkout, validate, {"CROSSADAPT_SUBMIT_DIR": str(checkout)})
    assert status == "SUCCEEDED", logs  # resolved against the folder the job was submitted from
    assert yaml.safe_load(logs[logs.index("out_dir:"):].split("\n", 1)[0])["out_dir"] == str(checkout / "elsewhere" / "run")
