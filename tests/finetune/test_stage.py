"""Fine-tuning: metrics vs scikit-learn, case split, sampler, bad input, Ray Train runs, LUAD/LUSC chain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support

from mixture_ray.cli import EXIT_BAD_INPUT, main
from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError, StageIncompleteError
from mixture_ray.finetune import data as ftdata
from mixture_ray.finetune.config import FinetuneConfig
from mixture_ray.finetune.metrics import classification_metrics
from mixture_ray.finetune.sampler import epoch_batches, epoch_counts, epoch_indices
from mixture_ray.models.classifier import CLASSIFIER_FORMAT, load_classifier, predict
from mixture_ray.store.folder import committed_files
from mixture_ray.tile.config import ImportImagesConfig
from tests.conftest import TILES_DIR, require_shared
from tests.finetune.support import ft_cfg, write_labels


# ---------------------------------------------------------------- pure functions
def test_metrics_match_sklearn_and_hand_counts() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.minimum(np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 3, 300)), 2)  # never d
    m = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    cm = confusion_matrix(y_true, y_pred, labels=[0, 1, 2, 3])
    assert np.array_equal(m.confusion, cm)
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1, 2, 3], zero_division=np.nan
    )
    table = m.per_class
    np.testing.assert_allclose(table.precision, precision, equal_nan=True)
    np.testing.assert_allclose(table.recall_tpr, recall)
    assert table.support.tolist() == support.tolist()
    assert np.isnan(table.precision.iloc[3])  # nothing predicted as d: precision undefined, not 0
    for k in range(4):  # one-vs-rest specificity and NPV by hand
        tp, fn, fp = cm[k, k], cm[k].sum() - cm[k, k], cm[:, k].sum() - cm[k, k]
        tn = cm.sum() - tp - fn - fp
        assert table.specificity_tnr.iloc[k] == pytest.approx(tn / (tn + fp))
        assert table.npv.iloc[k] == pytest.approx(tn / (tn + fn))
    assert m.balanced_accuracy == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m.accuracy == pytest.approx(float((y_true == y_pred).mean()))
    # a class absent from the truth is left out of balanced accuracy, as in scikit-learn
    t2, p2 = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    assert classification_metrics(t2, p2, ["a", "b", "c"]).balanced_accuracy == pytest.approx(
        balanced_accuracy_score(t2, p2)
    )
    dumped = json.loads(json.dumps(m.to_dict()))
    assert dumped["per_class"][3]["precision"] is None and dumped["confusion"] == cm.tolist()


def test_metrics_write_files(tmp_path: Path) -> None:
    m = classification_metrics([0, 1, 1], [0, 1, 0], ["x", "y"])
    m.write(tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["balanced_accuracy"] == pytest.approx(0.75)
    assert pd.read_csv(tmp_path / "metrics_per_class.csv")["class"].tolist() == ["x", "y"]
    assert pd.read_csv(tmp_path / "metrics_confusion.csv", index_col=0).to_numpy().tolist() == [
        [1, 0],
        [1, 1],
    ]


def _labels(n_cases: int, per_case: int, rare_case: int | None = None) -> pd.DataFrame:
    rows = []
    for c in range(n_cases):
        for i in range(per_case):
            finding = "rare" if c == rare_case and i == 0 else ("a" if i % 2 else "b")
            rows.append(
                {
                    "slide_id": f"s{c}",
                    "case_id": f"c{c}",
                    "x": i,
                    "y": 0,
                    "magnification": 20.0,
                    "finding": finding,
                }
            )
    return pd.DataFrame(rows)


def test_split_by_case_is_disjoint_seeded_and_keeps_every_finding_in_train() -> None:
    labels = _labels(10, 6, rare_case=3)
    split = ftdata.split_by_case(labels, 0.3, seed=1, source=Path("L"))
    assert not set(split.train) & set(split.val) and len(split.val) == 3
    assert set(split.train) | set(split.val) == set(labels.case_id)
    assert "c3" in split.train  # the only case with 'rare' cannot be held out
    assert ftdata.split_by_case(labels, 0.3, seed=1, source=Path("L")) == split
    assert ftdata.split_by_case(labels, 0.3, seed=2, source=Path("L")) != split
    with pytest.raises(ConfigError, match="needs >= 2"):
        ftdata.split_by_case(_labels(1, 4), 0.3, seed=0, source=Path("L"))


def test_balanced_sampler_evens_out_classes() -> None:
    targets = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = epoch_indices(targets, 4, balanced=True, seed=0, epoch=0)
    share = np.bincount(targets[idx], minlength=4) / len(idx)
    np.testing.assert_allclose(share[:3], 1 / 3, atol=0.04)
    assert share[3] == 0
    assert np.array_equal(idx, epoch_indices(targets, 4, balanced=True, seed=0, epoch=0))
    assert not np.array_equal(idx, epoch_indices(targets, 4, balanced=True, seed=0, epoch=1))
    plain = epoch_indices(targets, 4, balanced=False, seed=0, epoch=0)
    assert sorted(plain.tolist()) == list(range(1000))


def _stream(rows: np.ndarray, targets: np.ndarray, chunk: int) -> list[dict[str, np.ndarray]]:
    """Shard-like batches whose pixel value names the tile (row) they come from."""
    image = (rows[:, None, None, None] * np.ones((1, 2, 2, 3), np.int64)).astype(np.uint8)
    parts = [slice(i, i + chunk) for i in range(0, len(rows), chunk)]
    return [{"image": image[p], "target": targets[rows[p]], "row": rows[p]} for p in parts]


def test_streamed_epoch_draws_the_sampler_multiset_in_exactly_the_steps() -> None:
    """A worker's streamed epoch trains on the same tiles as the random-access sampler drew (when
    its share is the whole epoch), in exactly ``steps`` batches whatever the stream's length."""
    targets = np.array([0] * 150 + [1] * 40 + [2] * 10)
    counts = epoch_counts(targets, 3, balanced=True, seed=4, epoch=1)
    assert np.array_equal(counts, np.bincount(epoch_indices(targets, 3, balanced=True, seed=4, epoch=1),
                                              minlength=200))
    order = np.random.default_rng(0).permutation(200)
    out = list(epoch_batches(_stream(order, targets, 16), counts, batch_size=8, steps=25,
                             rng=np.random.default_rng(1)))
    assert len(out) == 25 and all(x.shape == (8, 2, 2, 3) and y.shape == (8,) for x, y in out)
    drawn = np.concatenate([x[:, 0, 0, 0] for x, _ in out]).astype(np.int64)
    assert np.array_equal(np.bincount(drawn, minlength=200), counts)  # the sampler's exact multiset
    assert np.array_equal(np.concatenate([y for _, y in out]), targets[drawn])
    share = np.bincount(targets[drawn], minlength=3) / len(drawn)
    np.testing.assert_allclose(share, 1 / 3, atol=0.08)  # balanced, as before
    # a short share (half the tiles) still gives every step, from tiles it saw; an empty one fails
    half = list(epoch_batches(_stream(order[:100], targets, 16), counts, batch_size=8, steps=25,
                              rng=np.random.default_rng(1)))
    seen = {int(v) for x, _ in half for v in x[:, 0, 0, 0]}
    assert len(half) == 25 and seen <= {int(v) for v in order[:100]}
    unbalanced = epoch_counts(targets, 3, balanced=False, seed=4, epoch=0)
    assert np.array_equal(unbalanced, np.ones(200, np.int64))
    with pytest.raises(RuntimeError, match="no tiles"):
        list(epoch_batches([], unbalanced, batch_size=8, steps=2, rng=np.random.default_rng(0)))


