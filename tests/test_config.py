from __future__ import annotations

from pathlib import Path

import pytest

from mixture_ray.config import load_config, parse_overrides
from mixture_ray.errors import ConfigError
from mixture_ray.synth.config import SynthConfig
from mixture_ray.tile.config import TileConfig


def test_defaults_follow_the_method(tmp_path: Path) -> None:
    cfg = load_config(TileConfig, None, [f"out_dir={tmp_path}", "manifest=m.csv"])
    assert cfg.tile_size == 280
    assert cfg.magnifications == (2.5, 5.0, 20.0)
    assert cfg.max_background == 0.9
    assert cfg.background_threshold == 220
    assert cfg.max_tiles_per_slide == 300
    assert cfg.step == 280


def test_yaml_then_overrides_later_wins(tmp_path: Path) -> None:
    yaml_file = tmp_path / "tile.yaml"
    yaml_file.write_text("out_dir: out\nmanifest: m.csv\ntile_size: 224\nmagnifications: [5, 20]\n")
    cfg = load_config(TileConfig, yaml_file, ["tile_size=64", "stride=32"])
    assert cfg.tile_size == 64
    assert cfg.step == 32
    assert cfg.magnifications == (5.0, 20.0)
    assert cfg.out_dir == Path("out").absolute()  # config paths are made absolute (mixture_ray.paths)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tile_sise"):
        load_config(TileConfig, None, ["out_dir=o", "manifest=m", "tile_sise=3"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("tile_size=big", "tile_size"),
        ("max_background=1.5", "max_background"),
        ("encoding=gif", "encoding"),
        ("magnifications=[5, -1]", "magnifications"),
        ("tile_size=0", "tile_size"),
        ("jpeg_quality=0", "jpeg_quality"),
        ("backend=vips", "backend"),
    ],
)
def test_bad_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(TileConfig, None, ["out_dir=o", "manifest=m", override])


def test_missing_required_and_exclusive_inputs() -> None:
    with pytest.raises(ConfigError, match="out_dir"):
        load_config(TileConfig, None, ["manifest=m"])
    with pytest.raises(ConfigError, match="from_images: an image folder is imported by `mixture-ray import-"):
        load_config(TileConfig, None, ["out_dir=o", "manifest=m", "from_images=d"])


def test_paths_are_taken_literally() -> None:
    values = parse_overrides(["out_dir=/tmp/a#b: c", "tile_size=12"], TileConfig)
    assert values == {"out_dir": "/tmp/a#b: c", "tile_size": 12}


def test_bad_yaml_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(TileConfig, bad)


def test_synth_config_validates_pyramid() -> None:
    with pytest.raises(ConfigError, match="levels"):
        load_config(SynthConfig, None, ["out_dir=o", "width=256", "height=256", "levels=4"])
    with pytest.raises(ConfigError, match="min_slides_per_case"):
        load_config(SynthConfig, None, ["out_dir=o", "min_slides_per_case=3", "max_slides_per_case=1"])


def test_group_keys_merge_across_sources_later_wins(tmp_path: Path) -> None:
    """A group set in the YAML file keeps the keys a later --set or inline mapping does not give."""
    from mixture_ray.classify.config import ClassifyConfig

    yaml_file = tmp_path / "classify.yaml"
    yaml_file.write_text("tiles: t\nclassifier: c\nout_dir: o\n"
                         "pool: {workers: 8, actor_cpus: 2, batch_size: 128}\n")
    dotted = load_config(ClassifyConfig, yaml_file, ["pool.workers=2"])
    assert (dotted.pool.workers, dotted.pool.actor_cpus, dotted.pool.batch_size) == (2, 2.0, 128)
    mapped = load_config(ClassifyConfig, yaml_file, {"pool": {"batch_size": 16}})
    assert (mapped.pool.workers, mapped.pool.batch_size) == (8, 16)
    defaults = load_config(ClassifyConfig, None, ["tiles=t", "classifier=c", "out_dir=o", "pool.workers=3"])
    assert (defaults.pool.workers, defaults.pool.batch_size) == (3, 64)  # the stage's own group defaults


def test_moved_and_misplaced_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workers is now pool\.workers"):
        load_config(TileConfig, None, ["out_dir=o", "manifest=m", "workers=2"])
    with pytest.raises(ConfigError, match="tile_size: is not a group"):
        load_config(TileConfig, None, ["out_dir=o", "manifest=m", "tile_size.x=5"])
    with pytest.raises(ConfigError, match=r"pool: workers: must be > 0"):
        load_config(TileConfig, None, ["out_dir=o", "manifest=m", "pool.workers=0"])


def test_an_old_explain_config_with_action_names_the_sub_commands() -> None:
    from mixture_ray.explain.config import ExplainApplyConfig

    with pytest.raises(ConfigError, match=r"action: the action is the sub-command now: mixture-ray explain"):
        load_config(ExplainApplyConfig, None, ["out_dir=o", "manifest=m", "action=apply"])


def test_store_tuples_take_uris_and_paths_side_by_side(tmp_path: Path) -> None:
    """``tuple[Path | Uri, ...]``: each URI kept as written, each local path made absolute."""
    from mixture_ray.cases.config import CasesConfig
    from mixture_ray.locations import Uri
    from mixture_ray.maps.config import MapsConfig

    cfg = load_config(CasesConfig, None, ["predictions=s3://bucket/pred-5x,rel/pred-20x",
                                          f"out_dir={tmp_path}", "embeddings=[gs://bucket/emb]",
                                          f"clusters={tmp_path}/clu"])
    assert cfg.predictions == (Uri("s3://bucket/pred-5x"), Path("rel/pred-20x").absolute())
    assert isinstance(cfg.predictions[0], Uri) and isinstance(cfg.predictions[1], Path)
    assert cfg.embeddings == (Uri("gs://bucket/emb"),)
    one = load_config(MapsConfig, None, {"predictions": "s3://bucket/pred", "manifest": "m.csv",
                                         "out_dir": tmp_path})
    assert one.predictions == (Uri("s3://bucket/pred"),)
    with pytest.raises(ConfigError, match=r"clusters: 's3://bucket/clu' is an object-store URI.*clusterings"):
        load_config(CasesConfig, None, ["predictions=p", f"out_dir={tmp_path}", "embeddings=[e]",
                                        "clusters=s3://bucket/clu"])
    with pytest.raises(ConfigError, match=r"predictions\[1\]: expected a path, got 3"):
        load_config(CasesConfig, None, {"predictions": ["p", 3], "out_dir": tmp_path})
