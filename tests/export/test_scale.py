"""Export at scale: the driver reads no store rows, and slides spread over parts export as before.

The per-slide formats run in Ray tasks over groups of slides planned from each store's index; the
AnnData rows are read in tasks and written at their offsets. A store whose slides each span two
parts, in an order unrelated to slide order, read in groups and blocks of a few rows, must give
the files of the store as the stages wrote it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset
import pyarrow.parquet as pq
import pytest

from mixture_ray.config import build_config
from mixture_ray.export import anndata_export, slide_groups
from mixture_ray.export.config import ExportConfig
from mixture_ray.export.stage import run as run_export
from mixture_ray.store.folder import committed_files
from tests.conftest import AnalysedCohort, TiledCohort

pytestmark = pytest.mark.usefixtures("ray_session")
FORMATS = ["qupath", "anndata", "h5", "heatmaps"]


def split_store(source: Path, target: Path, parts: int = 3) -> Path:
    """A copy of a finished store with each slide's rows cut over two parts, later slides in earlier parts.

    Rows keep their order within each slide; the index names the parts and rows of each slide.
    """
    table = pa.concat_tables([pq.read_table(f) for f in committed_files(source)])
    slides = table["slide_id"].to_numpy(zero_copy_only=False)
    order = {s: i for i, s in enumerate(sorted(set(slides)))}
    seen: dict[str, int] = {}
    counts = pd.Series(slides).value_counts().to_dict()
    assignment = np.empty(len(slides), np.int64)
    for row, slide in enumerate(slides):
        first = (parts - 2) - order[slide] % (parts - 1)
        assignment[row] = first + int(seen.get(slide, 0) >= counts[slide] // 2)
        seen[slide] = seen.get(slide, 0) + 1
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.name != "_index.json":
            shutil.copy2(path, target / path.name)
    (target / "chunk-split").mkdir()
    names = [f"chunk-split/part-{i}.parquet" for i in range(parts)]
    entries: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        part = table.filter(pa.array(assignment == i))
        pq.write_table(part, target / name)
        frame = part.select(["slide_id", "case_id", "magnification"]).to_pandas()
        for slide, rows in frame.groupby("slide_id"):
            entry = entries.setdefault(str(slide), {"rows": 0, "files": [], "magnifications": {},
                                                    "case": str(rows.case_id.iloc[0])})
            entry["rows"] += len(rows)
            entry["files"].append(name)
            for mag, n in rows.magnification.value_counts(dropna=False).items():
                key = "unknown" if pd.isna(mag) else repr(float(mag))
                entry["magnifications"][key] = entry["magnifications"].get(key, 0) + int(n)
    index = {"version": 1, "files": names, "slides": dict(sorted(entries.items()))}
    (target / "_index.json").write_text(json.dumps(index))
    assert all(len(e["files"]) == 2 for e in entries.values() if e["rows"] > 1)
    return target


def contents(root: Path) -> dict[str, Any]:
    """Every exported file as what its readers see (GeoJSON objects without their random ids,
    HDF5 datasets and attributes, OME-TIFF pixels, AnnData X/obs/obsm)."""
    import anndata
    import tifffile

    found: dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("_")):
        name = str(path.relative_to(root))
        if path.suffix == ".geojson":
            found[name] = [{k: v for k, v in f.items() if k != "id"}
                           for f in json.loads(path.read_text())["features"]]
        elif path.suffix == ".h5":
            found[name] = _h5(path)
        elif path.suffix == ".tif":
            with tifffile.TiffFile(path) as tif:
                found[name] = [page.asarray().tobytes() for page in tif.pages]
        elif path.suffix == ".h5ad":
            adata = anndata.read_h5ad(path)
            found[name] = (adata.X.tobytes(), adata.obs, adata.obsm["spatial"].tobytes(),
                           adata.var_names.tolist())
        else:
            found[name] = path.read_bytes()
    return found


def _h5(path: Path) -> dict[str, Any]:
    """Each dataset's values and attributes (but ``savetodir``, the output folder)."""
    with h5py.File(path, "r") as fh:
        return {key: (fh[key][:].tolist(),
                      {a: np.asarray(v).tolist() for a, v in fh[key].attrs.items() if a != "savetodir"})
                for key in fh}


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """The same files with the same contents."""
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        if name.endswith(".h5ad"):
            assert got[name][0] == value[0] and got[name][2:] == value[2:], name
            pd.testing.assert_frame_equal(got[name][1], value[1])
        else:
            assert got[name] == value, name


