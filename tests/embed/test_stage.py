"""Embedding on Ray Data actors (random init and checkpoints), resume, and the truth evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from mixture_ray.cli import EXIT_BAD_INPUT, EXIT_OK, main
from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig, EvaluateEmbeddingsConfig
from mixture_ray.embed.embedder import embed_tensor, preprocess
from mixture_ray.embed.evaluate import evaluate_embeddings
from mixture_ray.embed.stage import run as run_embedding
from mixture_ray.errors import MixtureRayError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.backbone import Backbone
from mixture_ray.models.classifier import CLASSIFIER_FILE, classifier_payload
from mixture_ray.models.encoder import build_encoder, load_encoder
from mixture_ray.pipeline.config import DemoConfig
from mixture_ray.store.case_split import read_split
from mixture_ray.store.codec import decode_tile
from mixture_ray.store.folder import COMMITTED, committed_files
from mixture_ray.store.schemas import EMBEDDING_SCHEMA, TILE_KEY
from tests.conftest import TiledCohort

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def cohort(tiled_cohort: TiledCohort, ray_session: None) -> dict[str, Path]:
    """The shared tiled cohort: tiles at 5x and 20x (32 px), one chunk per slide."""
    return {"root": tiled_cohort.root, "tiles": tiled_cohort.tiles, "masks": tiled_cohort.masks}


def embed_cfg(tiles: Path, out: Path, **extra: Any) -> EmbedConfig:
    values = {"tiles": tiles, "out_dir": out, "model": "random", "pool.batch_size": 16, "pool.workers": 1}
    values.update(extra)
    return build_config(EmbedConfig, values)


def read(path: Path) -> pd.DataFrame:
    return pq.read_table(committed_files(path)).to_pandas()


def bare_embeddings(encoder: Backbone, tiles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    stacked = torch.from_numpy(np.stack([decode_tile(b) for b in tiles.image]))
    head, features = embed_tensor(encoder, preprocess(stacked, 1.0))
    return head.numpy(), features.numpy()


def joined(emb: pd.DataFrame, tiles: pd.DataFrame) -> pd.DataFrame:
    return emb.merge(tiles, on=list(TILE_KEY), validate="one_to_one")


def test_random_init_embeddings_match_a_bare_loop_on_two_actors(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    report = run_embedding(embed_cfg(cohort["tiles"], tmp_path / "emb",
                                     **{"pool.workers": 2, "pool.actor_cpus": 0.5}))
    tiles = read(cohort["tiles"])
    emb = read(tmp_path / "emb")
    assert report.complete and report.tiles_embedded == len(tiles) == len(emb)
    assert pq.read_schema(committed_files(tmp_path / "emb")[0]).equals(EMBEDDING_SCHEMA)
    both = joined(emb, tiles)  # every tile exactly once, keyed like the tiles
    head, features = bare_embeddings(load_encoder("random", seed=0), both)
    assert np.allclose(np.stack(both["head"].to_list()), head, atol=1e-4)  # same weights in every actor
    assert np.allclose(np.stack(both["features"].to_list()), features, atol=1e-4)
    assert np.allclose(np.linalg.norm(head, axis=1), 1.0, atol=1e-5)
    other = load_encoder("random", seed=1)
    assert not np.allclose(bare_embeddings(other, both.head(4))[1], features[:4])  # the seed matters


def test_project_checkpoint_of_another_resnet_and_resume(cohort: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(3)
    encoder = build_encoder("resnet34", dim=16, mlp=False).eval()
    path = tmp_path / "r34.pt"
    ckpt.save({"format": ckpt.ENCODER_FORMAT, "spec": encoder.spec(), "state_dict": encoder.state_dict()},
              path)
    out = tmp_path / "emb"
    assert main(["embed", "--tiles", str(cohort["tiles"]), "--out-dir", str(out), "--model", str(path),
                 "--magnification", "5"]) == EXIT_OK
    emb = read(out)
    tiles = read(cohort["tiles"])
    both = joined(emb, tiles[tiles.magnification == 5.0])
    head, _ = bare_embeddings(encoder, both)
    assert np.stack(both["head"].to_list()).shape[1] == 16
    assert np.allclose(np.stack(both["head"].to_list()), head, atol=1e-4)
    # an interrupted run: one chunk lost its commit marker; the rerun redoes that chunk only
    marker = sorted(out.glob(f"chunk-*/{COMMITTED}"))[0]
    lost = set(json.loads(marker.read_text())["items"])
    marker.unlink()
    report = run_embedding(embed_cfg(cohort["tiles"], out, model=str(path), magnification=5.0))
    assert report.complete and report.slides_skipped == report.slides_requested - len(lost)
    again = read(out)
    assert len(again) == len(emb) and not again.duplicated(["slide_id", "x", "y"]).any()


def test_random_timm_vit_embeds_at_its_own_input_size(cohort: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("timm", reason="timm is a dependency (pip install -e .)")
    arch = "timm:test_vit"  # timm's own small test ViT: 160 px input, 64-d features (fast on CPU)
    report = run_embedding(embed_cfg(cohort["tiles"], tmp_path / "vit", arch=arch, dim=16, magnification=5.0))
    assert report.complete
    tiles = read(cohort["tiles"])
    both = joined(read(tmp_path / "vit"), tiles[tiles.magnification == 5.0])
    encoder = load_encoder("random", arch=arch, dim=16, seed=0)
    stacked = torch.from_numpy(np.stack([decode_tile(b) for b in both.image]))
    images = preprocess(stacked, 1.0, encoder)
    assert images.shape[-2:] == (160, 160)  # 32 px tiles resized to the ViT's input
    head, features = embed_tensor(encoder, images)
    assert np.stack(both["features"].to_list()).shape == (len(both), 64)
    np.testing.assert_allclose(np.stack(both["features"].to_list()), features.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.stack(both["head"].to_list()), head.numpy(), atol=1e-4)


def test_coordinates_only_store_reads_slides_and_in_actor_decoding_match_the_pixel_store(
    tiled_cohort: TiledCohort, tmp_path: Path
) -> None:
    """PNG store (lossless) vs a coordinates-only store of the same tiles read from the slides."""
    from mixture_ray.tile.config import TileConfig
    from mixture_ray.tile.stage import run as run_tiling

    stores = {}
    for encoding in ("png", "none"):
        stores[encoding] = tmp_path / f"tiles-{encoding}"
        assert run_tiling(build_config(TileConfig, {
            "manifest": tiled_cohort.manifest, "out_dir": stores[encoding], "tile_size": 32,
            "magnifications": [20.0], "max_tiles_per_slide": 12, "encoding": encoding,
            "pool.workers": 1})).complete
    runs = {"store": embed_cfg(stores["png"], tmp_path / "from-store"),
            "slides": embed_cfg(stores["none"], tmp_path / "from-slides"),  # input.pixels=auto -> slides
            "in-actor": embed_cfg(stores["png"], tmp_path / "in-actor", **{"input.decode": "model"})}
    frames = {}
    n_tiles = len(read(stores["png"]))
    assert n_tiles == len(read(stores["none"])) > 30
    for name, cfg in runs.items():
        report = run_embedding(cfg)
        assert report.complete and report.tiles_embedded == n_tiles, (name, report.failures)
        frames[name] = read(cfg.out_dir).sort_values(["slide_id", "x", "y"]).reset_index(drop=True)
    reference = np.stack(frames["store"]["features"].to_list())
    assert np.abs(reference).sum() > 0
    for name in ("slides", "in-actor"):
        assert frames[name][["slide_id", "x", "y"]].equals(frames["store"][["slide_id", "x", "y"]])
        np.testing.assert_allclose(np.stack(frames[name]["features"].to_list()), reference, atol=1e-4)
    with pytest.raises(MixtureRayError, match=r"input\.pixels"):  # a JPEG store has pixels; none has not
        run_embedding(embed_cfg(stores["none"], tmp_path / "forced", **{"input.pixels": "store"}))


def test_unsafe_or_missing_checkpoint_is_refused(cohort: dict[str, Path], tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt.ENCODER_FORMAT, "spec": object()}, evil)  # needs full pickle
    with pytest.raises(MixtureRayError, match=r"evil\.pt"):
        load_encoder(str(evil))
    rc = main(["embed", "--tiles", str(cohort["tiles"]), "--out-dir", str(tmp_path / "o"),
               "--model", str(tmp_path / "nowhere")])
    assert rc == EXIT_BAD_INPUT


@pytest.mark.slow
def test_demo_pretrains_embeds_and_evaluates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's new stages on a tiny cohort: pretrain -> embed (MoCo, random) -> evaluate."""
    from mixture_ray.pipeline import demo

    monkeypatch.setitem(demo.PRETRAIN, "batch_size", 8)
    monkeypatch.setitem(demo.PRETRAIN, "queue_size", 32)
    # Two tiny cases cannot give a case-wise validation split, and the explain check has its own
    # tests: here the demo runs synth -> tile -> pretrain -> embed -> cluster -> review -> integrate,
    # then (with a seeded random classifier in place of fine-tuning) classify -> maps -> cases -> stats
    # on a second small cohort.
    skipped: list[str] = []

    def random_classifier(cfg: DemoConfig, start: float) -> None:
        skipped.append("finetune")
        torch.manual_seed(0)
        net = Backbone("resnet18", 3, classes=["normal_alveolar", "dense_fibrosis", "fibroblastic_foci"])
        folder = cfg.out_dir / "finetune" / "classifier_20x"
        folder.mkdir(parents=True)
        ckpt.save(classifier_payload(net, magnification=20.0, image_size=0), folder / CLASSIFIER_FILE)

    monkeypatch.setattr(demo, "finetune_stage", random_classifier)
    monkeypatch.setattr(demo, "explain_stage", lambda cfg, start, headline: skipped.append("explain"))
    cfg = build_config(DemoConfig, {"out_dir": tmp_path, "n_cases": 2, "slide_px": 1024, "tile_size": 32,
                                    "magnifications": [5.0, 20.0], "max_tiles_per_slide": 40, "workers": 1,
                                    "analysis_cases": 24, "analysis_slide_px": 512, "pretrain_steps": 3})
    report = demo.run_demo(cfg)
    assert report.complete and skipped == ["finetune", "explain"]
    assert "[demo] known-truth summary" in report.summary()
    headline = json.loads((tmp_path / "summary.json").read_text())
    assert headline["review_page"].endswith(".html") and Path(headline["stats_report"]).exists()
    assert 0.0 <= headline["map_agreement"] <= 1.0 and headline["test_cases"] > 0
    analysis = tmp_path / "analysis"
    for stage in ("predictions", "maps", "cases", "stats"):
        assert (analysis / stage / "_SUCCESS").exists(), stage
    summary = json.loads((analysis / "stats" / "summary.json").read_text())
    assert summary["n_cases"] == 24 and summary["best_baseline"] is not None
    split = read_split(analysis / "split.csv")
    for name in ("all_cases", "nested"):  # the leakage pair: scored on the demo's one split
        cases = pd.read_csv(analysis / f"stats_{name}" / "cases.csv")
        assert set(cases.case_id[cases.split == "test"]) == set(split.test), name
        assert np.isfinite(headline[f"auc_baseline_{name}"]), name
    k12 = Path("mag-20x") / "k-12" / "assignments.parquet"
    nested = pq.read_table(analysis / "clusters_nested" / k12).to_pandas()
    assert (nested.fitted == nested.case_id.isin(split.train)).all() and not nested.fitted.all()
    assert "fitted" not in pq.read_schema(analysis / "clusters_all_cases" / k12).names
    slides = read(analysis / "tiles").slide_id.unique()
    assert len(pd.read_csv(analysis / "maps" / "agreement.csv")) == len(slides)
    assert (tmp_path / "labels" / "_SUCCESS").exists() and list((tmp_path / "review").glob("review-*.html"))
    run_dir = tmp_path / "pretrain" / "elex_20x"
    assert ckpt.load(run_dir / "elex.pt")["step"] == 3
    moco, rand = tmp_path / "embeddings_moco", tmp_path / "embeddings_random"
    moco_rows, tiles = read(moco), read(tmp_path / "tiles")
    assert len(moco_rows) == (tiles.magnification == 20.0).sum() == len(read(rand))
    assert np.stack(moco_rows["head"].to_list()).shape[1] == 128
    saved = json.loads((tmp_path / "evaluate_embeddings.json").read_text())
    values = {"embeddings": moco, "baseline": rand, "masks": tmp_path / "cohort" / "masks",
              "tiles": tmp_path / "tiles", "min_purity": 0.8}
    result = evaluate_embeddings(build_config(EvaluateEmbeddingsConfig, values))
    assert saved["trained"]["nmi"] == pytest.approx(result.trained.nmi)  # seeded k-means
    # Even random-init features separate the planted textures far above chance (NMI about 0 for
    # features unrelated to the findings, e.g. a broken pixel path).
    assert result.baseline.nmi > 0.1 and result.trained.nmi > 0.1
    assert result.k == len(result.findings) >= 2
    assert sum(result.findings.values()) == result.n_tiles
    same = evaluate_embeddings(build_config(EvaluateEmbeddingsConfig, {**values, "embeddings": rand}))
    assert same.trained == same.baseline  # identical inputs, identical scores
    loose = evaluate_embeddings(build_config(EvaluateEmbeddingsConfig, {**values, "min_purity": 0.5}))
    assert loose.n_tiles > result.n_tiles
    with pytest.raises(MixtureRayError, match="nomasks"):
        evaluate_embeddings(build_config(EvaluateEmbeddingsConfig, {**values, "masks": tmp_path / "nomasks"}))


def test_ragged_batches_duplicate_magnifications_and_filters_that_match_nothing(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    from mixture_ray.errors import ConfigError
    from mixture_ray.models.jpeg_decode import ready_tiles
    from mixture_ray.tile.config import TileConfig

    # Ray Data joins blocks of two tile sizes into one ragged batch: resized to the first size.
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((32, 32, 3), np.uint8), np.full((48, 48, 3), 200, np.uint8)
    tiles, errors = ready_tiles({"pixels": ragged, "error": np.array(["", ""], dtype=object)},
                                torch.device("cpu"))
    assert tiles.shape == (2, 32, 32, 3) and errors == [None, None]
    assert int(tiles[1].float().mean().round()) == 200
    with pytest.raises(ConfigError, match="each at most once"):  # two writes of one key: refused
        build_config(TileConfig, {"manifest": tmp_path, "out_dir": tmp_path / "t",
                                  "magnifications": [20, 20]})
    with pytest.raises(ConfigError, match="magnification=40"):  # not a silent empty success
        run_embedding(embed_cfg(cohort["tiles"], tmp_path / "none", magnification=40.0))
    assert not (tmp_path / "none" / "_SUCCESS").exists()
