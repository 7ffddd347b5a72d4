"""cluster.yaml passes the checks ``ray up`` makes before it touches a cloud, offline.

``ray up`` runs ``prepare_config`` (merge with the provider's defaults, setup commands, Docker and
per-type worker bounds) and then ``validate_config`` (Ray's JSON schema and cross-field rules); the
step between them that asks EC2 for instance resources needs credentials, and is not needed here
because every node type states its resources.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _validated(raw: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` would go on with (it raises where ``ray up`` would stop)."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_cluster_yaml_passes_ray_validation(raw: dict[str, Any]) -> None:
    config = _validated(raw)
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    # A CPU head that never scales, and GPU workers the autoscaler adds and removes within bounds.
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] > 0
    assert head["max_workers"] == 0
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers.values())
    assert all(0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"] for t in workers.values())
    assert config["max_workers"] >= 1


def test_cluster_installs_the_synced_project(raw: dict[str, Any]) -> None:
    config = _validated(raw)
    assert "." in config["file_mounts"].values()  # the repository, from where `ray up` runs
    synced = next(remote for remote, local in config["file_mounts"].items() if local == ".")
    for key in ("head_setup_commands", "worker_setup_commands"):  # prepare_config put setup_commands in front
        commands = config[key]
        assert any(c.split()[:3] == ["pip", "install", "-q"] and "torch" in c for c in commands), key
        assert commands[-1].endswith(f"pip install -q -e {synced}"), key  # the project last, after torch
    assert any("download.pytorch.org/whl/cpu" in c for c in config["head_setup_commands"])
    assert not any("whl/cpu" in c for c in config["worker_setup_commands"])  # GPU workers: the CUDA build


def test_dashboard_not_exposed_and_token_auth_on(raw: dict[str, Any]) -> None:
    config = _validated(raw)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in yaml.safe_dump(raw)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "RAY_AUTH_MODE=token" in config[key][-1], key


BROKEN = {
    "unknown key": lambda c: c.update(unknown_top_level_key=1),
    "no resources": lambda c: c["available_node_types"]["gpu_worker"].pop("resources"),
    "fractional GPU": lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU=0.5),
    "unknown head type": lambda c: c.update(head_node_type="no_such_type"),
    "min_workers above max_workers": lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=5),
}


@pytest.mark.parametrize("name", BROKEN)
def test_the_validation_is_real(raw: dict[str, Any], name: str) -> None:
    """Broken variants of the same file are refused: the checks above are not vacuous."""
    broken = copy.deepcopy(raw)
    BROKEN[name](broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _validated(broken)
