"""Tiling on the embedded Ray: synthetic slides (known content) and the real slides."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mixture_ray.cli import EXIT_OK, EXIT_PARTIAL, main
from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError, StageIncompleteError
from mixture_ray.slides import open_slide
from mixture_ray.slides.reader import resize_rgb
from mixture_ray.store.codec import background_fraction, decode_tile, encode_tile
from mixture_ray.store.folder import COMMITTED, StageFolder, committed_files, read_failures
from mixture_ray.synth.config import SynthConfig
from mixture_ray.tile.config import TileConfig
from mixture_ray.tile.coords import estimated_background
from mixture_ray.tile.stage import run as run_tiling
from tests.conftest import CMU_SVS, TCGA_J2K_SVS, TILES_DIR, require_shared

pytestmark = pytest.mark.usefixtures("ray_session")

TILE = 64


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic cohort; returns its manifest."""
    from mixture_ray.synth.cohort import write_cohort

    root = tmp_path_factory.mktemp("cohort")
    cfg = build_config(
        SynthConfig,
        {
            "out_dir": root,
            "n_cases": 2,
            "min_slides_per_case": 1,
            "max_slides_per_case": 2,
            "width": 1024,
            "height": 1024,
            "seed": 3,
        },
    )
    return Path(write_cohort(cfg).manifest)


def tile_cfg(manifest: Path, out: Path, **extra: Any) -> TileConfig:
    values = {
        "manifest": manifest,
        "out_dir": out,
        "tile_size": TILE,
        "magnifications": [5.0, 20.0],
        "max_tiles_per_slide": 40,
        "pool.workers": 2,
        "pool.batch_size": 16,
    }
    values.update(extra)
    return build_config(TileConfig, values)


def read_store(out: Path, *, complete: bool = True) -> pd.DataFrame:
    return pq.read_table(committed_files(out, require_complete=complete)).to_pandas()


@pytest.fixture(scope="module")
def clean_run(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, pd.DataFrame]]:
    out = tmp_path_factory.mktemp("tiles") / "store"
    report = run_tiling(tile_cfg(cohort, out))
    assert report.complete and not report.failures
    yield out, read_store(out)


def key_set(frame: pd.DataFrame) -> set[tuple[str, float, int, int]]:
    return set(zip(frame.slide_id, frame.magnification, frame.x, frame.y, strict=True))


def test_every_slide_tiled_at_both_magnifications(cohort: Path, clean_run: tuple[Path, pd.DataFrame]) -> None:
    out, tiles = clean_run
    manifest = pd.read_csv(cohort)
    assert set(tiles.slide_id) == set(manifest.slide_id)
    counts = tiles.groupby(["slide_id", "magnification"]).size()
    assert (counts <= 40).all()
    assert set(tiles.magnification) == {5.0, 20.0}
    assert (out / "_SUCCESS").exists() and not (out / "_INCOMPLETE.json").exists()
    assert tiles.error.isna().all()
    summary = json.loads((out / "_SUCCESS").read_text())
    assert summary["rows"] == len(tiles)


def test_tile_geometry_and_levels(cohort: Path, clean_run: tuple[Path, pd.DataFrame]) -> None:
    _, tiles = clean_run
    at20 = tiles[tiles.magnification == 20.0]
    at5 = tiles[tiles.magnification == 5.0]
    assert (at20.level == 0).all() and (at20.size_level0 == TILE).all()
    assert (at5.level == 1).all() and (at5.size_level0 == TILE * 4).all()  # 4x pyramid level
    assert (at20.x % TILE == 0).all() and (at5.y % (TILE * 4) == 0).all()
    assert ((tiles.x + tiles.size_level0) <= 1024).all() and ((tiles.y + tiles.size_level0) <= 1024).all()
    assert (tiles.tile_size == TILE).all()
    assert np.allclose(tiles.mpp, 10.0 / tiles.magnification)


def test_pixels_equal_a_direct_read_and_background_rule_holds(clean_run: tuple[Path, pd.DataFrame]) -> None:
    _, tiles = clean_run
    sample = tiles.sample(12, random_state=0)
    for row in sample.itertuples():
        reader = open_slide(row.source, "openslide")
        side = round(row.size_level0 / reader.level_downsamples[row.level])
        direct = resize_rgb(reader.read_region((row.x, row.y), row.level, (side, side)), (TILE, TILE))
        stored = decode_tile(row.image)
        assert stored.shape == (TILE, TILE, 3)
        assert np.array_equal(stored, decode_tile(encode_tile(direct, "jpeg", 90)))  # same bytes path
        assert np.abs(stored.astype(int) - direct).mean() < 12  # only JPEG error
        assert row.background_fraction == pytest.approx(background_fraction(direct), abs=1e-6)
    assert (tiles.background_fraction <= 0.9).all()


