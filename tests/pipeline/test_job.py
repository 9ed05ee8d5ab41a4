"""The pipeline job (`mixture-ray pipeline --file ...`) and the example job configs in jobs/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mixture_ray.cli import main
from mixture_ray.config import load_config
from mixture_ray.errors import ConfigError
from mixture_ray.pipeline.config import PipelineConfig
from mixture_ray.pipeline.job import NOT_A_STEP, load_pipeline
from mixture_ray.stages import BY_NAME

JOBS = Path(__file__).resolve().parents[2] / "jobs"
STEP_VERBS = sorted(name for name in BY_NAME if name not in NOT_A_STEP)


def _write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_stage_has_an_example_job_config() -> None:
    examples = sorted(p.stem for p in JOBS.glob("*.yaml") if p.stem != "pipeline")
    assert examples == sorted(verb.replace(" ", "-") for verb in STEP_VERBS)  # explain fit: explain-fit.yaml
    assert not list(JOBS.glob("*.py"))


@pytest.mark.parametrize("verb", STEP_VERBS)
def test_example_job_config_validates(verb: str) -> None:
    cfg = load_config(BY_NAME[verb].config(), JOBS / f"{verb.replace(' ', '-')}.yaml")
    assert type(cfg).__name__ == BY_NAME[verb].config_ref.rsplit(":", 1)[1]


def test_example_pipeline_validates() -> None:
    steps = load_pipeline(JOBS / "pipeline.yaml")
    assert [s.spec.name for s in steps] == ["synth", "tile", "pretrain", "embed", "cluster", "review"]
    cfg = load_config(PipelineConfig, None, {"file": str(JOBS / "pipeline.yaml"), "from_stage": 3})
    assert cfg.from_stage == 3


def test_bad_key_in_second_stage_fails_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cohort = tmp_path / "cohort"
    pipeline = _write(tmp_path / "pipeline.yaml", {"stages": [
        {"stage": "synth", "config": {"out_dir": str(cohort), "n_cases": 2, "width": 1024, "height": 1024,
                                      "levels": 2}},
        {"stage": "tile", "config": {"manifest": str(cohort / "manifest.csv"), "out_dir": str(tmp_path / "t"),
                                     "tile_sise": 64}},
    ]})
    assert main(["pipeline", "--file", str(pipeline)]) == 2
    err = capsys.readouterr().err
    assert "stage 2 (tile)" in err and "tile_sise" in err
    assert not cohort.exists()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"stage": "tiles", "config": {}}], "stage 1: stage: 'tiles' is not one of"),
        ([{"stage": "demo", "config": {}}], "stage 1: stage: 'demo' is not one of"),
        ([{"stage": "synth", "configs": {}}], "stage 1 (synth): unknown entry key(s) configs"),
        ([{"stage": "synth", "config": {"n_cases": 2}}], "stage 1 (synth): out_dir: required key"),
        ([{"stage": "synth", "config_file": "missing.yaml"}], "stage 1 (synth): config file"),
        ([], "expected `stages:`"),
    ],
)
def test_pipeline_file_errors_name_the_stage(tmp_path: Path, entries: list[object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_pipeline(_write(tmp_path / "pipeline.yaml", {"stages": entries}))


def test_from_stage_past_the_end(tmp_path: Path) -> None:
    stages = [{"stage": "synth", "config": {"out_dir": "c"}}]
    pipeline = _write(tmp_path / "pipeline.yaml", {"stages": stages})
    with pytest.raises(ConfigError, match="from_stage: 2 is past the last stage"):
        load_config(PipelineConfig, None, {"file": str(pipeline), "from_stage": 2})


def test_synth_then_tile(
    ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs, work = tmp_path / "jobs", tmp_path / "work"
    jobs.mkdir()
    work.mkdir()
    monkeypatch.chdir(work)  # inline paths are relative to the working directory
    _write(jobs / "tile.yaml", {"tile_size": 64, "magnifications": [20], "max_tiles_per_slide": 20,
                                "pool": {"workers": 1}})
    pipeline = _write(jobs / "pipeline.yaml", {"stages": [
        {"stage": "synth", "config": {"out_dir": "cohort", "n_cases": 2, "width": 1024, "height": 1024,
                                      "levels": 2}},
        {"stage": "tile", "config_file": "tile.yaml",  # relative to the pipeline file's folder
         "config": {"manifest": "cohort/manifest.csv", "out_dir": "tiles"}},
    ]})
    assert main(["pipeline", "--file", str(pipeline)]) == 0
    assert (work / "tiles" / "_SUCCESS").exists()
    out = capsys.readouterr().out
    assert "[pipeline] stage 1/2 synth: start" in out and "[pipeline] stage 2/2 tile: done" in out
    assert "2 of 2 stages run" in out
