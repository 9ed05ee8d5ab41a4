"""The distributed engine's fold-nested fit (``fit_split``) and per-case clustering vs the driver engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.cluster.stage import run as run_cluster
from mixture_ray.config import build_config
from mixture_ray.store.case_split import Split, SplitError, write_split
from mixture_ray.store.schemas import TILE_KEY
from tests.cluster.stores import case_part_store

pytestmark = pytest.mark.usefixtures("ray_session")

SPLIT = Split(train=("c0", "c1", "c2", "c3"), test=("c4", "c5"))


def _run(tmp_path: Path, name: str, **settings: Any) -> Path:
    cfg = build_config(ClusterConfig, {"embeddings": tmp_path / "emb", "out_dir": tmp_path / name, "ks": [3],
                                       "silhouette_sample": 5000, **settings})
    run_cluster(cfg)
    return tmp_path / name


def _folder(out: Path, mag: str, prefix: str) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    folder = out / f"mag-{mag}" / f"{prefix}-3"
    table = pq.read_table(folder / "assignments.parquet")
    frame = table.to_pandas().sort_values(list(TILE_KEY)).reset_index(drop=True)
    frame.attrs["schema"] = [(f.name, str(f.type)) for f in table.schema]
    return frame, np.load(folder / "centroids.npy"), json.loads((folder / "metrics.json").read_text())


def _same_clustering(ours: Path, theirs: Path, prefix: str, label_columns: list[str]) -> None:
    for mag in ("5x", "20x"):
        mine, my_centroids, my_metrics = _folder(ours, mag, prefix)
        ref, ref_centroids, ref_metrics = _folder(theirs, mag, prefix)
        assert mine.attrs["schema"] == ref.attrs["schema"]  # the driver engine's columns and types
        pd.testing.assert_frame_equal(mine[[*TILE_KEY, *label_columns]], ref[[*TILE_KEY, *label_columns]])
        np.testing.assert_allclose(my_centroids, ref_centroids, rtol=1e-4, atol=1e-4)
        assert set(ref_metrics) <= set(my_metrics) and my_metrics["engine"] == "distributed"
        for key in ("k", "clusters", "rows", "fit_rows", "per_case", "fit_split", "magnification"):
            assert my_metrics[key] == ref_metrics[key], key
        assert my_metrics["inertia"] == pytest.approx(ref_metrics["inertia"], rel=1e-4)


def test_fit_split_fits_on_training_cases_like_the_driver_engine(tmp_path: Path) -> None:
    truth = case_part_store(tmp_path / "emb")
    write_split(tmp_path / "split.csv", SPLIT)
    nested = {"fit_split": tmp_path / "split.csv", "block_rows": 150}
    ours = _run(tmp_path, "d", engine="distributed", **nested)
    theirs = _run(tmp_path, "s", engine="sklearn", **nested)
    _same_clustering(ours, theirs, "k", ["cluster", "fitted", "case_id"])
    frame, _, metrics = _folder(ours, "20x", "k")
    assert (frame.fitted == frame.case_id.isin(SPLIT.train)).all() and not frame.fitted.all()
    assert metrics["fit_rows"] == int(truth[(truth.magnification == 20.0) & truth.case_id.isin(SPLIT.train)]
                                      .shape[0])
    assert len(list((ours / "mag-20x" / "k-3" / "assignments.parquet").glob("part-*.parquet"))) > 1
    again = _run(tmp_path, "d2", engine="distributed", **nested)  # the same seed: the same result
    for mag in ("5x", "20x"):
        first, second = _folder(ours, mag, "k"), _folder(again, mag, "k")
        pd.testing.assert_frame_equal(first[0], second[0])
        assert np.array_equal(first[1], second[1])
    write_split(tmp_path / "short.csv", Split(train=SPLIT.train, test=("c4",)))
    with pytest.raises(SplitError, match=r"does not list 1 cases .*\(c5\)"):
        _run(tmp_path, "x", engine="distributed", fit_split=tmp_path / "short.csv")


def test_per_case_tasks_match_the_driver_engine_and_write_row_sized_parts(tmp_path: Path) -> None:
    case_part_store(tmp_path / "emb")
    per_case = {"per_case": True, "standardize": True, "block_rows": 250}
    ours = _run(tmp_path, "d", engine="distributed", **per_case)
    theirs = _run(tmp_path, "s", engine="sklearn", **per_case)
    _same_clustering(ours, theirs, "per-case-k", ["cluster", "case_cluster", "case_id"])
    frame, centroids, metrics = _folder(ours, "20x", "per-case-k")
    assert metrics["clusters"] == len(centroids) == 5 * 3 + 2  # the last case has 2 rows at 20x
    assert metrics["cases"] == 6  # (global ids split a planted group across cases: a low silhouette)
    _, _, ref_metrics = _folder(theirs, "20x", "per-case-k")
    assert metrics["silhouette"] == pytest.approx(ref_metrics["silhouette"], rel=1e-3)  # every row sampled
    scaler = json.loads((ours / "mag-20x" / "per-case-k-3" / "scaler.json").read_text())
    ref_scaler = json.loads((theirs / "mag-20x" / "per-case-k-3" / "scaler.json").read_text())
    np.testing.assert_allclose(scaler["mean"], ref_scaler["mean"], rtol=1e-4, atol=1e-5)
    parts = sorted((ours / "mag-20x" / "per-case-k-3" / "assignments.parquet").glob("part-*.parquet"))
    assert len(parts) == 3  # two cases (about 240 rows) a part, not one file per case
    again = _run(tmp_path, "d2", engine="distributed", **per_case)
    second = _folder(again, "20x", "per-case-k")
    pd.testing.assert_frame_equal(frame, second[0])
    assert np.array_equal(centroids, second[1])
    success = json.loads((ours / "_SUCCESS").read_text())
    assert success["engine"] == "distributed" and success["devices"] == ["cpu"]
    assert sum(node["cases"] for node in success["nodes"].values()) == 6


def test_each_case_task_reads_only_its_slides_parts(tmp_path: Path) -> None:
    from mixture_ray.cluster.case_census import take_census
    from mixture_ray.cluster.per_case_stage import plan_cases
    from mixture_ray.locations import Location
    from mixture_ray.store.folder import committed_locations
    from mixture_ray.store.store_index import read_index

    truth = case_part_store(tmp_path / "emb")
    cfg = build_config(ClusterConfig, {"embeddings": tmp_path / "emb", "out_dir": tmp_path / "o",
                                       "ks": [3, 100], "per_case": True})
    files = [str(p) for p in committed_locations(cfg.embeddings)]
    census = take_census([files[:3], files[3:]], feature=None, task={"num_cpus": 1})
    jobs = plan_cases(cfg, census, read_index(Location.of(cfg.embeddings)), Location.of(cfg.embeddings), 0.0)
    assert [job.case for job in jobs] == [f"c{i}" for i in range(6)]
    for job in jobs:
        assert [Path(p).name for p in job.paths] == [f"part-{job.case}.parquet"]
        assert set(job.slides) == set(truth[truth.case_id == job.case].slide_id)
    assert jobs[0].offsets["20x"] == {3: 0, 100: 0} and jobs[1].offsets["20x"] == {3: 3, 100: 60}
    assert jobs[5].offsets["20x"] == {3: 15, 100: 300}  # k capped at each case's 60 rows at 20x
