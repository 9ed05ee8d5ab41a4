"""Review fixtures: imported lung tiles with a 3-cluster clustering, its review page, a Chromium."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mixture_ray.config import build_config
from mixture_ray.review.config import ReviewConfig
from mixture_ray.review.stage import run as run_review
from mixture_ray.store.folder import StageFolder, committed_files
from mixture_ray.store.part_ledger import PartLedger
from mixture_ray.store.schemas import TILE_ID_COLUMNS
from mixture_ray.store.slide_stream import COUNT_SCHEMA
from mixture_ray.tile.config import ImportImagesConfig
from mixture_ray.tile.images import run_import
from tests.conftest import TILES_DIR, _start_ray, require_shared

if TYPE_CHECKING:
    from playwright.sync_api import Browser

EVIL = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Chromium not installed (make test installs the Debian package)"
#: Marks a test that drives Chromium: skipped, with the reason, before any fixture is built.
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

Lung = tuple[Path, Path, pd.DataFrame]


def write_clustering(folder: Path, keys: pd.DataFrame, clusters: np.ndarray, k: int) -> None:
    """A clustering folder as `mixture-ray cluster` writes it (assignments, metrics, centroids)."""
    folder.mkdir(parents=True)
    table = pa.Table.from_pandas(keys.reset_index(drop=True), preserve_index=False)
    pq.write_table(
        table.append_column("cluster", pa.array(clusters, pa.int32())), folder / "assignments.parquet"
    )
    magnification = keys.magnification.iloc[0]
    metrics = {"magnification": None if pd.isna(magnification) else float(magnification), "k": k}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    np.save(folder / "centroids.npy", np.zeros((k, 4), np.float32))


def images_the_old_way(tile_files: list[str], keys: pd.DataFrame) -> pd.DataFrame:
    """The reference: every image of every sampled slide read, then joined (what review used to do)."""
    key = ["slide_id", "x", "y", "magnification"]
    slides = pa.array(sorted(set(keys.slide_id)), pa.string())
    images = pq.read_table(tile_files, columns=[*key, "image"],
                           filters=pc.field("slide_id").isin(slides)).to_pandas()
    images["magnification"] = images["magnification"].astype("float64")
    wanted = keys.copy()
    wanted["magnification"] = wanted["magnification"].astype("float64")
    return wanted.merge(images, on=key, how="left")


def repartition(source: Path, out: Path, part_rows: int) -> Path:
    """Copy a tile store into parts of ``part_rows`` rows, committed as the streaming stages do.

    Rows are ordered by slide and key, so a slide spans parts and a part holds the end of one
    slide and the start of the next; the index lists each slide's parts.
    """
    table = pq.read_table(committed_files(source)).sort_by(
        [(c, "ascending") for c in ("slide_id", "magnification", "x", "y")])
    totals = Counter(table["slide_id"].to_pylist())
    folder = StageFolder(out, stage="tile")
    folder.prepare({"part_rows": part_rows})
    staging = folder.new_staging()
    ledger = PartLedger(folder, sources={s: f"{s}.svs" for s in totals}, expected=totals)
    for i, start in enumerate(range(0, len(table), part_rows)):
        piece = table.slice(start, part_rows)
        part = staging / f"part-{i:06d}.parquet"
        part.write_parquet(piece)
        frame = piece.select(["slide_id", "case_id", "magnification"]).to_pandas()
        rows = [{"slide_id": slide, "consumed": len(held), "produced": len(held), "expected": totals[slide],
                 "written": len(held), "errors": 0, "first_error": None, "case_id": held.case_id.iloc[0],
                 "magnifications": json.dumps({str(m): int(n) for m, n in
                                               held.magnification.value_counts().items()})}
                for slide, held in frame.groupby("slide_id", sort=True)]
        ledger.add(part, pa.Table.from_pylist(rows, schema=COUNT_SCHEMA))
    assert ledger.close(None) == []
    assert folder.finish(requested=sorted(totals), failures=[], extra={})
    shutil.rmtree(staging.path, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def lung(tmp_path_factory: pytest.TempPathFactory) -> Lung:
    """Imported LUAD/LUSC tiles and a 3-cluster clustering: LUAD, LUSC, and one mixed cluster.

    One tile's slide id is replaced by a script tag to check that the page escapes it. Returns
    the clustering root, the tile store and the keys with ``cluster`` and ``label``.
    """
    import ray

    root = tmp_path_factory.mktemp("lung")
    started = _start_ray()
    cfg = build_config(
        ImportImagesConfig,
        {"images": require_shared(TILES_DIR / "tcga_luad_lusc"), "out_dir": root / "tiles"},
    )
    assert run_import(cfg).complete
    if started:
        ray.shutdown()
    tiles = pq.read_table(committed_files(root / "tiles")).to_pandas()
    rng = np.random.default_rng(0)
    clusters = np.where(tiles.label == "LUAD", 0, 1)
    clusters[rng.random(len(tiles)) < 0.15] = 2
    keys = tiles[list(TILE_ID_COLUMNS)].copy()
    keys.loc[int(np.flatnonzero(clusters == 2)[0]), "slide_id"] = EVIL  # only named, never read
    write_clustering(root / "clusters" / "mag-unknown" / "k-3", keys, clusters, 3)
    return root / "clusters", root / "tiles", keys.assign(cluster=clusters, label=tiles.label)


def lung_sites(keys: pd.DataFrame) -> dict[str, str]:
    """The site of each lung slide in the page's manifest: its split folder (train/test), but EVIL
    for the first slide of the mixed cluster 2. The EVIL slide id is not in the manifest (its site
    is ``unknown``)."""
    slides = sorted(set(keys.slide_id) - {EVIL})
    sites = {slide: slide.split("/")[0] for slide in slides}
    sites[sorted(set(keys.slide_id[keys.cluster == 2]) - {EVIL})[0]] = EVIL
    return sites


@pytest.fixture(scope="session")
def page(lung: Lung, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lung clustering's review page (20 tiles per montage), with a manifest giving sites."""
    clusters, tiles, keys = lung
    out = tmp_path_factory.mktemp("review")
    sites = lung_sites(keys)
    manifest = out.parent / f"{out.name}-manifest.csv"
    pd.DataFrame(
        {"slide_id": list(sites), "case_id": list(sites), "path": "none.svs", "site": list(sites.values())}
    ).to_csv(manifest, index=False)
    cfg = build_config(
        ReviewConfig,
        {
            "clusters": clusters,
            "tiles": tiles,
            "out_dir": out,
            "findings": ["LUAD", "LUSC"],
            "per_cluster": 20,
            "manifest": manifest,
        },
    )
    report = run_review(cfg)
    assert len(report.pages) == 1
    return report.pages[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright, one per test module (skips without it)."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
