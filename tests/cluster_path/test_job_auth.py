"""A job server with token authentication: refused without the token, runs a stage with it.

The head is a real ``ray start --head`` on loopback (tests/cluster_path/support.py) started with
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` naming a token file of its own (mode 0600), as
``cluster.yaml`` starts every node; ``~/.ray/auth_token`` is neither read nor written. A client without
the token is refused before any code runs; ``ray job submit`` with ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN`` in its environment (what the README tells a user to export) runs a tile job to
``SUCCEEDED``, and the job's driver joins the cluster with the token the head's processes share.

The test process's environment is not changed: the rest of the suite's local sessions keep
``RAY_AUTH_MODE=disabled``. The head's process group is ended after the module.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from mixture_ray.config import build_config
from mixture_ray.synth.cohort import write_cohort
from mixture_ray.synth.config import SynthConfig
from tests.cluster_path.support import RayHead, assert_complete, ray_cli, ray_head

pytestmark = [pytest.mark.safety, pytest.mark.jobs]

JOB_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def token() -> str:
    """A fresh random token (what ``ray get-auth-token --generate`` writes), never a user's own."""
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def head(token: str) -> Iterator[RayHead]:
    """A 2-CPU Ray head with token authentication on and its job server on loopback."""
    pytest.importorskip("aiohttp", reason="the job server (Ray's dashboard) needs ray[default]: "
                                          "pip install 'ray[default]'")
    temp_dir = Path(tempfile.mkdtemp(prefix="rayauth", dir="/tmp"))  # Ray's socket paths must stay short
    token_file = temp_dir / "auth_token"
    token_file.touch(mode=0o600)
    token_file.write_text(token)
    try:
        with ray_head(temp_dir, num_cpus=2,
                      env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}) as started:
            yield started
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _tile_job(root: Path) -> tuple[str, Path]:
    """A two-slide cohort written here and a ``python -m mixture_ray tile`` entrypoint over it."""
    cohort = write_cohort(build_config(SynthConfig, {
        "out_dir": root / "cohort", "n_cases": 2, "min_slides_per_case": 1, "max_slides_per_case": 1,
        "width": 1024, "height": 1024, "levels": 2, "seed": 3}))
    out = root / "tiles"
    config = root / "tile.yaml"
    config.write_text(yaml.safe_dump({
        "manifest": str(cohort.manifest), "out_dir": str(out), "magnifications": [20], "tile_size": 32,
        "max_tiles_per_slide": 24, "pool": {"workers": 1}, "seed": 0}))
    return f"{sys.executable} -m mixture_ray tile --config {config}", out


def test_job_server_refuses_a_client_without_the_token_and_runs_a_stage_with_it(
        head: RayHead, token: str, tmp_path: Path) -> None:
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobStatus, JobSubmissionClient

    entrypoint, out = _tile_job(tmp_path)
    job = {"entrypoint": entrypoint, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1"}}}

    # Without the token, or with another one, the job API answers 401 / 403 and runs nothing.
    no_token = requests.post(f"{head.dashboard}/api/jobs/", json=job, timeout=30)
    assert no_token.status_code == 401, no_token.text
    assert "missing authentication token" in no_token.text.lower()
    wrong = requests.post(f"{head.dashboard}/api/jobs/", json=job, timeout=30,
                          headers={"Authorization": f"Bearer {secrets.token_hex(32)}"})
    assert wrong.status_code == 403, wrong.text
    with pytest.raises(AuthenticationError, match=r"Authentication (required|failed)"):
        JobSubmissionClient(head.dashboard).submit_job(**job)

    # With it: `ray job submit` as the README says (the token in the environment) runs the stage.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    submitted = subprocess.run(
        [ray_cli(), "job", "submit", "--address", head.dashboard, "--submission-id", "tile-with-token",
         "--runtime-env-json", '{"env_vars": {"OMP_NUM_THREADS": "1"}}', "--", *entrypoint.split()],
        env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S, check=False)
    client = JobSubmissionClient(head.dashboard, headers={"Authorization": f"Bearer {token}"})
    status = client.get_job_status("tile-with-token")
    assert status == JobStatus.SUCCEEDED, (submitted.stdout[-3000:], submitted.stderr[-3000:])
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert [j.submission_id for j in client.list_jobs()] == ["tile-with-token"]  # the refused ran nothing
    slides = assert_complete(out)
    assert len(slides) == 2
