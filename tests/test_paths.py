"""One rule for paths: each path-bearing file written from one working directory with relative
paths is read back correctly from another working directory (mixture_ray.paths)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mixture_ray.config import build_config, load_config
from mixture_ray.paths import absolute_path, recorded_path, resolve_recorded
from mixture_ray.review.config import IntegrateConfig
from mixture_ray.review.integrate import run_integrate
from mixture_ray.review.mapping import dump_mapping, load_mapping
from mixture_ray.store.folder import SETTINGS, SUCCESS, StageFolder
from mixture_ray.store.manifest import read_manifest
from mixture_ray.tile.config import TileConfig


@contextmanager
def working_dir(path: Path) -> Iterator[None]:
    """Run the block with ``path`` as the working directory."""
    before = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def write_clustering(folder: Path, k: int = 3) -> None:
    """A minimal clustering folder: assignments of 6 tiles of one slide to ``k`` clusters."""
    folder.mkdir(parents=True)
    table = pa.table({
        "slide_id": ["s1"] * 6, "case_id": ["c1"] * 6, "x": list(range(6)), "y": [0] * 6,
        "magnification": [20.0] * 6, "cluster": pa.array([i % k for i in range(6)], pa.int32()),
    })
    pq.write_table(table, folder / "assignments.parquet")


def test_resolve_recorded_rule(tmp_path: Path) -> None:
    holder = tmp_path / "a" / "mapping.yaml"
    assert resolve_recorded("clusters/k-3", holder) == tmp_path / "a" / "clusters" / "k-3"
    assert resolve_recorded(str(tmp_path / "x"), holder) == tmp_path / "x"
    with working_dir(tmp_path / "elsewhere"):
        assert recorded_path("b/../c") == str(tmp_path / "elsewhere" / "c")
        assert resolve_recorded("../c", "a/holder.json") == tmp_path / "elsewhere" / "c"


def test_config_paths_are_absolute_at_build(tmp_path: Path) -> None:
    with working_dir(tmp_path / "run"):
        cfg = load_config(TileConfig, None, ["manifest=cohort/manifest.csv", "out_dir=out/tiles"])
        integrate = build_config(IntegrateConfig, {"mappings": ["m1.yaml", "review/m2.yaml"],
                                                   "out_dir": "labels", "findings": ["a"]})
    assert cfg.manifest == tmp_path / "run" / "cohort" / "manifest.csv"
    assert cfg.out_dir == tmp_path / "run" / "out" / "tiles"
    assert integrate.mappings == (tmp_path / "run" / "m1.yaml", tmp_path / "run" / "review" / "m2.yaml")


@pytest.mark.safety
def test_relative_outputs_never_land_in_rays_working_dir_copy(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mixture_ray.errors import ConfigError

    monkeypatch.delenv("MIXTURE_RAY_ROOT", raising=False)
    copy = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_0a1b"
    with working_dir(copy):  # where `ray job submit --working-dir .` runs the entrypoint
        with pytest.raises(ConfigError, match=r"out_dir: 'runs/tiles' would be written inside Ray's") as err:
            load_config(TileConfig, None, ["manifest=cohort/manifest.csv", "out_dir=runs/tiles"])
        assert "MIXTURE_RAY_ROOT" in str(err.value) and str(copy / "runs" / "tiles") in str(err.value)
        inputs = load_config(TileConfig, None, ["manifest=cohort/manifest.csv", f"out_dir={tmp_path}/t"])
        assert inputs.manifest == copy / "cohort" / "manifest.csv"  # inputs may come with the upload
        monkeypatch.setenv("MIXTURE_RAY_ROOT", str(tmp_path / "shared"))
        rooted = load_config(TileConfig, None, ["manifest=cohort/manifest.csv", "out_dir=runs/tiles"])
    assert rooted.out_dir == tmp_path / "shared" / "runs" / "tiles"
    assert rooted.manifest == tmp_path / "shared" / "cohort" / "manifest.csv"


def test_mapping_written_relative_read_from_elsewhere(tmp_path: Path) -> None:
    """The README demo's failure: a relative clustering path resolved a second time."""
    with working_dir(tmp_path / "project"):
        write_clustering(Path("demo_out/clusters/mag-20x/k-3"))
        Path("demo_out/review").mkdir()
        dump_mapping(Path("demo_out/review/mapping.yaml"), clustering="demo_out/clusters/mag-20x/k-3",
                     magnification=20.0, k=3, clusters={0: "a", 1: "b", 2: "exclude"}, source="test")
        recorded = yaml.safe_load(Path("demo_out/review/mapping.yaml").read_text())["clustering"]
        assert recorded == str(tmp_path / "project" / "demo_out" / "clusters" / "mag-20x" / "k-3")
        # integrate from the same working directory with relative paths (what the demo does)
        report = run_integrate(build_config(IntegrateConfig, {
            "mappings": ["demo_out/review/mapping.yaml"], "out_dir": "demo_out/labels",
            "findings": ["a", "b"]}))
        assert report.counts == {"a": 2, "b": 2}
    with working_dir(tmp_path / "other"):
        mapping = load_mapping(Path("../project/demo_out/review/mapping.yaml"), ["a", "b"])
        assert mapping.clustering == tmp_path / "project" / "demo_out" / "clusters" / "mag-20x" / "k-3"
        success = json.loads((tmp_path / "project" / "demo_out" / "labels" / SUCCESS).read_text())
        assert success["mappings"] == [str(tmp_path / "project" / "demo_out" / "review" / "mapping.yaml")]


