"""`mixture-ray demo`: run the pipeline end to end on a small synthetic cohort."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig, EvaluateEmbeddingsConfig
from mixture_ray.errors import StageIncompleteError
from mixture_ray.finetune.config import FinetuneConfig
from mixture_ray.pipeline.demo_analysis import clinical_stages
from mixture_ray.pipeline.demo_headline import DemoHeadline
from mixture_ray.pretrain.config import PretrainConfig
from mixture_ray.qc.config import QcConfig
from mixture_ray.review.config import IntegrateConfig, ReviewConfig
from mixture_ray.run_report.config import RunReportConfig
from mixture_ray.store.folder import write_json_atomic
from mixture_ray.store.schemas import magnification_label
from mixture_ray.synth.config import SynthConfig
from mixture_ray.tile.config import TileConfig

if TYPE_CHECKING:
    from mixture_ray.pipeline.config import DemoConfig


def run_demo(cfg: DemoConfig) -> DemoHeadline:
    """Run every stage on small synthetic cohorts, then print what to look at and the figures.

    Args:
        cfg: the demo settings; ``cfg.out_dir`` receives every stage's output folder.

    Returns:
        The headline: where to look and the known-truth figures (a failed stage raises, and the CLI
        exits 2 or 3).
    """
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.tile.stage import run as run_tiling

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
            "version": cfg.cohort_version,
        },
    )
    if not (cohort_dir / "manifest.csv").exists():
        write_cohort(synth)
    print(f"[demo] synth: {cohort_dir} ({time.perf_counter() - start:.1f}s)")
    qc_page = qc_stage(cfg, start)
    tile = build_config(
        TileConfig,
        {
            "manifest": cohort_dir / "manifest.csv",
            "out_dir": tiles_dir,
            "tile_size": cfg.tile_size,
            "magnifications": list(cfg.magnifications),
            "max_tiles_per_slide": cfg.max_tiles_per_slide,
            "pool.workers": cfg.workers,
            "seed": cfg.seed,
            "qc": cfg.out_dir / "qc",
        },
    )
    report = run_tiling(tile)
    print(
        f"[demo] tile: {report.tiles_written} tiles from {report.slides_committed} slides -> {tiles_dir} "
        f"({time.perf_counter() - start:.1f}s)"
    )
    if not report.complete:
        raise StageIncompleteError(f"tiling left {len(report.failures)} slides failed; see {tiles_dir}")
    headline = DemoHeadline(out_dir=cfg.out_dir, qc_page=qc_page)
    pretrain_stages(cfg, start, headline)
    review_stages(cfg, start, headline)
    finetune_stage(cfg, start)
    clinical_stages(cfg, start, headline)
    if cfg.explain:
        explain_stage(cfg, start, headline)
    headline.seconds = time.perf_counter() - start
    write_json_atomic(cfg.out_dir / "summary.json", dataclasses.asdict(headline))
    from mixture_ray.run_report.stage import run as run_report

    print(f"[demo] run report: {run_report(build_config(RunReportConfig, {'run_dir': cfg.out_dir})).out}")
    return headline


def qc_stage(cfg: DemoConfig, start: float) -> str:
    """Slide QC of the demo cohort, kept cheap (small thumbnails, 4 sampled tiles); returns its page."""
    from mixture_ray.qc.stage import run as run_qc

    qc = build_config(QcConfig, {"manifest": cfg.out_dir / "cohort" / "manifest.csv",
                                 "out_dir": cfg.out_dir / "qc", "thumbnail_px": 512, "tiles_per_slide": 4,
                                 "seed": cfg.seed,
                                 "magnifications": list(cfg.magnifications)})
    report = run_qc(qc)
    counts = ", ".join(f"{int((report.table.decision == d).sum())} {d}" for d in ("pass", "flag", "fail"))
    print(f"[demo] qc: {counts} -> {report.page} ({time.perf_counter() - start:.1f}s)")
    return str(report.page)



#: Small CPU settings of the self-supervised stages (the demo stays a few minutes on 2 cores).
PRETRAIN = {
    "batch_size": 32,
    "queue_size": 1024,
    "crop_fraction": 0.5,
    "train.keep_checkpoints": 1,
    "train.log_every": 20,
    "split_bn": 4,
}


def pretrain_stages(cfg: DemoConfig, start: float, headline: DemoHeadline) -> None:
    """Pretrain (MoCo, highest magnification) -> embed (MoCo and random init) -> evaluate."""
    from mixture_ray.embed.evaluate import evaluate_embeddings
    from mixture_ray.embed.stage import run as run_embedding
    from mixture_ray.pretrain.stage import run as run_pretrain

    tiles_dir, mag = cfg.out_dir / "tiles", max(cfg.magnifications)
    pretrain = build_config(
        PretrainConfig,
        {
            "tiles": tiles_dir,
            "out_dir": cfg.out_dir / "pretrain",
            "name": f"elex_{magnification_label(mag)}",
            "magnification": mag,
            "seed": cfg.seed,
            # One CPU per worker: the rest feed it (Ray Data reads and decodes the labelled tiles); the
            # worker still trains on every core of its node (train.torch_threads: 0).
            "train.cpus_per_worker": 1.0,
            **PRETRAIN,
            "max_steps": cfg.pretrain_steps,
            "train.checkpoint_every": cfg.pretrain_steps,
            "color_jitter": cfg.color_jitter,
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
    headline.nmi_moco, headline.nmi_random = result.trained.nmi, result.baseline.nmi


def review_stages(cfg: DemoConfig, start: float, headline: DemoHeadline) -> None:
    """Cluster (MoCo embeddings) -> montages + review page + oracle mapping -> integrate."""
    import json

    from mixture_ray.cluster.stage import run as run_cluster
    from mixture_ray.review.integrate import run_integrate
    from mixture_ray.review.stage import run as run_review

    clusters = cfg.out_dir / "clusters"
    cluster = build_config(
        ClusterConfig,
        {"embeddings": cfg.out_dir / "embeddings_moco", "out_dir": clusters, "ks": list(cfg.ks),
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
            "ks": [max(cfg.ks)],
            "per_cluster": 60,
            "oracle_cohort": cohort,
            "seed": cfg.seed,
        },
    )
    pages = run_review(review)
    headline.review_page = str(pages.pages[0])
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
    counts = ", ".join(f"{name} {n}" for name, n in labels.counts.items())
    print(f"[demo] integrate: {counts} tiles -> {labels.path} ({time.perf_counter() - start:.1f}s)")


def finetune_stage(cfg: DemoConfig, start: float) -> None:
    """Fine-tune the MoCo ElEx on the integrated (oracle) labels into a finding classifier."""
    from mixture_ray.finetune.stage import run as run_finetune

    mag = max(cfg.magnifications)
    finetune = build_config(
        FinetuneConfig,
        {
            "labels": cfg.out_dir / "labels",
            "tiles": cfg.out_dir / "tiles",
            "out_dir": cfg.out_dir / "finetune",
            "name": f"classifier_{magnification_label(mag)}",
            "model": str(cfg.out_dir / "pretrain" / f"elex_{magnification_label(mag)}"),
            "magnification": mag,
            "image_size": min(cfg.tile_size, 64),
            "epochs": 2,
            "train.keep_checkpoints": 1,
            "batch_size": 32,
            # One CPU per worker: the rest feed it (Ray Data reads and decodes the labelled tiles); the
            # worker still trains on every core of its node (train.torch_threads: 0).
            "train.cpus_per_worker": 1.0,
            "seed": cfg.seed,
        },
    )
    result = run_finetune(finetune)
    print(
        f"[demo] finetune: best epoch {result.best_epoch}, validation balanced accuracy "
        f"{result.val_balanced_accuracy:.3f} -> {result.classifier} ({time.perf_counter() - start:.1f}s)"
    )


def explain_stage(cfg: DemoConfig, start: float, headline: DemoHeadline) -> None:
    """Activation clustering known-truth check on its own small synthetic cohort, over 3 seeds."""
    from mixture_ray.pipeline.explain_truth import known_truth_spread

    seeds = [cfg.seed, cfg.seed + 1, cfg.seed + 2]
    result = known_truth_spread(
        cfg.out_dir / "explain",
        seeds=seeds,
        n_cases=3,
        slide_px=1024,
        n_classes=(4,),
        per_slide=120,
        epochs=2,
    )
    k4 = result["analysis"]["k4"]
    headline.explain_classes = [(int(row["cls"]), str(row["best_finding"]), float(row["best_iou"]))
                                for row in k4["truth"]["per_class"]]
    auc = k4["logistic"].get("auc")
    headline.explain_auc = float("nan") if auc is None else float(auc)
    spread = k4["seed_spread"]
    finding = result["detector"]["finding"]
    names = {f"iou_{finding}": f"{finding} IoU", f"corr_{finding}": f"{finding} correlation",
             "auc": "AUC", "gradcam_iou_pred1": "GradCAM IoU", "gradcam_corr_pred1": "GradCAM correlation"}
    headline.explain_seeds = spread["seeds"]
    headline.explain_spread = {label: (spread["mean"][key], spread["std"][key])
                               for key, label in names.items() if key in spread["mean"]}
    print(f"[demo] explain: NMF K=4 fitted and applied for seeds {seeds} "
          f"({time.perf_counter() - start:.1f}s)")
