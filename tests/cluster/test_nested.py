"""Fold-nested clustering: k-means fitted on the training cases of a split file, every tile assigned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from mixture_ray.cli import main
from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.cluster.engines import get_kmeans_engine
from mixture_ray.cluster.stage import run as run_cluster
from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.review.config import IntegrateConfig
from mixture_ray.review.integrate import run_integrate
from mixture_ray.review.montage import sample_per_cluster
from mixture_ray.store.case_split import Split, SplitError, read_split, write_split
from mixture_ray.store.clusterings import nearest_centroid
from mixture_ray.store.schemas import TILE_KEY
from tests.cluster.test_stage import fake_embedding_store

SPLIT = Split(train=("c0", "c1", "c2"), test=("c3",))


def _nested(tmp_path: Path, split: Split = SPLIT, **more: object) -> tuple[pd.DataFrame, Path]:
    frame = fake_embedding_store(tmp_path / "emb")
    write_split(tmp_path / "split.csv", split)
    cfg = build_config(ClusterConfig, {"embeddings": tmp_path / "emb", "out_dir": tmp_path / "clu", "ks": [3],
                                       "engine": "sklearn", "fit_split": tmp_path / "split.csv", **more})
    run_cluster(cfg)
    return frame, tmp_path / "clu" / "mag-20x" / "k-3"


def test_centroids_come_from_training_cases_and_test_tiles_are_assigned(tmp_path: Path) -> None:
    frame, folder = _nested(tmp_path)
    rows = frame[frame.magnification == 20.0].reset_index(drop=True)
    x = np.stack(rows.features.to_numpy()).astype(np.float32)
    train = rows.case_id.isin(SPLIT.train).to_numpy()
    expected = get_kmeans_engine("sklearn").fit(x[train], 3, 0)
    centroids = np.load(folder / "centroids.npy")
    np.testing.assert_allclose(centroids, expected.centroids, rtol=1e-5, atol=1e-5)

    assignments = pq.read_table(folder / "assignments.parquet").to_pandas()
    merged = assignments.merge(rows, on=list(TILE_KEY))
    assert len(merged) == 240  # every tile, the test case's too
    assert (merged.fitted == merged.case_id_x.isin(SPLIT.train)).all()
    test = merged[~merged.fitted]
    nearest, _ = nearest_centroid(np.stack(test.features.to_numpy()), centroids)
    assert set(test.case_id_x) == {"c3"} and (test.cluster.to_numpy() == nearest).all()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["fit_rows"] == 180 and metrics["rows"] == 240
    assert metrics["fit_split"].endswith("split.csv")


def test_test_case_tiles_are_never_labelled_or_shown(tmp_path: Path) -> None:
    _, folder = _nested(tmp_path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({"clustering": str(folder), "k": 3,
                                       "clusters": {0: "a", 1: "b", 2: "other"}}))
    integrate = {"mappings": [mapping], "out_dir": tmp_path / "labels", "findings": ["a", "b"]}
    report = run_integrate(build_config(IntegrateConfig, integrate))
    labels = pq.read_table(report.path).to_pandas()
    assert set(labels.case_id) == set(SPLIT.train) and len(labels) == 180
    assignments = pq.read_table(folder / "assignments.parquet").to_pandas()
    shown = sample_per_cluster(assignments, 1000, 0)
    assert set(shown.case_id) == set(SPLIT.train) and len(shown) == 180


def test_a_case_missing_from_the_split_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SplitError, match=r"does not list 1 cases .*\(c3\)"):
        _nested(tmp_path, Split(train=("c0", "c1"), test=("c2",)))


def test_fit_split_is_refused_with_per_case(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fit_split"):
        build_config(ClusterConfig, {"embeddings": tmp_path, "out_dir": tmp_path, "per_case": True,
                                     "fit_split": tmp_path / "s.csv", "engine": "distributed"})


def test_split_verb_is_stratified_seeded_and_read_back(tmp_path: Path) -> None:
    labels = [1] * 10 + [0] * 20
    clinical = tmp_path / "clinical.csv"
    ids = [f"case{i:02d}" for i in range(30)]
    pd.DataFrame({"case_id": ids, "label": labels}).to_csv(clinical, index=False)
    for name in ("a.csv", "b.csv"):
        assert main(["split", "--set", f"clinical={clinical}", "--set", f"out={tmp_path / name}"]) == 0
    first, second = read_split(tmp_path / "a.csv"), read_split(tmp_path / "b.csv")
    assert first == second and len(first.test) == 9 and not set(first.train) & set(first.test)
    positives = {f"case{i:02d}" for i in range(10)}
    assert len(positives & set(first.test)) == 3  # 30 % of each class
    other = tmp_path / "c.csv"
    assert main(["split", "--set", f"clinical={clinical}", "--set", f"out={other}", "--set", "seed=1"]) == 0
    assert read_split(other) != first


def test_bad_split_files_and_labels_name_the_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,split\nc0,train\nc1,validation\nc1,test\n")
    with pytest.raises(SplitError, match=r"data row 2 \('c1': 'validation'\)"):
        read_split(bad)
    clinical = tmp_path / "clinical.csv"
    clinical.write_text("case_id,label\nc0,1\nc1,UIP\n")
    assert main(["split", "--set", f"clinical={clinical}", "--set", f"out={tmp_path / 's.csv'}"]) == 2
    err = capsys.readouterr().err
    assert "row 2 (case 'c1')" in err and "positive_label" in err
    assert not (tmp_path / "s.csv").exists()