def test_hand_written_relative_mapping_resolves_against_its_folder(tmp_path: Path) -> None:
    write_clustering(tmp_path / "run" / "clusters" / "k-3")
    (tmp_path / "run" / "mapping.yaml").write_text(
        "clustering: clusters/k-3\nk: 3\nclusters: {0: a, 1: b, 2: other}\n")
    for cwd in (tmp_path, tmp_path / "run", tmp_path / "x" / "y"):
        with working_dir(cwd):
            mapping = load_mapping(tmp_path / "run" / "mapping.yaml", ["a", "b"])
        assert mapping.clustering == tmp_path / "run" / "clusters" / "k-3"


def test_manifest_rows_resolve_against_the_manifest(tmp_path: Path) -> None:
    with working_dir(tmp_path / "project"):
        Path("cohort").mkdir()
        pd.DataFrame({"slide_id": ["s1", "s2"], "case_id": ["c1", "c1"],
                      "path": ["slides/s1.svs", str(tmp_path / "abs.svs")]}).to_csv(
            "cohort/manifest.csv", index=False)
        cfg = load_config(TileConfig, None, ["manifest=cohort/manifest.csv", "out_dir=tiles"])
    with working_dir(tmp_path / "other"):
        assert cfg.manifest is not None
        frame = read_manifest(cfg.manifest)
        also = read_manifest(Path("../project/cohort/manifest.csv"))
    assert list(frame.path) == [str(tmp_path / "project" / "cohort" / "slides" / "s1.svs"),
                                str(tmp_path / "abs.svs")]
    assert list(also.path) == list(frame.path)


def test_settings_and_success_record_absolute_paths(tmp_path: Path) -> None:
    """_settings.json and _SUCCESS hold absolute paths; a rerun from another working directory
    naming the same folders relatively is the same settings, not a mismatch."""
    with working_dir(tmp_path / "a"):
        cfg = build_config(IntegrateConfig, {"mappings": ["m.yaml"], "out_dir": "labels", "findings": ["x"]})
        store = StageFolder(cfg.out_dir, stage="test", item_column="slide_id")
        store.prepare({"mappings": cfg.mappings})
        assert store.finish(requested=[], failures=[], extra={"out_dir": cfg.out_dir})
        StageFolder(Path("folder"), stage="test", item_column=None).prepare({"mappings": cfg.mappings})
    settings = json.loads((tmp_path / "a" / "labels" / SETTINGS).read_text())
    assert settings["mappings"] == [str(tmp_path / "a" / "m.yaml")]
    assert json.loads((tmp_path / "a" / "labels" / SUCCESS).read_text())["out_dir"] == str(
        tmp_path / "a" / "labels")
    with working_dir(tmp_path / "a" / "sub"):
        again = build_config(IntegrateConfig, {"mappings": ["../m.yaml"], "out_dir": "../labels",
                                               "findings": ["x"]})
        StageFolder(again.out_dir, stage="test", item_column="slide_id").prepare(
            {"mappings": again.mappings})  # would raise ConfigError on a mismatch
        StageFolder(absolute_path("../folder"), stage="test", item_column=None).prepare(
            {"mappings": again.mappings})
    assert np.array_equal(
        json.loads((tmp_path / "a" / "folder" / SETTINGS).read_text())["mappings"], settings["mappings"])


@pytest.mark.parametrize("model", ["random", "runs/elex"])
def test_model_path_or_keyword(tmp_path: Path, model: str) -> None:
    from mixture_ray.embed.config import EmbedConfig

    with working_dir(tmp_path):
        cfg = build_config(EmbedConfig, {"tiles": "t", "out_dir": "e", "model": model})
    assert cfg.model == ("random" if model == "random" else str(tmp_path / "runs" / "elex"))
