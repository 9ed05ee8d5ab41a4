"""`mixture-ray demo`: run the pipeline end to end on a small synthetic cohort."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mixture_ray.cases.config import CasesConfig
from mixture_ray.classify.config import ClassifyConfig
from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig, EvaluateEmbeddingsConfig
from mixture_ray.errors import StageIncompleteError
from mixture_ray.finetune.config import FinetuneConfig
from mixture_ray.maps.config import MapsConfig
from mixture_ray.pretrain.config import PretrainConfig
from mixture_ray.qc.config import QcConfig
from mixture_ray.report import Failure, Report
from mixture_ray.review.config import IntegrateConfig, ReviewConfig
from mixture_ray.run_report.config import RunReportConfig
from mixture_ray.stats.config import SplitConfig, StatsConfig
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


@dataclasses.dataclass
class DemoHeadline(Report):
    """What the demo tells a person at the end: where to look, and the known-truth figures."""

    out_dir: Path
    complete: bool = True
    failures: tuple[Failure, ...] = ()
    seconds: float = 0.0
    review_page: str = ""
    qc_page: str = ""
    stats_report: str = ""
    maps: str = ""
    nmi_moco: float = float("nan")
    nmi_random: float = float("nan")
    map_agreement: float = float("nan")
    auc_integrated: float = float("nan")
    auc_integrated_ci: tuple[float, float] = (float("nan"), float("nan"))
    auc_baseline: float = float("nan")
    delong_p: float = float("nan")
    test_cases: int = 0
    auc_baseline_all_cases: float = float("nan")
    auc_baseline_nested: float = float("nan")
    explain_classes: list[tuple[int, str, float]] = dataclasses.field(default_factory=list)
    explain_auc: float = float("nan")
    explain_seeds: list[int] = dataclasses.field(default_factory=list)
    explain_spread: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """The closing block: paths first, then one plain line per headline figure."""
        out_dir = self.out_dir
        iou = ", ".join(f"class {c}: {name} {value:.2f}" for c, name, value in self.explain_classes)
        low, high = self.auc_integrated_ci
        verdict = "significant" if self.delong_p < 0.05 else "no significant difference"
        return "\n".join([
            f"[demo] done in {self.seconds / 60:.1f} min; every output is under {out_dir}",
            "[demo] look at:",
            f"  slide quality control (pass / flag / fail per slide): {self.qc_page}",
            f"  review page (assign clusters to findings): {self.review_page}",
            f"  statistics report: {self.stats_report}",
            f"  finding maps, one PNG per slide: {self.maps}",
            "[demo] known-truth summary (synthetic cohorts with planted findings):",
            f"  embeddings: k-means NMI with the planted findings {self.nmi_moco:.2f} after MoCo "
            f"pretraining vs {self.nmi_random:.2f} for a random network (1 = perfect)",
            f"  finding maps: {self.map_agreement:.0%} of tiles carry their planted finding",
            f"  diagnosis: integrated findings AUC {self.auc_integrated:.2f} (95% CI {low:.2f}-{high:.2f}) "
            f"vs best non-integrated baseline {self.auc_baseline:.2f}; {verdict} "
            f"(DeLong p {self.delong_p:.2f}, {self.test_cases} test cases)",
            f"  leakage: the baseline clustered on the analysis cohort itself reaches AUC "
            f"{self.auc_baseline_nested:.2f} fitted on the training cases only (fold-nested) vs "
            f"{self.auc_baseline_all_cases:.2f} fitted on every case; leakage "
            f"{self.auc_baseline_all_cases - self.auc_baseline_nested:+.2f} (same test cases)",
            *self._explain_lines(iou),
        ])

    def _explain_lines(self, iou: str) -> list[str]:
        if not self.explain_classes:
            return ["  activation clustering: not run (explain: false)"]
        return [f"  activation clustering: each NMF class's best-matching planted finding (IoU): {iou}; "
                f"class weights predict the model's output with AUC {self.explain_auc:.2f}",
                *self._explain_spread()]

    def _explain_spread(self) -> list[str]:
        if not self.explain_spread:
            return []
        parts = [f"{name} {mean:.2f} ± {std:.2f}" for name, (mean, std) in self.explain_spread.items()]
        return [f"  activation clustering over {len(self.explain_seeds)} seeds "
                f"({', '.join(map(str, self.explain_seeds))}), mean ± std: " + ", ".join(parts)]


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
