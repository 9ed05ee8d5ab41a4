"""The CLI generated from the stage list: every verb's help, `python -m`, quiet Ray logs, summaries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mixture_ray.cli import EXIT_OK, build_parser, main
from mixture_ray.config import option_keys
from mixture_ray.stages import STAGES
from tests.conftest import REPO


@pytest.mark.parametrize("spec", STAGES, ids=lambda s: s.name)
def test_every_verb_documents_every_key(spec: object, capsys: pytest.CaptureFixture[str]) -> None:
    name = spec.name  # type: ignore[attr-defined]
    config = spec.config()  # type: ignore[attr-defined]
    with pytest.raises(SystemExit) as exit_info:
        build_parser(name).parse_args([*name.split(), "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for key in option_keys(config):
        assert "--" + key.replace("_", "-") in text, f"{name}: no flag for {key}"
    assert callable(spec.runner())  # type: ignore[attr-defined]  # the run function imports


def test_python_dash_m_lists_the_verbs() -> None:
    done = subprocess.run([sys.executable, "-m", "mixture_ray", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for spec in STAGES:
        assert spec.name.split()[0] in done.stdout


def test_group_key_flag_reaches_the_config(tmp_path: Path) -> None:
    code = main(["tile", "--manifest", str(tmp_path / "missing.csv"), "--out-dir", str(tmp_path / "t"),
                 "--pool.workers", "0"])
    assert code == 2  # rejected by the group's validation, before anything runs


@pytest.mark.usefixtures("ray_session")
def test_stage_prints_its_summary_and_ray_logs_go_to_a_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", "--out-dir", str(tmp_path / "cohort"), "--n-cases", "1", "--width", "1024",
                 "--height", "1024", "--levels", "2", "--max-slides-per-case", "1"]) == EXIT_OK
    out = tmp_path / "tiles"
    code = main(["tile", "--manifest", str(tmp_path / "cohort" / "manifest.csv"), "--out-dir", str(out),
                 "--tile-size", "64", "--magnifications", "[20]", "--max-tiles-per-slide", "10",
                 "--pool.workers", "1"])
    captured = capfd.readouterr()
    assert code == EXIT_OK, captured.err
    assert f"tile store {out}: 10 tiles from 1 items" in captured.out
    shown = captured.out + captured.err
    assert "logging_progress" not in shown and "streaming_executor" not in shown
    log = (out / "_logs" / "ray.log").read_text()
    assert "Dataset" in log and "execution finished" in log