@pytest.fixture(scope="module")
def stores(tiled_cohort: TiledCohort, analysed_cohort: AnalysedCohort) -> dict[str, Path]:
    """The shared cohort's stores (tiles, 20x predictions, embeddings) and clusterings."""
    return {"tiles": tiled_cohort.tiles, "predictions": analysed_cohort.predictions,
            "embeddings": analysed_cohort.embeddings, "clusters": analysed_cohort.clusters}


def test_stores_whose_slides_span_parts_export_the_same_files(
    stores: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = run_export(build_config(ExportConfig, {"out_dir": tmp_path / "as_written", "formats": FORMATS,
                                                    **stores}))
    assert report.complete, report.summary()
    split = {name: split_store(stores[name], tmp_path / "split" / name)
             for name in ("tiles", "predictions", "embeddings")}
    monkeypatch.setattr(slide_groups, "GROUP_ROWS", 7)  # several groups per part, parts per group
    monkeypatch.setattr(anndata_export, "BLOCK_ROWS", 7)  # blocks written out of file order
    report = run_export(build_config(ExportConfig, {"out_dir": tmp_path / "split_out", "formats": FORMATS,
                                                    "clusters": stores["clusters"], **split}))
    assert report.complete, report.summary()
    want = contents(tmp_path / "as_written")
    assert {Path(n).parts[0] for n in want} == set(FORMATS)
    assert_same(contents(tmp_path / "split_out"), want)


def test_the_driver_reads_no_store_rows(
    stores: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every Parquet read of the export happens in Ray tasks: in the driver, each reader raises."""
    driver_reads: list[str] = []

    def refuse(name: str) -> Any:
        def read(*args: Any, **kwargs: Any) -> Any:
            driver_reads.append(name)
            raise AssertionError(f"the driver called {name}")
        return read

    for module, name in ((pq, "read_table"), (pq, "ParquetFile"), (pq, "read_schema"),
                         (pyarrow.dataset, "dataset")):
        monkeypatch.setattr(module, name, refuse(f"{module.__name__}.{name}"))
    monkeypatch.setattr("mixture_ray.store.predictions.load_predictions", refuse("load_predictions"))
    monkeypatch.setattr("mixture_ray.store.embeddings.load_embeddings", refuse("load_embeddings"))
    report = run_export(build_config(ExportConfig, {"out_dir": tmp_path / "export", "formats": FORMATS,
                                                    **stores}))
    assert report.complete and not driver_reads, (report.summary(), driver_reads)
    assert list((tmp_path / "export" / "qupath").glob("*.geojson"))


def test_groups_follow_parts_and_a_store_indexed_without_counts_is_counted_in_tasks(
    stores: dict[str, Path], tmp_path: Path,
) -> None:
    split = split_store(stores["predictions"], tmp_path / "split")
    indexed = slide_groups.StoreSlides.open(split)
    stored = sum(pq.read_metadata(f).num_rows for f in committed_files(stores["predictions"]))
    assert sum(e.rows for e in indexed.slides.values()) == stored
    groups = indexed.groups(budget=1)
    assert sorted(s for g in groups for s in g) == sorted(indexed.slides) and all(len(g) == 1 for g in groups)
    firsts = [indexed.slides[g[0]].parts[0] for g in groups]
    assert firsts == sorted(firsts)  # part by part
    assert indexed.groups(budget=10**9) == [tuple(s for g in groups for s in g)]
    payload = json.loads((split / "_index.json").read_text())
    for entry in payload["slides"].values():
        entry["magnifications"] = {}  # as an index written before the counts were
    (split / "_index.json").write_text(json.dumps(payload))
    assert slide_groups.StoreSlides.open(split).slides == indexed.slides
