"""`mixture-ray demo`: run the pipeline end to end on a small synthetic cohort."""

from __future__ import annotations

import time

from mixture_ray.config import (
    CasesConfig,
    ClassifyConfig,
    ClusterConfig,
    DemoConfig,
    EmbedConfig,
    EvaluateEmbeddingsConfig,
    FinetuneConfig,
    IntegrateConfig,
    MapsConfig,
    PretrainConfig,
    ReviewConfig,
    StatsConfig,
    SynthConfig,
    TileConfig,
    build_config,
)
from mixture_ray.errors import StageIncompleteError


def run_demo(cfg: DemoConfig) -> int:
    """synth -> tile -> pretrain -> embed -> evaluate; returns 0 when every stage completed."""
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.tiling.pipeline import run_tiling

    cohort_dir, tiles_dir = cfg.out_dir / "cohort", cfg.out_dir / "tiles"
    start = time.perf_counter()
    synth = build_config(
        SynthConfig,
        {
            "out_dir": cohort_dir,
            "n_cases": cfg.n_cases,
            "width": cfg.slide_px,
            "height": cfg.slide_px,
            "seed": cfg.seed,
        },
    )
    if not (cohort_dir / "manifest.csv").exists():
        write_cohort(synth)
    print(f"[demo] synth: {cohort_dir} ({time.perf_counter() - start:.1f}s)")
    tile = build_config(
        TileConfig,
        {
            "manifest": cohort_dir / "manifest.csv",
            "out_dir": tiles_dir,
            "tile_size": cfg.tile_size,
            "magnifications": list(cfg.magnifications),
            "max_tiles_per_slide": cfg.max_tiles_per_slide,
            "workers": cfg.workers,
            "seed": cfg.seed,
        },
    )
    report = run_tiling(tile)
    print(
        f"[demo] tile: {report.tiles_written} tiles from {report.slides_committed} slides -> {tiles_dir} "
        f"({time.perf_counter() - start:.1f}s)"
    )
    if not report.complete:
        raise StageIncompleteError(f"tiling left {len(report.failures)} slides failed; see {tiles_dir}")
    ssl_stages(cfg, start)
    review_stages(cfg, start)
    finetune_stage(cfg, start)
    clinical_stages(cfg, start)
    explain_stage(cfg, start)
    print(f"[demo] done in {time.perf_counter() - start:.1f}s; outputs under {cfg.out_dir}")
    return 0


#: k of the demo's clusterings: the largest is reviewed; all are the non-integrated baseline.
DEMO_KS = (8, 12)

#: Small CPU settings of the self-supervised stages (the demo stays a few minutes on 2 cores).
PRETRAIN = {
    "batch_size": 32,
    "max_steps": 120,
    "queue_size": 1024,
    "crop_fraction": 0.5,
    "checkpoint_every": 60,
    "log_every": 20,
    "split_bn": 4,
}


def ssl_stages(cfg: DemoConfig, start: float) -> None:
    """pretrain (MoCo, highest magnification) -> embed (MoCo and random init) -> evaluate."""
    from mixture_ray.embed.evaluate import evaluate_embeddings
    from mixture_ray.embed.pipeline import run_embedding
    from mixture_ray.ssl.run import run_pretrain

    tiles_dir, mag = cfg.out_dir / "tiles", max(cfg.magnifications)
    pretrain = build_config(
        PretrainConfig,
        {
            "tiles": tiles_dir,
            "out_dir": cfg.out_dir / "pretrain",
            "name": f"elex_{mag:g}x",
            "magnification": mag,
            "seed": cfg.seed,
            "cpus_per_worker": float(cfg.workers),
            **PRETRAIN,
        },
    )
    run = run_pretrain(pretrain)
    print(
        f"[demo] pretrain: step {run.step}, loss {run.loss:.3f}, "
        f"{run.samples_per_s_per_worker:.1f} samples/s -> {run.encoder} "
        f"({time.perf_counter() - start:.1f}s)"
    )
    stores = {"moco": str(run.run_dir), "random": "random"}
    for name, model in stores.items():
        embed = build_config(
            EmbedConfig,
            {
                "tiles": tiles_dir,
                "out_dir": cfg.out_dir / f"embeddings_{name}",
                "model": model,
                "magnification": mag,
                "seed": cfg.seed,
                "torch_threads": cfg.workers,
            },
        )
        report = run_embedding(embed)
        if not report.complete:
            raise StageIncompleteError(f"embedding ({name}) left {len(report.failures)} slides failed")
        print(
            f"[demo] embed ({name}): {report.tiles_embedded} tiles -> {embed.out_dir} "
            f"({time.perf_counter() - start:.1f}s)"
        )
    result = evaluate_embeddings(
        build_config(
            EvaluateEmbeddingsConfig,
            {
                "embeddings": cfg.out_dir / "embeddings_moco",
                "baseline": cfg.out_dir / "embeddings_random",
                "masks": cfg.out_dir / "cohort" / "masks",
                "tiles": tiles_dir,
                "magnification": mag,
                "out": cfg.out_dir / "evaluate_embeddings.json",
                "seed": cfg.seed,
            },
        )
    )
    print(
        f"[demo] evaluate-embeddings on {result.n_tiles} tiles, k={result.k}: "
        f"MoCo NMI {result.trained.nmi:.3f} ARI {result.trained.ari:.3f} | "
        f"random init NMI {result.baseline.nmi:.3f} ARI {result.baseline.ari:.3f}"
    )


