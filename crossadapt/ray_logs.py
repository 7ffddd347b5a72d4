"""What Ray prints: its libraries' chatter kept in Ray's log files, off the console, configured at each source.

Ray writes everything to the session's files (``/tmp/ray/session_*/logs``); the console of a
successful run shows crossadapt's lines only, and any warning or error Ray logs on a failure still
reaches it. Source by source (the run's noise and what keeps it out):

- Ray Train (controller and workers: "Requesting resources", "Started training worker group",
  "Setting up process group", "Checkpoint successfully created", "Reporting training result ...
  metrics={...}"): Ray Train's own console level, ``RunConfig(logging_config=train_logging())``.
- Ray Data ("Starting execution of Dataset", "Execution plan", "execution finished"): Ray Data's
  logging config (``RAY_DATA_LOGGING_CONFIG`` = ``ray_data_logging.yaml``): its console from
  WARNING, its file still at DEBUG; its notice that progress bars are off (we turn them off) goes
  to the file only.
- The notice that a new local Ray enabled token authentication (we keep it on): that logger's level.
- Ray Train's own use of a Ray Data option Ray deprecated (``exclude_resources``): that warning.
- torch's ``[c10d] The hostname of the client socket cannot be retrieved`` (a host whose name does
  not resolve, harmless for gloo on one machine): ``TORCH_CPP_LOG_LEVEL=ERROR`` in workers.
- Ray Train's ``PlacementGroupCleaner`` asks the State API (served by the dashboard) every second
  whether the Train controller lives: ``crossadapt.ray_init`` starts the dashboard (127.0.0.1) and
  ``setup_worker`` gives each worker its own cluster's address, so the question is asked of the
  right cluster (with several Ray instances on one machine it crashed, or could ask another's).
- The raylet's "N PYTHON worker processes have been started ... 4x the maximum expected startup
  concurrency" on a machine of few CPUs (a Ray Train run alone starts ~8): ``crossadapt.ray_init``
  lets a local Ray start 16 at once.
- A traceback Ray Data's file listing prints when its pool's completion thread loses a race with the
  pool's shutdown (harmless, listing done; frequent on a loaded machine): ``_quiet_listing_race``.
- Two lines Ray's core logs at E level on every successful run, about its own internals, with no
  setting to turn them off: ``filter_forwarded`` drops exactly those (see ``NOISE``).

One thing Ray does to lines it forwards is undone for ours: it collapses lines of several processes
that differ only in words with digits, and never prints a line collapsed once. Two lanes of
students ending together ("job 8 of 8 done (kd-seed2: ...)" and "job 10 of 10 done (kd-seed1:
...)") lost one of the two; ``[crossadapt]`` lines are exempt (``RAY_DEDUP_LOGS_ALLOW_REGEX``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

from crossadapt import log

#: Ray Data's logging config: console WARNING and up, file DEBUG (Ray's default keeps INFO on the console).
RAY_DATA_CONFIG = Path(__file__).with_name("ray_data_logging.yaml")
#: Set for the driver and every worker before Ray Data is imported there (an explicit user setting wins).
ENV = {"RAY_DATA_LOGGING_CONFIG": str(RAY_DATA_CONFIG)}
#: Forwarded lines Ray never collapses (a user's own ``RAY_DEDUP_LOGS_ALLOW_REGEX`` wins).
DEDUP_ALLOW = r"\[crossadapt\]"
#: Workers, unless --verbose: torch's C++ warnings (the c10d hostname line) off, its errors kept.
QUIET_WORKER_ENV = {"TORCH_CPP_LOG_LEVEL": "ERROR"}
SETUP_HOOK = "crossadapt.ray_logs.setup_worker"

# Lines forwarded from Ray's processes that are no news on a run that succeeds, as
# (source process or "*" for any, pattern); anything else is printed as Ray prints it.
NOISE: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Train V2 creates its PreemptionWatcher with max_restarts > 0 and arguments in the object
    # store; Ray's core warns about its own call at E level (ray-project/ray#53727), every run.
    ("TrainController", re.compile(r"core_worker\.cc:\d+: Actor with class name: 'PreemptionWatcher'.*max_restarts > 0")),
    # The GCS logs at E level that it could not kill an actor whose process had already exited
    # (Ray Train tearing its worker group down at the end of a run).
    ("gcs_server", re.compile(r"Failed to kill actor .*RpcError")),
    # A worker process reused after its actor ended gets the KillActor meant for that actor and
    # ignores it, at E level; any pooled worker (named by pid only) may print it.
    ("*", re.compile(r"core_worker\.cc:\d+: Mismatched ActorID: ignoring KillActor for previous actor")),
)


def configure_environment() -> None:
    """Ray's logging settings in this process's environment (inherited by a local Ray's workers); call
    before Ray Data is imported to quiet this process's Ray Data too. A user's own setting is kept."""
    _ray_data_logging()
    _keep_our_lines()
    # A new local Ray enables token authentication and says so at WARNING on every start; it stays on.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def _keep_our_lines() -> None:
    """``DEDUP_ALLOW`` for Ray's log deduplication: in the environment for Ray imported later, and
    on this process's deduplicators when Ray was imported already (they read it on import)."""
    allow = os.environ.setdefault("RAY_DEDUP_LOGS_ALLOW_REGEX", DEDUP_ALLOW)
    try:  # private, but where the setting read on import lives
        from ray._private import ray_logging
    except ImportError:
        return
    for dedup in (getattr(ray_logging, "stdout_deduplicator", None), getattr(ray_logging, "stderr_deduplicator", None)):
        if dedup is not None and hasattr(dedup, "allow_re"):
            dedup.allow_re = re.compile(allow)


def _ray_data_logging() -> None:
    """Point Ray Data at ``RAY_DATA_CONFIG`` (unless the user named a config) and, when Ray Data was
    imported already (it configures its logging on import), apply it again now."""
    import sys

    for k, v in ENV.items():
        os.environ.setdefault(k, v)
    if "ray.data" in sys.modules:
        try:  # private, but the one function that (re)reads RAY_DATA_LOGGING_CONFIG
            from ray.data._internal.logging import configure_logging
        except ImportError:
            return
        configure_logging()


def runtime_env() -> dict[str, Any]:
    """The job-level runtime env that carries these settings to every worker (on a cluster too)."""
    level = os.environ.get(log.LEVEL_ENV, "INFO")
    quiet = {} if log.level_from_env() <= log.VERBOSE else QUIET_WORKER_ENV
    env: dict[str, Any] = {"worker_process_setup_hook": SETUP_HOOK, "env_vars": {log.LEVEL_ENV: level, **quiet}}
    # Under `ray job submit`, Ray merges this with the submitted runtime env and refuses the same field
    # or variable in both: the submitted one is kept.
    try:
        submitted = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")).get("runtime_env") or {}
    except (ValueError, AttributeError):
        submitted = {}
    env["env_vars"] = {k: v for k, v in env["env_vars"].items() if k not in (submitted.get("env_vars") or {})}
    return {k: v for k, v in env.items() if v and (k == "env_vars" or k not in submitted)}


def setup_worker() -> None:
    """Run by Ray in every worker process of our job, before its first task (``runtime_env()``)."""
    import ray

    _ray_data_logging()  # a cluster's workers did not inherit the driver's environment
    log.setup_worker()
    # Ray Train's own state export reads a Ray Data option Ray deprecated (in its DatasetManager actor).
    warnings.filterwarnings("ignore", message=re.escape("`ExecutionOptions.exclude_resources` is deprecated"))
    threading.excepthook = _quiet_listing_race(threading.excepthook)
    if log.level_from_env() > log.VERBOSE:
        # Ray Train logs "Reporting training result ... metrics={...}" on a logger named by its file's
        # path, outside ``ray.train``, so its LoggingConfig misses it; this is that logger.
        logging.getLogger(str(Path(ray.__file__).parent / "train" / "v2" / "_internal" / "execution" /
                              "context.py")).setLevel(logging.WARNING)
    # The State API client of Ray Train's PlacementGroupCleaner finds "its" cluster by looking for
    # Ray processes on the machine: with two instances it dies, or it may ask another cluster's
    # dashboard about our controller, find nothing, and remove our training's placement group.
    if not os.environ.get("RAY_ADDRESS"):
        address = ray.get_runtime_context().gcs_address
        if address:
            os.environ["RAY_ADDRESS"] = address


def _quiet_listing_race(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """``threading.excepthook`` less one Ray Data race: its file listing (``ListFiles``) finishes, the
    listing generator shuts its thread pool down, and the pool's completion thread, late (a loaded
    machine), is interrupted putting its stop markers and dies printing a traceback: nothing was lost,
    every file was listed. Any other thread's exception is printed as before."""
    def excepthook(args: Any) -> None:
        tb = args.exc_traceback
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = tb.tb_frame.f_code.co_filename if tb is not None else ""
        if (args.exc_type is InterruptedError and str(getattr(args.thread, "name", "")).endswith("completion-signaler")
                and where.replace(os.sep, "/").endswith("ray/data/_internal/util.py")):
            return
        hook(args)

    return excepthook


def train_logging(verbose: bool | None = None) -> Any:
    """Ray Train's ``LoggingConfig``: its INFO lines on the console only with ``--verbose``."""
    from ray.train.v2.api.config import LoggingConfig

    if verbose is None:
        verbose = log.level_from_env() <= log.VERBOSE
    return LoggingConfig(log_level="INFO" if verbose else "WARNING")


def is_noise(data: dict[str, Any], line: str) -> bool:
    """Whether ``line``, forwarded from the Ray process that ``data`` describes, is in ``NOISE``."""
    source = str(data.get("actor_name") or data.get("task_name") or data.get("pid") or "")
    return any(who in ("*", source) and pattern.search(line) for who, pattern in NOISE)


def filter_forwarded() -> bool:
    """Drop the ``NOISE`` lines from the worker output Ray forwards to this driver; True when installed.

    Ray prints forwarded lines through one handler of its stdstream dispatcher (private); it is
    wrapped, and when this Ray has no such handler nothing is filtered (the lines then show).
    """
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    with dispatcher._lock:
        handlers = list(dispatcher.handlers)
        for i, (name, handler) in enumerate(handlers):
            if name == "ray_print_logs" and not getattr(handler, "_crossadapt_filter", False):
                handlers[i] = (name, _filtered(handler))
                dispatcher.handlers = handlers
                return True
    return any(name == "ray_print_logs" for name, _ in handlers)


def _filtered(handler: Callable[[dict], None]) -> Callable[[dict], None]:
    def handle(data: dict) -> None:
        lines = [line for line in data.get("lines", []) if not is_noise(data, line)]
        if lines:
            handler({**data, "lines": lines})

    handle._crossadapt_filter = True  # type: ignore[attr-defined]
    return handle
