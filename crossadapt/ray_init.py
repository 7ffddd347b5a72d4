"""Connect to Ray the same way on a laptop and on a cluster."""

from __future__ import annotations

import math
import os

import ray
import ray.data


def init_ray(num_cpus: int | None = None, object_store_memory: int | None = None) -> None:
    """Join the cluster named by ``RAY_ADDRESS`` (as ``ray job submit`` sets it), else start Ray locally.

    A local Ray binds to 127.0.0.1 and starts no dashboard: nothing is exposed beyond this machine.
    """
    if ray.is_initialized():
        return
    # Train V2 workers block in ``ray.train.report`` until the controller polls them (every 2 s by
    # default); a local Ray inherits this process's environment, so a shorter poll is set here.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    # Train V2 sends worker prints to its logger *and* to stdout: every progress line showed twice.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                 dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1", configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def cpu_share(cpus: float, parts: int) -> float:
    """``cpus / parts`` rounded *down* to 0.01 (at least 0.01): ``parts`` of it always fit in ``cpus``.

    Rounding to nearest can ask for 3 x 0.17 of 0.5 free CPU, and the last actor then waits forever.
    """
    return max(0.01, math.floor(100 * cpus / parts) / 100)
