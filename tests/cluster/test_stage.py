from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.cluster.stage import run as run_cluster
from mixture_ray.config import build_config
from mixture_ray.errors import StageIncompleteError
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.schemas import TILE_KEY, embedding_schema


def fake_embedding_store(root: Path, *, complete: bool = True) -> pd.DataFrame:
    """A committed embedding store of 3 planted groups at two magnifications (features 16-d)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 8, (3, 16))
    rows = []
    for case in range(4):
        for mag in (5.0, 20.0):
            for i in range(60):
                group = int(rng.integers(0, 3))
                rows.append(
                    {
                        "slide_id": f"s{case}",
                        "case_id": f"c{case}",
                        "x": i * 64,
                        "y": 0,
                        "magnification": mag,
                        "group": group,
                        "features": (centres[group] + rng.normal(0, 1, 16)).astype(np.float32),
                    }
                )
    frame = pd.DataFrame(rows)
    schema = embedding_schema(head_dim=4, feature_dim=16)
    table = pa.table(
        {
            "slide_id": frame.slide_id,
            "case_id": frame.case_id,
            "x": frame.x,
            "y": frame.y,
            "magnification": pa.array(frame.magnification, pa.float32()),
            "head": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(len(frame) * 4, np.float32)), 4),
            "features": pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(frame.features)), 16),
            "error": pa.nulls(len(frame), pa.string()),
        },
        schema=schema,
    )
    store = StageFolder(root, stage="embed", item_column="slide_id")
    store.prepare({})
    tmp = store.new_tmp_dir()
    tmp.mkdir()
    pq.write_table(table, tmp / "part.parquet")
    slides = dict.fromkeys(frame.slide_id.unique(), "")
    store.commit(tmp, slides)
    if complete:
        store.finish(requested=slides, failures=[], extra={})
    return frame


def test_clusters_per_magnification_recover_planted_groups(tmp_path: Path) -> None:
    frame = fake_embedding_store(tmp_path / "emb")
    cfg = build_config(
        ClusterConfig,
        {
            "embeddings": tmp_path / "emb",
            "out_dir": tmp_path / "clu",
            "ks": [3, 5],
            "engine": "sklearn",
            "standardize": True,
        },
    )
    report = run_cluster(cfg)
    assert (tmp_path / "clu" / "_SUCCESS").exists()
    assert sorted(zip(report.metrics.magnification, report.metrics.k, strict=True)) == [
        (5.0, 3),
        (5.0, 5),
        (20.0, 3),
        (20.0, 5),
    ]
    folder = tmp_path / "clu" / "mag-20x" / "k-3"
    assignments = pq.read_table(folder / "assignments.parquet").to_pandas()
    truth = frame[frame.magnification == 20.0]
    merged = assignments.merge(truth, on=list(TILE_KEY))
    assert len(merged) == len(truth) == 240
    assert adjusted_rand_score(merged.group, merged.cluster) > 0.99
    assert np.load(folder / "centroids.npy").shape == (3, 16)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["silhouette"] > 0.5 and metrics["rows"] == 240
    assert len(json.loads((folder / "scaler.json").read_text())["mean"]) == 16


def test_per_case_clustering_gives_unique_ids_across_cases(tmp_path: Path) -> None:
    fake_embedding_store(tmp_path / "emb")
    cfg = build_config(
        ClusterConfig,
        {
            "embeddings": tmp_path / "emb",
            "out_dir": tmp_path / "clu",
            "ks": [2],
            "per_case": True,
            "engine": "sklearn",
        },
    )
    run_cluster(cfg)
    table = pq.read_table(tmp_path / "clu" / "mag-5x" / "per-case-k-2" / "assignments.parquet").to_pandas()
    per_case = table.groupby("case_id").cluster.unique()
    ids = [set(v) for v in per_case]
    assert all(len(s) == 2 for s in ids)
    assert len(set().union(*ids)) == 8  # 4 cases x 2 clusters, no collisions
    assert set(table.case_cluster) == {0, 1}


def test_partial_embedding_store_is_refused(tmp_path: Path) -> None:
    fake_embedding_store(tmp_path / "emb", complete=False)
    cfg = build_config(
        ClusterConfig, {"embeddings": tmp_path / "emb", "out_dir": tmp_path / "clu", "ks": [3]}
    )
    with pytest.raises(StageIncompleteError, match="not complete"):
        run_cluster(cfg)