def test_config_errors_name_the_key() -> None:
    base = {"labels": "l", "tiles": "t", "out_dir": "o", "model": "random"}
    with pytest.raises(ConfigError, match="val_fraction"):
        build_config(FinetuneConfig, {**base, "val_fraction": 1.0})
    with pytest.raises(ConfigError, match="findings"):
        build_config(FinetuneConfig, {**base, "findings": ["a", "a"]})
    timm_cfg = build_config(FinetuneConfig, {**base, "arch": "timm:vit_tiny_patch16_224"})
    assert timm_cfg.arch == "timm:vit_tiny_patch16_224"
    with pytest.raises(ConfigError, match="preset uni needs its weight file"):
        build_config(FinetuneConfig, {**base, "arch": "preset:uni"})
    with pytest.raises(ConfigError, match="not a timm model name"):
        build_config(FinetuneConfig, {**base, "arch": "timm:no_such_net"})


# ---------------------------------------------------------------- Ray Train runs on the labelled tile set
def test_bad_labels_give_errors_naming_file_and_key(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    from mixture_ray.finetune.stage import prepare

    labels, tiles = labelled
    frame = pq.read_table(labels / "labels.parquet").to_pandas()
    partial = write_labels(tmp_path / "partial", frame, success=False)
    with pytest.raises(StageIncompleteError, match=re.escape(str(partial)) + ".*_SUCCESS"):
        prepare(ft_cfg(partial, tiles, tmp_path))
    empty = write_labels(tmp_path / "empty", frame.iloc[:0])
    with pytest.raises(ConfigError, match=re.escape(f"{empty / 'labels.parquet'}: holds no labelled tiles")):
        prepare(ft_cfg(empty, tiles, tmp_path))
    with pytest.raises(ConfigError, match=r"finding\(s\) \['unicorn'\] have no tiles in the training cases"):
        prepare(ft_cfg(labels, tiles, tmp_path, findings=[*sorted(frame.finding.unique()), "unicorn"]))
    with pytest.raises(ConfigError, match=r"labels .*: finding\(s\) .* are not in findings \['fat'\]"):
        prepare(ft_cfg(labels, tiles, tmp_path, findings=["fat"]))
    stray = write_labels(tmp_path / "stray", pd.concat([frame, frame.iloc[:1].assign(x=-7)]))
    with pytest.raises(ConfigError, match=r"1 labelled tile.*x=-7"):
        prepare(ft_cfg(stray, tiles, tmp_path))
    code = main(
        [
            "finetune",
            "--labels",
            str(partial),
            "--tiles",
            str(tiles),
            "--out-dir",
            str(tmp_path),
            "--model",
            "random",
        ]
    )
    assert code == EXIT_BAD_INPUT


def test_prepare_holds_no_pixels_and_streams_the_labelled_tiles(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    """The driver keeps keys and targets only; the lazy datasets decode exactly the labelled tiles."""
    import dataclasses

    from mixture_ray.finetune.stage import prepare
    from mixture_ray.store.codec import decode_tile

    labels, tiles = labelled
    prep = prepare(ft_cfg(labels, tiles, tmp_path))
    held = {f.name: getattr(prep, f.name) for f in dataclasses.fields(prep)}
    assert not [k for k, v in held.items() if isinstance(v, np.ndarray) and v.dtype == np.uint8]
    frame = pq.read_table(labels / "labels.parquet").to_pandas()
    assert len(prep.train_targets) + prep.n_val == len(frame)
    val_rows = frame[frame.case_id.isin(prep.split.val)].reset_index(drop=True)
    streamed = prep.val.take_all()
    assert sorted(int(r["row"]) for r in streamed) == list(range(len(val_rows))) == list(range(prep.n_val))
    stored = pq.read_table(committed_files(tiles), columns=["slide_id", "x", "y", "magnification", "image"])
    columns = [stored[c].to_pylist() for c in stored.column_names]
    by_key = {(s, x, y, float(m)): b for s, x, y, m, b in zip(*columns, strict=True)}
    for r in streamed:
        key = val_rows.iloc[int(r["row"])]
        pixels = decode_tile(by_key[(key.slide_id, key.x, key.y, float(key.magnification))])
        assert np.array_equal(r["image"], pixels)
        assert prep.classes[int(r["target"])] == key.finding
    train = prep.train.dataset(0).take_all()
    assert len(train) == len(prep.train_targets)
    in_order = sorted(train, key=lambda r: int(r["row"]))
    assert [int(r["target"]) for r in in_order] == prep.train_targets.tolist()


@pytest.mark.slow
def test_finetune_survives_a_killed_worker_exports_best_checkpoint_and_resumes(
    labelled: tuple[Path, Path], tmp_path: Path, fault_dir: Path
) -> None:
    """A worker killed at step 5 (checkpoints every 2 steps) is retried from a checkpoint (2 or 4:
    see the pretrain test); the run exports its best classifier; a rerun resumes by name."""
    from mixture_ray.finetune.stage import run as run_finetune

    labels, tiles = labelled
    (fault_dir / "finetune.step-5").touch()
    first = run_finetune(ft_cfg(labels, tiles, tmp_path, rotation=20.0,
                                **{"train.checkpoint_every": 2, "train.max_failures": 1}))
    assert not (fault_dir / "finetune.step-5").exists() and list(fault_dir.glob("finetune.step-5.claimed-*"))
    assert first.start_step in (2, 4) and first.step > 5 and first.best_epoch == 1
    split = json.loads((first.run_dir / "split.json").read_text())
    assert not set(split["train_cases"]) & set(split["val_cases"])
    raw = torch.load(first.classifier, map_location="cpu", weights_only=True)  # weights only
    assert raw["format"] == CLASSIFIER_FORMAT and raw["classes"] == list(first.classes)
    net, payload = load_classifier(first.run_dir)
    assert payload["val_balanced_accuracy"] == pytest.approx(first.val_balanced_accuracy)
    pred = predict(net, np.zeros((3, 32, 32, 3), np.uint8))
    assert pred.shape == (3,) and pred.max() < len(first.classes)
    metrics = json.loads((first.run_dir / "metrics.json").read_text())
    assert metrics["classes"] == list(first.classes) and metrics["best_epoch"] == 1
    assert {"precision", "recall_tpr", "specificity_tnr", "npv"} <= set(metrics["per_class"][0])
    assert sum(map(sum, metrics["confusion"])) == first.n_val
    assert (first.run_dir / "metrics_per_class.csv").exists() and (first.run_dir / "history.csv").exists()
    fresh = load_classifier(first.classifier)[0]
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values(), strict=True)
    )
    again = run_finetune(ft_cfg(labels, tiles, tmp_path, epochs=2, rotation=20.0,
                                **{"train.checkpoint_every": 2}))
    assert again.start_step == first.step and again.step == 2 * first.step
    history = pd.read_csv(again.run_dir / "history.csv")
    assert history.epoch.tolist() == [1, 2]
    assert again.val_balanced_accuracy == pytest.approx(history.val_balanced_accuracy.max())


