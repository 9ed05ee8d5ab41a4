"""Done-when figures of fine-tuning: synthetic cohort (oracle mapping) and imported TCGA LUAD/LUSC tiles.

``python scripts/finetune_figures.py synthetic --out DIR`` runs synth -> tile -> embed (random
encoder) -> cluster -> review (oracle mapping: a SIMULATION of the pathologist) -> integrate ->
finetune, then scores the classifier at tile level against ground truth on the held-out
validation cases and on a second, unseen synthetic cohort.

``python scripts/finetune_figures.py tcga --out DIR`` imports ../shared/data/tiles/tcga_luad_lusc,
embeds (random encoder), clusters, derives a mapping from the folder labels (majority label per
cluster: a SIMULATION of the pathologist), integrates, fine-tunes on the `train` split and scores
the `test` split against the folder labels. Both print and write a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
import yaml

from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.cluster.stage import run as run_cluster
from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig
from mixture_ray.embed.stage import run as run_embedding
from mixture_ray.finetune.config import FinetuneConfig
from mixture_ray.finetune.evaluate import predict_tiles, score
from mixture_ray.finetune.stage import run as run_finetune
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.review.config import IntegrateConfig, ReviewConfig
from mixture_ray.review.integrate import run_integrate
from mixture_ray.review.stage import run as run_review
from mixture_ray.store.folder import committed_files
from mixture_ray.synth.cohort import write_cohort
from mixture_ray.synth.config import SynthConfig
from mixture_ray.synth.oracle import ORACLE_SOURCE, finding_names, tile_truth
from mixture_ray.tile.config import ImportImagesConfig, TileConfig
from mixture_ray.tile.images import run_import
from mixture_ray.tile.stage import run as run_tiling

if TYPE_CHECKING:
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TCGA = (REPO / ".." / "shared" / "data" / "tiles" / "tcga_luad_lusc").resolve()


def _tiles(root: Path) -> pd.DataFrame:
    return pq.read_table(committed_files(root)).to_pandas()


def _cohort_tiles(out: Path, n_cases: int, slide_px: int, tile: int, mag: float, seed: int) -> Path:
    cohort = write_cohort(
        build_config(
            SynthConfig,
            {
                "out_dir": out / "cohort",
                "n_cases": n_cases,
                "width": slide_px,
                "height": slide_px,
                "max_slides_per_case": 2,
                "seed": seed,
            },
        )
    )
    report = run_tiling(
        build_config(
            TileConfig,
            {
                "manifest": cohort.manifest,
                "out_dir": out / "tiles",
                "tile_size": tile,
                "magnifications": [mag],
                "max_tiles_per_slide": 200,
                "max_background": 0.7,
                "pool.workers": 2,
                "seed": seed,
            },
        )
    )
    assert report.complete
    return cohort.root


def _embed_cluster(tiles: Path, out: Path, ks: list[int]) -> Path:
    assert run_embedding(
        build_config(
            EmbedConfig,
            {"tiles": tiles, "out_dir": out / "embeddings", "model": "random", "torch_threads": 2},
        )
    ).complete
    run_cluster(
        build_config(
            ClusterConfig,
            {
                "embeddings": out / "embeddings",
                "out_dir": out / "clusters",
                "ks": ks,
                "engine": "sklearn",
                "silhouette_sample": 0,
            },
        )
    )
    return out / "clusters"


def synthetic(out: Path, epochs: int, n_cases: int) -> dict[str, Any]:
    """Oracle-mapped synthetic cohort -> fine-tuned classifier, scored against ground truth."""
    t0 = time.perf_counter()
    tile, mag, slide_px, k = 64, 20.0, 2048, 30
    cohort = _cohort_tiles(out / "train", n_cases, slide_px, tile, mag, seed=0)
    clusters = _embed_cluster(out / "train" / "tiles", out / "train", [k])
    names = list(finding_names(cohort).values())
    review = run_review(
        build_config(
            ReviewConfig,
            {
                "clusters": clusters,
                "tiles": out / "train" / "tiles",
                "out_dir": out / "train" / "review",
                "findings": names,
                "per_cluster": 8,
                "oracle_cohort": cohort,
            },
        )
    )
    integ = run_integrate(
        build_config(
            IntegrateConfig,
            {"mappings": review.oracle_mappings, "out_dir": out / "train" / "labels", "findings": names},
        )
    )
    t_chain = time.perf_counter() - t0
    ft = run_finetune(
        build_config(
            FinetuneConfig,
            {
                "labels": out / "train" / "labels",
                "tiles": out / "train" / "tiles",
                "out_dir": out / "finetune",
                "model": "random",
                "image_size": tile,
                "epochs": epochs,
                "batch_size": 32,
                "train.checkpoint_every": 200,
                "train.cpus_per_worker": 2.0,
                "train.log_every": 50,
            },
        )
    )
    t_ft = time.perf_counter() - t0 - t_chain
    scores = score_synthetic(out, cohort, ft.run_dir)
    return {
        "figure": f"tile-level balanced accuracy vs synthetic ground truth (oracle mapping: {ORACLE_SOURCE})",
        "cohort": {
            "cases": n_cases,
            "slide_px": slide_px,
            "tile_px": tile,
            "magnification": mag,
            "labelled_tiles": sum(integ.counts.values()),
            "k": k,
            "label_counts": integ.counts,
            "embedding": "random ResNet18",
        },
        "finetune": {
            "epochs": epochs,
            "batch_size": 32,
            "image_size": tile,
            "model": "random",
            "train_tiles": ft.n_train,
            "val_tiles": ft.n_val,
            "best_epoch": ft.best_epoch,
            "val_balanced_accuracy_vs_oracle_labels": ft.val_balanced_accuracy,
            "seconds": round(t_ft, 1),
        },
        **scores,
        "chain_seconds": round(t_chain, 1),
    }


def _truth_scores(truth: pd.Series, predicted: Any, classes: tuple[str, ...]) -> dict[str, Any]:
    """All tiles (a true finding the classifier lacks, e.g. background, counts as never predicted)
    and the tiles whose true finding is one of the classifier's classes."""
    known = truth.isin(classes).to_numpy()
    return {
        "tiles": len(truth),
        "true_counts": truth.value_counts().to_dict(),
        "all_tiles": _brief(score(truth, predicted, classes)),
        "tiles_with_a_known_finding": {
            "tiles": int(known.sum()),
            **_brief(score(truth[known], predicted[known], classes)),
        },
    }


