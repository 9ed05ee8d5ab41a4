"""GPU requests from configuration: numbers as given, ``auto`` from the cluster and its autoscaler."""

from __future__ import annotations

import pytest

from mixture_ray import ray_runtime
from mixture_ray.ray_runtime import gpus_per_actor, slide_reader_gpus


@pytest.mark.parametrize(("now", "most", "want"), [
    ({}, {}, 0.0),  # no GPU and none to come
    ({"GPU": 2.0}, {}, 1.0),  # a GPU node is up
    ({"CPU": 8.0}, {"GPU": 16.0}, 1.0),  # none up yet, but the autoscaler can add GPU nodes
])
def test_auto_asks_one_gpu_when_the_cluster_has_or_can_get_one(
        monkeypatch: pytest.MonkeyPatch, now: dict[str, float], most: dict[str, float], want: float) -> None:
    monkeypatch.setattr(ray_runtime, "cluster_resources", lambda: now)
    monkeypatch.setattr(ray_runtime, "autoscaler_max_resources", lambda: most)
    assert gpus_per_actor("auto") == want
    assert slide_reader_gpus("auto", "cucim") == want  # cuCIM decodes on the GPU
    assert slide_reader_gpus("auto", "openslide") == 0.0  # OpenSlide never asks for one


def test_numbers_are_requested_as_given_whatever_the_cluster_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_runtime, "cluster_resources", lambda: {})
    monkeypatch.setattr(ray_runtime, "autoscaler_max_resources", lambda: {})
    assert gpus_per_actor("1") == 1.0 and gpus_per_actor(0.5) == 0.5
    assert slide_reader_gpus(1.0, "tiffslide") == 1.0 and slide_reader_gpus("0", "cucim") == 0.0


def test_a_local_session_publishes_no_autoscaler_limit(ray_session: None) -> None:
    assert ray_runtime.autoscaler_max_resources() == {}
