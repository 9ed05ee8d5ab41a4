"""cluster.yaml is a valid Ray launcher config that starts GPU nodes on demand, pins Python and mounts
shared storage; pyproject's requires-python covers the Pythons the pinned torch and Ray support."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tests.cluster_path.support import REPO

CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return config


def test_cluster_yaml_matches_rays_schema(launcher: dict[str, Any]) -> None:
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)  # the file as written
    validate_config(prepare_config(copy.deepcopy(launcher)))  # as `ray up` fills it out (AWS defaults)


def _commands(launcher: dict[str, Any]) -> str:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands")
    return "\n".join(str(c) for key in keys for c in launcher.get(key, []))


def test_gpu_nodes_start_on_demand(launcher: dict[str, Any]) -> None:
    types = launcher["available_node_types"]
    gpu_types = {name: t for name, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1}
    assert gpu_types, "no node type advertises a GPU resource"
    for node_type in gpu_types.values():
        assert node_type["min_workers"] == 0 and node_type["max_workers"] >= 1
    assert launcher["max_workers"] >= max(t["max_workers"] for t in gpu_types.values())
    head = types[launcher["head_node_type"]]
    assert head.get("resources", {}).get("GPU", 0) == 0


def test_python_is_pinned(launcher: dict[str, Any]) -> None:
    image = launcher.get("docker", {}).get("image", "")
    pinned_image = re.search(r":[\d.]+-py311\b", image) is not None
    pinned_check = re.search(r"version_info\[:2\] == \(3, 11\)|python3?\.11\b|--version", _commands(launcher))
    assert pinned_image and pinned_check, (image, _commands(launcher))


def test_shared_storage_is_mounted_on_every_node(launcher: dict[str, Any]) -> None:
    commands = _commands(launcher)
    assert re.search(r"mount -t nfs", commands) and "/mnt/shared" in commands
    assert any("/mnt/shared:/mnt/shared" in o for o in launcher["docker"].get("run_options", []))
    assert "mountpoint -q /mnt/shared" in "\n".join(launcher["setup_commands"])  # checked in the container
    # the job configs write where the cluster mounts it
    assert "/mnt/shared/" in (REPO / "jobs" / "tile.yaml").read_text()


def test_job_server_deps_are_installed_on_the_cluster(launcher: dict[str, Any]) -> None:
    assert "ray[default]" in _commands(launcher) or "rayproject/ray" in launcher["docker"]["image"]


def test_requires_python_covers_311_and_312() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    spec = SpecifierSet(project["requires-python"])
    assert spec.contains("3.11.7") and spec.contains("3.12.0") and spec.contains("3.12.9")
    assert not spec.contains("3.10.14") and not spec.contains("3.13.0")


@pytest.mark.safety
def test_every_node_starts_with_token_auth_and_the_job_server_stays_on_loopback(
        launcher: dict[str, Any]) -> None:
    head, workers = launcher["head_start_ray_commands"], launcher["worker_start_ray_commands"]
    for starts in (head, workers):
        ray_starts = [c for c in starts if "ray start" in c]
        assert ray_starts and all(re.search(r"\bRAY_AUTH_MODE=token\b", c) for c in ray_starts), starts
    # every node gets the token file `ray get-auth-token --generate` wrote where `ray up` runs
    assert launcher["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    assert "test -s ~/.ray/auth_token" in "\n".join(launcher["setup_commands"])
    head_start = " ".join(c for c in head if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    assert "ray dashboard cluster.yaml" in CLUSTER_YAML.read_text()  # how users reach the job server
