"""The demo's analysis cohort: classify -> maps -> cases -> stats, and the baseline's leakage pair."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mixture_ray.cases.config import CasesConfig
from mixture_ray.classify.config import ClassifyConfig
from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig
from mixture_ray.errors import StageIncompleteError
from mixture_ray.maps.config import MapsConfig
from mixture_ray.stats.config import SplitConfig, StatsConfig
from mixture_ray.store.schemas import magnification_label
from mixture_ray.synth.config import SynthConfig
from mixture_ray.tile.config import TileConfig

if TYPE_CHECKING:
    from pathlib import Path

    from mixture_ray.pipeline.config import DemoConfig
    from mixture_ray.pipeline.demo_headline import DemoHeadline


def clinical_stages(cfg: DemoConfig, start: float, headline: DemoHeadline) -> None:
    """A second cohort: tile every tissue tile -> classify -> maps -> cases (+ baseline) -> stats."""
    from mixture_ray.cases.stage import run as run_cases
    from mixture_ray.classify.stage import run as run_classify
    from mixture_ray.embed.stage import run as run_embedding
    from mixture_ray.maps.stage import run as run_maps
    from mixture_ray.stats.split import run_split
    from mixture_ray.stats.stage import run as run_stats
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.tile.stage import run as run_tiling

    root, mag = cfg.out_dir / "analysis", max(cfg.magnifications)
    cohort, label = root / "cohort", magnification_label(mag)
    if not (cohort / "manifest.csv").exists():
        size = cfg.analysis_slide_px
        write_cohort(build_config(SynthConfig, {"out_dir": cohort, "n_cases": cfg.analysis_cases,
                                                "width": size, "height": size, "seed": cfg.seed + 1,
                                                "version": cfg.cohort_version}))
    tiles = run_tiling(build_config(TileConfig, {
        "manifest": cohort / "manifest.csv", "out_dir": root / "tiles", "tile_size": cfg.tile_size,
        "magnifications": [mag], "max_tiles_per_slide": 0, "max_background": 0.7,
        "pool.workers": cfg.workers, "seed": cfg.seed}))
    if not tiles.complete:
        raise StageIncompleteError(f"analysis tiling left {len(tiles.failures)} slides failed")
    classified = run_classify(build_config(ClassifyConfig, {
        "tiles": root / "tiles", "classifier": cfg.out_dir / "finetune" / f"classifier_{label}",
        "out_dir": root / "predictions", "torch_threads": cfg.workers}))
    maps = run_maps(build_config(MapsConfig, {
        "predictions": root / "predictions", "manifest": cohort / "manifest.csv",
        "out_dir": root / "maps", "truth_cohort": cohort, "thumbnail_px": 512}))
    print(f"[demo] classify + maps: {classified.tiles_classified} tiles of {cfg.analysis_cases} cases, "
          f"tile agreement with truth {maps.agreement['accuracy'].mean():.3f} -> {root / 'maps'} "
          f"({time.perf_counter() - start:.1f}s)")
    run_embedding(build_config(EmbedConfig, {
        "tiles": root / "tiles", "out_dir": root / "embeddings", "magnification": mag,
        "model": str(cfg.out_dir / "pretrain" / f"elex_{label}"), "torch_threads": cfg.workers}))
    run_cases(build_config(CasesConfig, {
        "predictions": [root / "predictions"], "out_dir": root / "cases", "embeddings": [root / "embeddings"],
        "clusters": cfg.out_dir / "clusters", "baseline_ks": list(cfg.ks),
        "exclude": []}))  # one magnification (20x): nothing of 5x to drop
    split = run_split(build_config(SplitConfig, {
        "clinical": cohort / "clinical.csv", "out": root / "split.csv", "seed": cfg.seed}))
    stats = run_stats(build_config(StatsConfig, {
        "frequencies": root / "cases", "baseline_dir": root / "cases" / "baseline",
        "baseline_ks": list(cfg.ks), "clinical": cohort / "clinical.csv", "out_dir": root / "stats",
        "feature_sets": [label], "cox_feature_set": label, "subgroup_column": "diagnosis",
        "rf_trees": 200, "split": split.out, "seed": cfg.seed}))
    best, base = stats.headline["best_integrated"], stats.headline["best_baseline"] or {}
    p = stats.headline["delong_p_best_integrated_vs_best_baseline"]
    headline.map_agreement = float(maps.agreement["accuracy"].mean())
    headline.maps, headline.stats_report = str(root / "maps"), str(stats.report)
    headline.auc_integrated, headline.auc_integrated_ci = best["auc"], (best["ci_low"], best["ci_high"])
    headline.auc_baseline = base.get("auc", float("nan"))
    headline.delong_p = float("nan") if p is None else float(p)
    headline.test_cases = int(stats.headline["n_test"])
    print(f"[demo] cases + stats: integrated AUC {best['auc']:.3f}, best baseline AUC "
          f"{headline.auc_baseline:.3f}, DeLong p {headline.delong_p:.2f} "
          f"({time.perf_counter() - start:.1f}s)")
    leakage_stages(cfg, split.out, start, headline)


def leakage_stages(cfg: DemoConfig, split: Path, start: float, headline: DemoHeadline) -> None:
    """The leakage figure: the baseline clustered on the analysis cohort, on every case vs fold-nested.

    k-means of the analysis cohort's own embeddings, once fitted on every case and once on the training
    cases of ``split`` only (``cluster.fit_split``); each gives nearest-centroid case frequencies, scored
    by stats on the same split. The integrated findings need no such pair here: their clusters, mapping
    and classifier all come from the other (pretraining) cohort.
    """
    from mixture_ray.cases.stage import run as run_cases
    from mixture_ray.cluster.stage import run as run_cluster
    from mixture_ray.stats.stage import run as run_stats

    root, label = cfg.out_dir / "analysis", magnification_label(max(cfg.magnifications))
    aucs = {}
    for name, fit_split in (("all_cases", None), ("nested", split)):
        clusters, cases = root / f"clusters_{name}", root / f"cases_{name}"
        run_cluster(build_config(ClusterConfig, {
            "embeddings": root / "embeddings", "out_dir": clusters, "ks": list(cfg.ks), "engine": "sklearn",
            "fit_split": fit_split, "seed": cfg.seed}))
        run_cases(build_config(CasesConfig, {
            "predictions": [root / "predictions"], "out_dir": cases, "embeddings": [root / "embeddings"],
            "clusters": clusters, "baseline_ks": list(cfg.ks), "exclude": []}))
        stats = run_stats(build_config(StatsConfig, {
            "frequencies": cases, "baseline_dir": cases / "baseline", "baseline_ks": list(cfg.ks),
            "clinical": root / "cohort" / "clinical.csv", "out_dir": root / f"stats_{name}",
            "feature_sets": [label], "cox_feature_set": label, "rf_trees": 200, "bootstrap_iterations": 0,
            "split": split, "seed": cfg.seed}))
        aucs[name] = float((stats.headline["best_baseline"] or {}).get("auc", float("nan")))
    headline.auc_baseline_all_cases, headline.auc_baseline_nested = aucs["all_cases"], aucs["nested"]
    print(f"[demo] leakage: baseline clustered on the analysis cohort, AUC {aucs['nested']:.3f} fold-nested "
          f"vs {aucs['all_cases']:.3f} on every case ({time.perf_counter() - start:.1f}s)")