def score_synthetic(out: Path, cohort: Path, run_dir: Path) -> dict[str, Any]:
    """Ground-truth scores on the held-out validation cases and on an unseen 4-case cohort."""
    from mixture_ray.models.classifier import load_classifier

    classes = load_classifier(run_dir)[0].classes
    tiles = _tiles(out / "train" / "tiles")
    val_cases = set(json.loads((run_dir / "split.json").read_text())["val_cases"])
    held = tiles[tiles.case_id.isin(val_cases)].reset_index(drop=True)
    val = _truth_scores(
        tile_truth(cohort, held), predict_tiles(run_dir / "classifier.pt", held.image.tolist()), classes
    )
    if not (out / "unseen" / "tiles" / "_SUCCESS").exists():
        _cohort_tiles(out / "unseen", 4, 2048, 64, 20.0, seed=100)
    unseen = _tiles(out / "unseen" / "tiles")
    test = _truth_scores(
        tile_truth(out / "unseen" / "cohort", unseen),
        predict_tiles(run_dir / "classifier.pt", unseen.image.tolist()),
        classes,
    )
    return {"held_out_val_cases_vs_truth": val, "unseen_cohort_vs_truth": {"cases": 4, **test}}


def tcga(out: Path, epochs: int) -> dict[str, Any]:
    """Imported LUAD/LUSC tiles -> label-derived mapping (simulation) -> finetune on train, score test."""
    if not TCGA.exists():
        raise SystemExit(f"shared data not found at {TCGA}")
    t0 = time.perf_counter()
    assert run_import(
        build_config(ImportImagesConfig, {"images": TCGA, "out_dir": out / "tiles"})
    ).complete
    k = 8
    clusters = _embed_cluster(out / "tiles", out, [k])
    folder = next(clusters.rglob(f"k-{k}"))
    assign = pq.read_table(folder / "assignments.parquet").to_pandas()
    tiles = _tiles(out / "tiles")
    joined = assign.merge(tiles[["slide_id", "label", "split"]], on="slide_id")
    train = joined[joined.split == "train"]  # the mapping sees only training labels
    mapping = {}
    for cluster in sorted(joined.cluster.unique()):
        shares = train[train.cluster == cluster].label.value_counts(normalize=True)
        mapping[int(cluster)] = str(shares.index[0]) if len(shares) and shares.iloc[0] >= 0.6 else "exclude"
    mapping_file = out / "mapping.yaml"
    mapping_file.write_text(
        yaml.safe_dump(
            {
                "clustering": str(folder),
                "k": k,
                "clusters": mapping,
                "source": "simulation: majority folder label per cluster (not a pathologist)",
            }
        )
    )
    integ = run_integrate(
        build_config(
            IntegrateConfig,
            {"mappings": [mapping_file], "out_dir": out / "labels", "findings": ["LUAD", "LUSC"]},
        )
    )
    ft = run_finetune(
        build_config(
            FinetuneConfig,
            {
                "labels": out / "labels",
                "tiles": out / "tiles",
                "out_dir": out / "finetune",
                "model": "random",
                "splits": ["train"],
                "image_size": 128,
                "epochs": epochs,
                "batch_size": 16,
                "train.cpus_per_worker": 2.0,
                "findings": ["LUAD", "LUSC"],
                "train.log_every": 10,
            },
        )
    )
    test = tiles[tiles.split == "test"].reset_index(drop=True)
    metrics = score(test.label, predict_tiles(ft.classifier, test.image.tolist()), ft.classes)
    return {
        "figure": "LUAD/LUSC test-split balanced accuracy vs folder labels (mapping = simulation)",
        "tiles": len(tiles),
        "k": k,
        "mapping": mapping,
        "label_counts": integ.counts,
        "finetune": {
            "epochs": epochs,
            "image_size": 128,
            "batch_size": 16,
            "train_tiles": ft.n_train,
            "val_tiles": ft.n_val,
            "val_balanced_accuracy": ft.val_balanced_accuracy,
        },
        "test": {"tiles": len(test), **_brief(metrics)},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _brief(m: Any) -> dict[str, Any]:
    d = m.to_dict()
    return {
        "balanced_accuracy": d["balanced_accuracy"],
        "accuracy": d["accuracy"],
        "per_class": d["per_class"],
        "confusion": d["confusion"],
        "classes": d["classes"],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI of the script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", choices=["synthetic", "tcga"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--name", default="classifier", help="finetune run name (with --score-only)")
    parser.add_argument("--score-only", action="store_true", help="synthetic: rescore an existing --out")
    args = parser.parse_args(argv)
    ensure_ray(2)
    start = time.perf_counter()
    if args.score_only:
        result = score_synthetic(
            args.out, args.out / "train" / "cohort", args.out / "finetune" / args.name
        )
    elif args.which == "synthetic":
        result = synthetic(args.out, args.epochs, args.cases)
    else:
        result = tcga(args.out, args.epochs)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    result["command"] = "python scripts/finetune_figures.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"finetune_{args.which}{'_scores' if args.score_only else ''}.json").write_text(
        json.dumps(result, indent=2, default=str)
    )
    print(json.dumps({k: v for k, v in result.items() if k != "mapping"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