def test_finetune_a_timm_vit_then_classify_at_its_own_input_size(labelled: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    """A random-init timm ViT is fine-tuned (1 epoch) on 32 px tiles; classifier.pt names the arch and
    its input (160 px for timm's small test ViT, mean/std 0.5); classify gives what the loaded network
    gives in process on the same tiles resized to 160 and normalised by hand."""
    pytest.importorskip("timm", reason="timm is a dependency (pip install -e .)")
    from torch.nn import functional as F  # noqa: N812 (the torch convention)

    from mixture_ray.classify.config import ClassifyConfig
    from mixture_ray.classify.stage import run as run_classify
    from mixture_ray.finetune.stage import run as run_finetune
    from mixture_ray.store.codec import decode_tile
    from mixture_ray.store.predictions import load_predictions
    from mixture_ray.store.schemas import TILE_KEY

    labels, tiles = labelled
    arch = "timm:test_vit"
    report = run_finetune(ft_cfg(labels, tiles, tmp_path, arch=arch, batch_size=32, magnification=20.0,
                                 **{"train.checkpoint_every": 1000}))
    assert report.best_epoch == 1
    raw = torch.load(report.classifier, map_location="cpu", weights_only=True)
    assert raw["format"] == CLASSIFIER_FORMAT and raw["arch"] == arch and raw["magnification"] == 20.0
    assert raw["input_size"] == [160, 160] and raw["mean"] == raw["std"] == [0.5, 0.5, 0.5]
    out = tmp_path / "predictions"
    classified = run_classify(build_config(ClassifyConfig, {
        "tiles": tiles, "classifier": report.run_dir, "out_dir": out, "pool.batch_size": 32,
        "max_background": 0.7}))
    assert classified.complete and classified.tiles_classified > 0, classified.summary()
    pred = load_predictions(out, probabilities=True)
    assert pred.classes == report.classes
    stored = pq.read_table(committed_files(tiles), columns=[*TILE_KEY, "image"]).to_pandas()
    rows = pred.rows.merge(stored, on=list(TILE_KEY), validate="one_to_one")
    assert len(rows) == len(pred.rows) == classified.tiles_classified
    net, _ = load_classifier(report.classifier)
    tiles_u8 = torch.from_numpy(np.stack([decode_tile(b) for b in rows.image]))
    images = tiles_u8.permute(0, 3, 1, 2).float() / 255
    assert images.shape[-1] == 32
    x = F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        expected = torch.softmax(net.eval()((x - 0.5) / 0.5), dim=1).numpy()
    np.testing.assert_allclose(np.stack(list(rows.probabilities)), expected, atol=1e-4)
    assert list(rows.finding) == [report.classes[i] for i in expected.argmax(axis=1)]


# ---------------------------------------------------------------- LUAD/LUSC: the chain end to end
@pytest.mark.slow
def test_tcga_chain_import_embed_cluster_integrate_finetune(ray_session: None, tmp_path: Path) -> None:
    """Imported tiles -> random-encoder embeddings -> k-means -> mapping from folder labels
    (a SIMULATION of the pathologist) -> integrate -> finetune on `train` -> score `test`."""
    import yaml

    from mixture_ray.cluster.config import ClusterConfig
    from mixture_ray.cluster.stage import run as run_cluster
    from mixture_ray.embed.config import EmbedConfig
    from mixture_ray.embed.stage import run as run_embedding
    from mixture_ray.finetune.evaluate import predict_tiles, score
    from mixture_ray.finetune.stage import run as run_finetune
    from mixture_ray.review.config import IntegrateConfig
    from mixture_ray.review.integrate import run_integrate
    from mixture_ray.tile.images import run_import

    source = require_shared(TILES_DIR / "tcga_luad_lusc")
    assert run_import(
        build_config(ImportImagesConfig, {"images": source, "out_dir": tmp_path / "tiles"})
    ).complete
    assert run_embedding(
        build_config(
            EmbedConfig,
            {"tiles": tmp_path / "tiles", "out_dir": tmp_path / "emb", "model": "random",
             "pool.batch_size": 32},
        )
    ).complete
    run_cluster(
        build_config(
            ClusterConfig,
            {
                "embeddings": tmp_path / "emb",
                "out_dir": tmp_path / "clu",
                "ks": [6],
                "engine": "sklearn",
                "silhouette_sample": 0,
            },
        )
    )
    folder = next((tmp_path / "clu").rglob("k-6"))
    assign = pq.read_table(folder / "assignments.parquet").to_pandas()
    tiles = pq.read_table(committed_files(tmp_path / "tiles")).to_pandas()
    joined = assign.merge(tiles[["slide_id", "label", "split"]], on="slide_id")
    train = joined[joined.split == "train"]
    clusters = {
        int(c): str(train[train.cluster == c].label.mode().iloc[0])
        if (train.cluster == c).any()
        else "exclude"
        for c in sorted(joined.cluster.unique())
    }
    (tmp_path / "map.yaml").write_text(
        yaml.safe_dump({"clustering": str(folder), "k": 6, "clusters": clusters})
    )
    integ = run_integrate(
        build_config(
            IntegrateConfig,
            {
                "mappings": [tmp_path / "map.yaml"],
                "out_dir": tmp_path / "labels",
                "findings": ["LUAD", "LUSC"],
            },
        )
    )
    report = run_finetune(
        build_config(
            FinetuneConfig,
            {
                "labels": tmp_path / "labels",
                "tiles": tmp_path / "tiles",
                "out_dir": tmp_path / "ft",
                "model": "random",
                "splits": ["train"],
                "image_size": 32,
                "epochs": 1,
                "batch_size": 16,
                "findings": ["LUAD", "LUSC"],
            },
        )
    )
    labelled = pq.read_table(integ.path).to_pandas()
    assert report.n_train + report.n_val == int(labelled.slide_id.str.startswith("train/").sum())  # no test
    test = tiles[tiles.split == "test"]
    predicted = predict_tiles(report.classifier, test.image.tolist())
    metrics = score(test.label, predicted, report.classes)
    assert set(predicted) <= {"LUAD", "LUSC"} and len(predicted) == 60
    assert 0.0 <= metrics.balanced_accuracy <= 1.0 and metrics.confusion.sum() == 60