def review_stages(cfg: DemoConfig, start: float) -> None:
    """cluster (MoCo embeddings) -> montages + review page + oracle mapping -> integrate."""
    import json

    from mixture_ray.cluster.stage import run_cluster
    from mixture_ray.integrate import run_integrate
    from mixture_ray.review.stage import run_review

    clusters = cfg.out_dir / "clusters"
    cluster = build_config(
        ClusterConfig,
        {"embeddings": cfg.out_dir / "embeddings_moco", "out_dir": clusters, "ks": list(DEMO_KS),
         "seed": cfg.seed},
    )
    metrics = run_cluster(cluster).metrics
    print(f"[demo] cluster: k={list(metrics.k)} -> {clusters} ({time.perf_counter() - start:.1f}s)")
    cohort = cfg.out_dir / "cohort"
    findings = [f["name"] for f in json.loads((cohort / "findings.json").read_text())]
    review = build_config(
        ReviewConfig,
        {
            "clusters": clusters,
            "tiles": cfg.out_dir / "tiles",
            "out_dir": cfg.out_dir / "review",
            "findings": findings,
            "ks": [DEMO_KS[-1]],
            "per_cluster": 60,
            "oracle_cohort": cohort,
            "seed": cfg.seed,
        },
    )
    pages = run_review(review)
    print(
        f"[demo] review: open {pages.pages[0]} in a browser; oracle mapping (a simulated pathologist) "
        f"-> {pages.oracle_mappings[0]} ({time.perf_counter() - start:.1f}s)"
    )
    labels = run_integrate(
        build_config(
            IntegrateConfig,
            {"mappings": [pages.oracle_mappings[0]], "out_dir": cfg.out_dir / "labels", "findings": findings},
        )
    )
    print(f"[demo] integrate: {labels.counts} -> {labels.path} ({time.perf_counter() - start:.1f}s)")


def finetune_stage(cfg: DemoConfig, start: float) -> None:
    """Fine-tune the MoCo ElEx on the integrated (oracle) labels into a finding classifier."""
    from mixture_ray.finetune.run import run_finetune

    mag = max(cfg.magnifications)
    finetune = build_config(
        FinetuneConfig,
        {
            "labels": cfg.out_dir / "labels",
            "tiles": cfg.out_dir / "tiles",
            "out_dir": cfg.out_dir / "finetune",
            "name": f"classifier_{mag:g}x",
            "model": str(cfg.out_dir / "pretrain" / f"elex_{mag:g}x"),
            "magnification": mag,
            "image_size": min(cfg.tile_size, 64),
            "epochs": 2,
            "batch_size": 32,
            "cpus_per_worker": float(cfg.workers),
            "seed": cfg.seed,
        },
    )
    result = run_finetune(finetune)
    print(
        f"[demo] finetune: best epoch {result.best_epoch}, validation balanced accuracy "
        f"{result.val_balanced_accuracy:.3f} -> {result.classifier} ({time.perf_counter() - start:.1f}s)"
    )


def clinical_stages(cfg: DemoConfig, start: float) -> None:
    """A second cohort: tile every tissue tile -> classify -> maps -> cases (+ baseline) -> stats."""
    from mixture_ray.cases.stage import run_cases
    from mixture_ray.classify.pipeline import run_classify
    from mixture_ray.embed.pipeline import run_embedding
    from mixture_ray.maps.stage import run_maps
    from mixture_ray.stats.stage import run_stats
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.tiling.pipeline import run_tiling

    root, mag = cfg.out_dir / "analysis", max(cfg.magnifications)
    cohort, label = root / "cohort", f"{mag:g}x"
    if not (cohort / "manifest.csv").exists():
        size = cfg.analysis_slide_px
        write_cohort(build_config(SynthConfig, {"out_dir": cohort, "n_cases": cfg.analysis_cases,
                                                "width": size, "height": size, "seed": cfg.seed + 1}))
    tiles = run_tiling(build_config(TileConfig, {
        "manifest": cohort / "manifest.csv", "out_dir": root / "tiles", "tile_size": cfg.tile_size,
        "magnifications": [mag], "max_tiles_per_slide": 0, "max_background": 0.7,
        "workers": cfg.workers, "seed": cfg.seed}))
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
        "clusters": cfg.out_dir / "clusters", "baseline_ks": list(DEMO_KS)}))
    stats = run_stats(build_config(StatsConfig, {
        "frequencies": root / "cases", "baseline_dir": root / "cases" / "baseline",
        "baseline_ks": list(DEMO_KS), "clinical": cohort / "clinical.csv", "out_dir": root / "stats",
        "feature_sets": [label], "cox_feature_set": label, "subgroup_column": "diagnosis",
        "rf_trees": 200, "seed": cfg.seed}))
    best, base = stats.summary["best_integrated"], stats.summary["best_baseline"] or {}
    print(f"[demo] cases + stats: integrated AUC {best['auc']:.3f}, best baseline AUC "
          f"{base.get('auc', float('nan')):.3f}, DeLong p "
          f"{stats.summary['delong_p_best_integrated_vs_best_baseline']}; report {stats.report} "
          f"({time.perf_counter() - start:.1f}s)")


def explain_stage(cfg: DemoConfig, start: float) -> None:
    """Activation clustering known-truth check on its own small synthetic cohort."""
    from mixture_ray.explain.known_truth import known_truth_check

    result = known_truth_check(
        cfg.out_dir / "explain",
        n_cases=3,
        slide_px=1024,
        n_classes=(4,),
        per_slide=120,
        epochs=2,
        seed=cfg.seed,
    )
    k4 = result["analysis"]["k4"]
    print(
        f"[demo] explain: best IoU per NMF class {k4['truth']['per_class']}, "
        f"logistic-regression AUC {k4['logistic'].get('auc')} ({time.perf_counter() - start:.1f}s)"
    )
