"""Connect to Ray the same way on a laptop and on a cluster."""

from __future__ import annotations

import logging
import math
import os
import time

import ray
import ray.data

from crossadapt import ray_logs, ray_reaper
from crossadapt.config import ResourcesConfig
from crossadapt.errors import ResourcesError

log = logging.getLogger(__name__)
# True when init_ray started Ray in this process (no cluster, so no autoscaler that could add GPUs).
_LOCAL = {"started": False}
MIN_STARTUP_CONCURRENCY = 16


def init_ray(num_cpus: int | None = None, object_store_memory: int | None = None, address: str | None = None) -> None:
    """Join the cluster named by ``address`` or ``RAY_ADDRESS`` (as ``ray job submit`` sets it), else start
    a Ray of this process's own.

    A local Ray never joins a cluster that ``ray start`` recorded on this machine (``ray.init()`` without an
    address would: another user's head node ran our job). It binds to 127.0.0.1, its dashboard too (with
    token authentication): nothing is exposed beyond this machine. The dashboard serves the State API that
    Ray Train's placement-group cleaner polls every second (without it, one warning per poll). Its
    processes end with this one, even on ``kill -9`` (``crossadapt.ray_reaper``). Ray's own logging:
    ``crossadapt.ray_logs``.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    # Train V2 workers block in ``ray.train.report`` until the controller polls them (every 2 s by
    # default); a local Ray inherits this process's environment, so a shorter poll is set here.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    # Train V2 sends worker prints to its logger *and* to stdout: every progress line showed twice.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    ray_logs.configure_environment()
    if address != "local":
        ray.init(address=address, log_to_driver=True, runtime_env=ray_logs.runtime_env())
    else:
        # Ray expects at most one worker process starting per CPU and warns at 4x that; a Ray Train run
        # alone starts ~8 (controller, its helper actors, dataset manager, split coordinator, workers),
        # so on a small machine every run warned. A local Ray lets 16 start at once (a user setting wins).
        if (num_cpus or os.cpu_count() or 1) < MIN_STARTUP_CONCURRENCY:
            os.environ.setdefault("RAY_worker_maximum_startup_concurrency", str(MIN_STARTUP_CONCURRENCY))
        # One machine is never drained by a cluster manager: Ray Train's preemption watcher (an actor,
        # one more process started per fit) has nothing to watch here.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_memory,
                 include_dashboard=True, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
                 configure_logging=False, runtime_env=ray_logs.runtime_env())
        try:  # the session folder of this Ray: what the reaper of a killed driver looks for
            session = ray._private.worker.global_worker.node.get_session_dir_path()
        except AttributeError as e:  # a Ray without this private API: no reaper, nothing else lost
            log.debug("no reaper for this Ray: %s", e)
        else:
            ray_reaper.start(session)
        _LOCAL["started"] = True
    ray_logs.filter_forwarded()
    ray.data.DataContext.get_current().enable_progress_bars = False


def cpu_share(cpus: float, parts: int) -> float:
    """``cpus / parts`` rounded *down* to 0.01 (at least 0.01): ``parts`` of it always fit in ``cpus``.

    Rounding to nearest can ask for 3 x 0.17 of 0.5 free CPU, and the last actor then waits forever.
    """
    return max(0.01, math.floor(100 * cpus / parts) / 100)


def resolve_use_gpu(resources: ResourcesConfig) -> bool:
    """Whether Ray Train workers and online actors take GPUs: the one place ``use_gpu`` is decided.

    ``auto``: when the cluster has any GPU now. ``true``: GPUs are required; a local Ray without
    one is an error at once, and a cluster without one gets a request to its autoscaler and
    ``resources.gpu_wait_s`` to provide it, then an error (rather than workers waiting forever).
    """
    have = ray.cluster_resources().get("GPU", 0) > 0
    if resources.use_gpu == "false":
        return False
    if resources.use_gpu == "auto" or have:
        return have
    if _LOCAL["started"]:
        raise ResourcesError("resources.use_gpu=true, but this machine's Ray sees no GPU (no CUDA device, or "
                             "CUDA_VISIBLE_DEVICES hides it); use resources.use_gpu=auto or false here")
    try:  # ask the autoscaler for one GPU; a cluster without one simply never provides it
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{"GPU": 1}])
    except Exception as e:  # no autoscaler on this cluster
        log.debug("request_resources failed: %s", e)
    log.warning("resources.use_gpu=true: no GPU in the cluster yet, waiting up to %.0f s for the autoscaler",
                resources.gpu_wait_s)
    deadline = time.monotonic() + resources.gpu_wait_s
    while time.monotonic() < deadline:
        if ray.cluster_resources().get("GPU", 0) > 0:
            return True
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    raise ResourcesError(f"resources.use_gpu=true, but the cluster had no GPU after {resources.gpu_wait_s:.0f} s "
                         "(resources.gpu_wait_s); check the cluster's GPU node types, or use use_gpu=auto")


def train_workers(resources: ResourcesConfig, use_gpu: bool) -> int:
    """Ray Train workers to start: ``num_workers``, capped at the GPUs of a local Ray when on GPUs.

    One GPU per worker (NCCL refuses two ranks on one device); a cluster's autoscaler may add GPU
    nodes, so only a local Ray is capped.
    """
    n = resources.num_workers
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if use_gpu and _LOCAL["started"] and 0 < gpus < n:
        log.warning("resources.num_workers=%d but this machine has %d GPU(s): using %d worker(s)", n, gpus, gpus)
        return gpus
    return n