def test_sampling_is_seeded(cohort: Path, clean_run: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    _, tiles = clean_run
    run_tiling(tile_cfg(cohort, tmp_path / "same", encoding="png", **{"pool.workers": 1}))
    same = read_store(tmp_path / "same")
    assert key_set(same) == key_set(tiles)
    assert (same.encoding == "png").all()
    for row in same.head(5).itertuples():  # PNG is lossless: exactly the pixels read
        reader = open_slide(row.source, "openslide")
        side = round(row.size_level0 / reader.level_downsamples[row.level])
        direct = resize_rgb(reader.read_region((row.x, row.y), row.level, (side, side)), (TILE, TILE))
        assert np.array_equal(decode_tile(row.image), direct)
    run_tiling(tile_cfg(cohort, tmp_path / "other", encoding="none", seed=7))
    other = read_store(tmp_path / "other")
    assert other.image.isna().all() and (other.encoding == "none").all()
    assert key_set(other) != key_set(tiles)


def test_rerun_skips_committed_and_recovers_from_interruption(
    cohort: Path, clean_run: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    _, clean = clean_run
    out = tmp_path / "store"
    cfg = tile_cfg(cohort, out, **{"pool.part_rows": 50})  # parts of 50 rows: slides span parts
    first = run_tiling(cfg)
    assert first.slides_skipped == 0
    chunks = sorted(out.glob(f"chunk-*/{COMMITTED}"))
    assert len(chunks) >= 2
    # Simulate a driver killed mid-stage: one chunk lost its commit marker, a temp dir was left.
    chunks[0].unlink()
    leftover = out / ".tmp-deadbeef"
    leftover.mkdir()
    shutil.copy(next(chunks[1].parent.glob("*.parquet")), leftover / "part.parquet")
    (out / "_SUCCESS").unlink()
    with pytest.raises(StageIncompleteError, match="_SUCCESS"):
        committed_files(out)
    partial = read_store(out, complete=False)
    assert len(partial) < len(clean)  # uncommitted data is never read
    still_whole = StageFolder(out, stage="tile").committed_items()
    assert len(still_whole) < first.slides_committed
    second = run_tiling(cfg)
    assert second.complete
    assert second.slides_skipped == len(still_whole)
    assert not leftover.exists() and not chunks[0].parent.exists()
    final = read_store(out)
    assert key_set(final) == key_set(clean)
    assert len(final) == len(clean)


def test_changed_settings_are_refused(cohort: Path, clean_run: tuple[Path, pd.DataFrame]) -> None:
    out, _ = clean_run
    with pytest.raises(ConfigError, match="tile_size"):
        run_tiling(tile_cfg(cohort, out, tile_size=32))


def test_bad_slides_fail_alone_and_exit_partial(cohort: Path, tmp_path: Path) -> None:
    good = pd.read_csv(cohort).iloc[0]
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n" * 50)
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    rows = [
        (good.slide_id, good.case_id, str(cohort.parent / good.path), ""),
        ("missing", "c9", str(tmp_path / "missing.svs"), ""),
        ("text", "c9", str(text), ""),
        ("empty", "c9", str(empty), ""),
    ]
    if TCGA_J2K_SVS.exists():
        rows.append(("no_mpp", "c9", str(TCGA_J2K_SVS), ""))
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows, columns=["slide_id", "case_id", "path", "mpp"]).to_csv(manifest, index=False)
    out = tmp_path / "store"
    code = main(
        [
            "tile",
            "--manifest",
            str(manifest),
            "--out-dir",
            str(out),
            "--tile-size",
            str(TILE),
            "--magnifications",
            "[20]",
            "--max-tiles-per-slide",
            "10",
        ]
    )
    assert code == EXIT_PARTIAL
    failures = read_failures(out).set_index("item_id")
    assert set(failures.index) == {r[0] for r in rows[1:]}
    assert "file not found" in failures.loc["missing", "error"]
    assert "not a readable slide" in failures.loc["text", "error"]
    assert "empty" in failures.loc["empty", "error"]
    if "no_mpp" in failures.index:
        assert "add an 'mpp' column" in failures.loc["no_mpp", "error"]
    assert not (out / "_SUCCESS").exists()
    incomplete = json.loads((out / "_INCOMPLETE.json").read_text())
    assert incomplete["items_failed"] == len(rows) - 1
    assert set(read_store(out, complete=False).slide_id) == {good.slide_id}


def test_real_slides_jpeg_and_jpeg2000(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "slide_id,case_id,path,mpp\n"
        f"cmu,c1,{require_shared(CMU_SVS)},\n"
        f"tcga,c2,{require_shared(TCGA_J2K_SVS)},0.25\n"
    )
    out = tmp_path / "store"
    report = run_tiling(
        build_config(
            TileConfig,
            {"manifest": manifest, "out_dir": out, "magnifications": [10.0, 20.0], "max_tiles_per_slide": 12},
        )
    )
    assert report.complete, report.failures
    tiles = read_store(out)
    assert set(tiles.slide_id) == {"cmu", "tcga"}
    cmu20 = tiles[(tiles.slide_id == "cmu") & (tiles.magnification == 20.0)]
    assert (cmu20.size_level0 == round(280 * 0.5 / 0.499)).all()
    tcga10 = tiles[(tiles.slide_id == "tcga") & (tiles.magnification == 10.0)]
    assert (tcga10.level == 1).all()  # 1.0 um/px from a 0.25 um/px scan: the 2x level, halved
    for data in tiles.image:
        pixels = decode_tile(data)
        assert pixels.shape == (280, 280, 3) and pixels.std() > 5


def test_image_folder_import_keeps_classes_and_reports_bad_files(tmp_path: Path) -> None:
    source = require_shared(TILES_DIR / "tcga_luad_lusc")
    tree = tmp_path / "tree"
    shutil.copytree(source, tree)
    (tree / "train" / "LUAD" / "README.txt").write_text("not an image")
    (tree / "train" / "LUSC" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "store"
    code = main(["import-images", "--images", str(tree), "--out-dir", str(out)])
    assert code == EXIT_PARTIAL
    tiles = read_store(out, complete=False)
    expected = {p.relative_to(source).with_suffix("").as_posix() for p in source.rglob("*.jpg")}
    assert set(tiles.slide_id) == expected
    assert set(tiles.label) == {"LUAD", "LUSC"} and set(tiles.split) == {"train", "test"}
    luad = tiles[tiles.slide_id.str.contains("/LUAD/")]
    assert (luad.label == "LUAD").all()
    failures = read_failures(out).set_index("item_id")
    assert "not an image file" in failures.loc["train/LUAD/README", "error"]
    assert "cannot decode" in failures.loc["train/LUSC/broken", "error"]
    # Fix the tree and rerun: only the previously failed items are attempted, then complete.
    (tree / "train" / "LUAD" / "README.txt").unlink()
    (tree / "train" / "LUSC" / "broken.jpg").unlink()
    assert main(["import-images", "--images", str(tree), "--out-dir", str(out)]) == EXIT_OK
    assert len(read_store(out)) == len(expected)


def test_background_estimate_from_integral_image() -> None:
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True  # left half background
    xs, ys = np.array([0, 32, 16]), np.array([0, 0, 0])
    est = estimated_background(mask, 8.0, xs, ys, 32)
    assert est.tolist() == [1.0, 0.0, 0.5]


def test_truncated_and_all_background_slides_fail_with_clear_reasons(cohort: Path, tmp_path: Path) -> None:
    from mixture_ray.synth.aperio_writer import write_svs

    truncated = tmp_path / "truncated.svs"
    data = require_shared(CMU_SVS).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    blank = tmp_path / "blank.svs"
    white = np.full((256, 1024, 3), 245, np.uint8)
    write_svs(blank, (white for _ in range(4)), width=1024, height=1024)
    # A synthetic slide cut after its first tiles: it opens, but later tiles are missing.
    good = pd.read_csv(cohort).iloc[0]
    whole = (cohort.parent / good.path).read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        f"slide_id,case_id,path\ntruncated,c1,{truncated}\nblank,c2,{blank}\ncut,c3,{cut}\n"
        f"good,c4,{cohort.parent / good.path}\n"
    )
    report = run_tiling(tile_cfg(manifest, tmp_path / "store", magnifications=[20.0]))
    errors = {f.item_id: f.error for f in report.failures}
    assert not report.complete
    assert "truncated or corrupt" in errors["truncated"]
    assert "no tissue" in errors["blank"]
    assert "tile 11 is truncated" in errors["cut"] or "is truncated" in errors["cut"]
    assert set(errors) == {"truncated", "blank", "cut"}
    assert set(read_store(tmp_path / "store", complete=False).slide_id) == {"good"}
