"""benchmarks/gpu_check.py in its CPU mode, in a subprocess where importing Ray fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cpu_quick_mode_writes_every_section_without_ray(tmp_path: Path) -> None:
    blocker = tmp_path / "no_ray" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('ray is blocked here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])}
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--out", str(out),
         "--cpu", "--quick", "--require-no-ray"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(out.read_text())
    for key in ("name", "unit", "value", "baseline_name", "baseline_value", "ratio", "hardware", "params"):
        assert key in result
    assert result["ray_imported"] is False and result["params"]["cpu_mode"] is True
    sections = result["sections"]
    assert set(sections) == {"kmeans", "nmf", "embedding", "moco"}
    errors = {name: s["error"] for name, s in sections.items() if "error" in s}
    assert not errors, errors
    assert abs(sections["kmeans"]["inertia_parity_at_equal_iterations"] - 1.0) < 0.01
    assert result["ratio"] > 0
    nmf = sections["nmf"]["torch_cpu"]
    assert nmf["reached"] and nmf["error_parity"] <= 1.0 + 1e-6
    embedding = sections["embedding"]
    assert embedding["model_only"]["images_per_s"] > 0 and embedding["cpu_jpeg_decode"]["images_per_s"] > 0
    assert "skipped" in embedding["gpu_jpeg_decode"]
    assert sections["moco"]["steps_per_s"] > 0 and sections["moco"]["finite"]
