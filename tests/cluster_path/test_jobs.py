"""Submitting to a real Ray head: a pipeline job through the Jobs SDK, and every verb as ``python -m``.

The head is a ``ray start --head`` on loopback (free ports, a short temp dir under /tmp) with its
dashboard, which hosts the job server. The job's entrypoint is this interpreter (the venv's), and
joins the cluster through the ``RAY_ADDRESS`` that the job server sets, as under ``ray job submit``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixture_ray.stages import STAGES
from mixture_ray.store.folder import StageFolder
from tests.cluster_path.support import REPO, RayHead, assert_complete, ray_head

JOB_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    """A 2-CPU Ray head with its job server, stopped (its process group ended) after the module."""
    pytest.importorskip("aiohttp", reason="the job server (Ray's dashboard) needs ray[default]: "
                                          "pip install 'ray[default]'")
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    try:
        with ray_head(temp_dir, num_cpus=2) as started:
            yield started
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _pipeline(root: Path, *, tile_extra: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cohort = root / "cohort"
    stages = [
        {"stage": "synth", "config": {"out_dir": str(cohort), "n_cases": 2, "min_slides_per_case": 1,
                                      "max_slides_per_case": 1, "width": 1024, "height": 1024,
                                      "levels": 2, "seed": 3}},
        {"stage": "tile", "config": {"manifest": str(cohort / "manifest.csv"), "out_dir": str(root / "tiles"),
                                     "magnifications": [20], "tile_size": 32, "max_tiles_per_slide": 24,
                                     "pool": {"workers": 1}, "seed": 0, **(tile_extra or {})}},
        {"stage": "embed", "config": {"tiles": str(root / "tiles"), "out_dir": str(root / "embeddings"),
                                      "model": "random", "magnification": 20,
                                      "pool": {"workers": 1, "batch_size": 32}}},
    ]
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return path


def _wait(client: Any, job_ids: list[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {job: str(client.get_job_status(job)) for job in job_ids}
        if all(s in ("SUCCEEDED", "FAILED", "STOPPED") for s in states.values()):
            return states
        time.sleep(1.0)
    for job in job_ids:
        client.stop_job(job)
    raise AssertionError(f"jobs not finished after {timeout_s:.0f}s: {states}\n"
                         + "\n".join(client.get_job_logs(j)[-3000:] for j in job_ids))


@pytest.mark.jobs
def test_pipeline_job_succeeds_and_a_bad_config_fails_naming_the_key(head: RayHead, tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.dashboard)
    good = _pipeline(tmp_path / "good")
    bad = _pipeline(tmp_path / "bad", tile_extra={"tile_sise": 64})
    env = {"env_vars": {"RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}}
    # sys.executable: the job runs this venv's Python (the package is installed there, editable).
    good_id = client.submit_job(entrypoint=f"{sys.executable} -m mixture_ray pipeline --file {good}",
                                runtime_env=env)
    bad_id = client.submit_job(entrypoint=f"{sys.executable} -m mixture_ray pipeline --file {bad}",
                               runtime_env=env)
    states = _wait(client, [good_id, bad_id], JOB_TIMEOUT_S)
    good_logs, bad_logs = client.get_job_logs(good_id), client.get_job_logs(bad_id)
    assert states[good_id] == "SUCCEEDED", good_logs[-4000:]
    assert "[pipeline] stage 3/3 embed: done" in good_logs
    tiles = assert_complete(tmp_path / "good" / "tiles")
    embedded = assert_complete(tmp_path / "good" / "embeddings")
    assert len(tiles) == 2 and embedded == tiles  # same slides, same row count per slide
    assert not list((tmp_path / "good" / "tiles").glob(".*tmp*"))  # no staging left behind
    assert states[bad_id] == "FAILED", bad_logs[-4000:]
    assert "stage 2 (tile)" in bad_logs and "tile_sise" in bad_logs
    assert client.get_job_info(bad_id).message  # the job server says why (exit status 2)
    assert not (tmp_path / "bad" / "cohort").exists()  # every config is checked before stage 1 runs
    assert StageFolder(tmp_path / "good" / "embeddings", stage="").committed_items() == tiles


_HELP_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, runpy, sys
    from mixture_ray.stages import STAGES
    results = {}
    for spec in STAGES:
        sys.argv = ["python -m mixture_ray", *spec.name.split(), "--help"]
        out = io.StringIO()
        code = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                runpy.run_module("mixture_ray", run_name="__main__", alter_sys=True)
            except SystemExit as exc:
                code = exc.code
        results[spec.name] = {"code": code, "out": out.getvalue()}
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def stage_help() -> dict[str, dict[str, Any]]:
    """``python -m mixture_ray <verb> --help`` of every verb, all run in one subprocess."""
    done = subprocess.run([sys.executable, "-c", _HELP_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("verb", [spec.name for spec in STAGES])
def test_every_stage_can_be_submitted_as_python_dash_m(verb: str,
                                                       stage_help: dict[str, dict[str, Any]]) -> None:
    result = stage_help[verb]
    assert result["code"] == 0, result["out"][-2000:]
    assert f"usage: mixture-ray {verb}" in result["out"] and "--config" in result["out"]
