"""Known-truth figures of the clinical analyses (issue #5) on two synthetic cohorts.

``python scripts/cohort_figures.py --out DIR`` runs, on CPU with a local Ray:

1. a *training* cohort: synth -> tile -> MoCo pretrain -> embed -> k-means (the review k and the
   baseline ks) -> oracle mapping (a SIMULATION of the pathologist from ground truth) ->
   integrate -> fine-tune a finding classifier;
2. an *analysis* cohort (other seed, more cases): synth -> tile every tissue tile ->
   classify -> maps (agreement with ground truth) -> embed -> cases (finding frequencies and the
   nearest-centroid baseline) -> stats against the cohort's clinical table.

Each step is skipped when its output is already complete, so an interrupted run can be resumed.
Prints and writes ``DIR/figures.json`` with the headline numbers and the planted truth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from mixture_ray.cases.config import CasesConfig
from mixture_ray.cases.stage import run as run_cases
from mixture_ray.classify.config import ClassifyConfig
from mixture_ray.classify.stage import run as run_classify
from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.cluster.stage import run as run_cluster
from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig
from mixture_ray.embed.stage import run as run_embedding
from mixture_ray.finetune.config import FinetuneConfig
from mixture_ray.finetune.stage import run as run_finetune
from mixture_ray.maps.config import MapsConfig
from mixture_ray.maps.stage import run as run_maps
from mixture_ray.pretrain.config import PretrainConfig
from mixture_ray.pretrain.stage import run as run_pretrain
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.review.config import IntegrateConfig, ReviewConfig
from mixture_ray.review.integrate import run_integrate
from mixture_ray.review.stage import run as run_review
from mixture_ray.store.folder import SUCCESS
from mixture_ray.synth.cohort import write_cohort
from mixture_ray.synth.config import SynthConfig
from mixture_ray.synth.oracle import finding_names
from mixture_ray.tile.config import TileConfig
from mixture_ray.tile.stage import run as run_tiling

MAG = 20.0
BASELINE_KS = [4, 8, 10, 20, 30, 50, 80]
REVIEW_K = 30


def log(t0: float, text: str) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {text}", flush=True)


def cohort_and_tiles(out: Path, *, n_cases: int, slide_px: int, tile: int, seed: int,
                     max_tiles: int) -> Path:
    """Write a synthetic cohort (unless done) and tile it at 20x."""
    root = out / "cohort"
    if not (root / SUCCESS).exists():
        write_cohort(build_config(SynthConfig, {"out_dir": root, "n_cases": n_cases, "width": slide_px,
                                                "height": slide_px, "max_slides_per_case": 2,
                                                "seed": seed}))
    report = run_tiling(build_config(TileConfig, {
        "manifest": root / "manifest.csv", "out_dir": out / "tiles", "tile_size": tile,
        "magnifications": [MAG], "max_tiles_per_slide": max_tiles, "max_background": 0.7,
        "pool.workers": 1, "seed": seed}))
    assert report.complete, report.failures
    return root


def embed(tiles: Path, out: Path, model: str) -> Path:
    report = run_embedding(build_config(EmbedConfig, {"tiles": tiles, "out_dir": out, "model": model,
                                                      "torch_threads": 2, "pool.batch_size": 128}))
    assert report.complete, report.failures
    return out


def train_classifier(out: Path, args: argparse.Namespace, t0: float) -> tuple[Path, Path, Path]:
    """Training cohort -> ElEx, clusterings, oracle labels, classifier. Returns (elex, clusters, clf)."""
    train = out / "train"
    cohort = cohort_and_tiles(train, n_cases=args.train_cases, slide_px=args.slide_px, tile=args.tile,
                              seed=0, max_tiles=300)
    log(t0, "training cohort tiled")
    run = run_pretrain(build_config(PretrainConfig, {
        "tiles": train / "tiles", "out_dir": train / "pretrain", "name": "elex_20x", "magnification": MAG,
        "batch_size": 32, "max_steps": args.pretrain_steps, "queue_size": 1024, "crop_fraction": 0.5,
        "train.checkpoint_every": 100, "train.log_every": 50, "split_bn": 4,
        "train.cpus_per_worker": 2.0}))
    log(t0, f"pretrain: step {run.step}, loss {run.loss:.3f}")
    embeddings = embed(train / "tiles", train / "embeddings", str(run.run_dir))
    clusters = train / "clusters"
    if not (clusters / SUCCESS).exists():
        run_cluster(build_config(ClusterConfig, {"embeddings": embeddings, "out_dir": clusters,
                                                 "ks": sorted({*BASELINE_KS, REVIEW_K}),
                                                 "silhouette_sample": 0}))
    log(t0, "training embeddings clustered")
    names = list(finding_names(cohort).values())
    review = run_review(build_config(ReviewConfig, {
        "clusters": clusters, "tiles": train / "tiles", "out_dir": train / "review", "findings": names,
        "ks": [REVIEW_K], "per_cluster": 16, "oracle_cohort": cohort}))
    run_integrate(build_config(IntegrateConfig, {"mappings": review.oracle_mappings,
                                                 "out_dir": train / "labels", "findings": names}))
    ft = run_finetune(build_config(FinetuneConfig, {
        "labels": train / "labels", "tiles": train / "tiles", "out_dir": train / "finetune",
        "name": "classifier_20x", "model": str(run.run_dir), "magnification": MAG,
        "image_size": args.image_size, "epochs": args.epochs, "batch_size": 32,
        "train.cpus_per_worker": 2.0}))
    log(t0, f"finetune: validation balanced accuracy {ft.val_balanced_accuracy:.3f} ({list(ft.classes)})")
    return run.run_dir, clusters, ft.classifier


def analyse(out: Path, elex: Path, clusters: Path, classifier: Path, args: argparse.Namespace,
            t0: float) -> dict[str, Any]:
    """Analysis cohort -> classify -> maps -> cases (+ baseline) -> stats."""
    cohort_dir = out / "cohort"
    cohort = cohort_and_tiles(cohort_dir, n_cases=args.cases, slide_px=args.slide_px, tile=args.tile,
                              seed=1, max_tiles=0)
    log(t0, "analysis cohort tiled (every tissue tile)")
    cls = run_classify(build_config(ClassifyConfig, {"tiles": cohort_dir / "tiles", "classifier": classifier,
                                                     "out_dir": cohort_dir / "predictions",
                                                     "pool.batch_size": 128, "torch_threads": 2}))
    assert cls.complete, cls.failures
    log(t0, f"classify: {cls.tiles_classified} tiles")
    maps = run_maps(build_config(MapsConfig, {"predictions": cohort_dir / "predictions",
                                              "manifest": cohort / "manifest.csv",
                                              "out_dir": cohort_dir / "maps",
                                              "truth_cohort": cohort, "thumbnail_px": 512}))
    accuracy = float(maps.agreement["accuracy"].mean())
    log(t0, f"maps: {len(maps.maps)} slides, mean tile agreement with truth {accuracy:.3f}")
    embeddings = embed(cohort_dir / "tiles", cohort_dir / "embeddings", str(elex))
    cases = run_cases(build_config(CasesConfig, {
        "predictions": [cohort_dir / "predictions"], "out_dir": cohort_dir / "cases", "exclude": [],
        "embeddings": [embeddings], "clusters": clusters, "baseline_ks": BASELINE_KS}))
    log(t0, f"cases: {len(cases.frequencies)} cases, baseline k {sorted(cases.baseline)}")
    from mixture_ray.stats.config import StatsConfig
    from mixture_ray.stats.stage import run as run_stats

    stats = run_stats(build_config(StatsConfig, {
        "frequencies": cohort_dir / "cases" / "frequencies.parquet",
        "baseline_dir": cohort_dir / "cases" / "baseline",
        "clinical": cohort / "clinical.csv", "out_dir": cohort_dir / "stats", "feature_sets": ["20x"],
        "subgroup_column": "diagnosis", "cox_feature_set": "20x",
        "reference_findings": ["20x/normal_alveolar"], "seed": 0}))
    log(t0, f"stats: {stats.out_dir}")
    summary = json.loads((stats.out_dir / "summary.json").read_text())
    truth = json.loads((cohort / "truth.json").read_text())
    return {"tiles_classified": cls.tiles_classified, "maps_mean_tile_agreement": accuracy,
            "stats_summary": summary, "planted_cox_log_hr_per_unit_fraction": truth["cox"]["coefficients"],
            "planted_diagnosis_rule": truth["diagnosis_rule"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-cases", type=int, default=16)
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--slide-px", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    t0 = time.perf_counter()
    ensure_ray()
    elex, clusters, classifier = train_classifier(args.out, args, t0)
    result = {"args": {k: str(v) for k, v in vars(args).items()},
              **analyse(args.out, elex, clusters, classifier, args, t0),
              "seconds": time.perf_counter() - t0}
    (args.out / "figures.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
