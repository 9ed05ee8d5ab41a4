"""One entry point: ``mixture-ray <stage> [--config FILE.yaml] [--set key=value ...] [--key value]``.

Every config key of a stage is also a ``--key`` flag; ``mixture-ray <stage> --help`` lists them
with their defaults. Exit status: 0 complete, 2 bad input or config, 3 partial (some items
failed; see the stage's failures table), 1 unexpected error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mixture_ray.config import (
    CasesConfig,
    ClassifyConfig,
    ClusterConfig,
    DemoConfig,
    EmbedConfig,
    EvaluateEmbeddingsConfig,
    ExplainConfig,
    FinetuneConfig,
    IntegrateConfig,
    MapsConfig,
    PretrainConfig,
    ReviewConfig,
    StatsConfig,
    SynthConfig,
    TileConfig,
    config_fields,
    load_config,
)
from mixture_ray.errors import MixtureRayError

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3


def run_synth(cfg: SynthConfig) -> int:
    """Write a synthetic cohort."""
    from mixture_ray.synth.cohort import write_cohort

    cohort = write_cohort(cfg)
    print(f"synthetic cohort written to {cfg.out_dir}: {cohort.n_cases} cases, {cohort.n_slides} slides")
    print(f"  manifest: {cohort.manifest}\n  clinical: {cohort.clinical}")
    return EXIT_OK


def run_tile(cfg: TileConfig) -> int:
    """Tile slides (or import an image folder) into a Parquet tile store."""
    if cfg.from_images is not None:
        from mixture_ray.tiling.images import import_image_folder

        report = import_image_folder(cfg)
    else:
        from mixture_ray.tiling.pipeline import run_tiling

        report = run_tiling(cfg)
    print(
        f"tile store {report.out_dir}: {report.tiles_written} tiles from {report.slides_committed} "
        f"items ({report.slides_skipped} already done before this run)"
    )
    if not report.complete:
        print(
            f"{len(report.failures)} of {report.slides_requested} items failed; "
            f"see {report.out_dir / 'failures.parquet'}:",
            file=sys.stderr,
        )
        for failure in report.failures[:20]:
            print(f"  {failure.item_id}: {failure.error}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def run_explain(cfg: ExplainConfig) -> int:
    """Activation clustering: fit NMF, apply it to slides, or analyse the classes."""
    from mixture_ray.explain.run import run_explain as explain

    return explain(cfg)


def run_pretrain(cfg: PretrainConfig) -> int:
    """MoCo v2 pretraining of a ResNet feature extractor (resumes a run of the same name)."""
    from mixture_ray.ssl.run import run_pretrain as pretrain

    report = pretrain(cfg)
    print(
        f"pretrain {report.run_dir}: step {report.step} (resumed from {report.start_step}), "
        f"loss {report.loss:.4f}, {report.samples_per_s_per_worker:.1f} samples/s/worker; "
        f"encoder: {report.encoder}"
    )
    return EXIT_OK


def run_embed(cfg: EmbedConfig) -> int:
    """Embed every tile with a ResNet checkpoint (or a random network) on Ray Data actors."""
    from mixture_ray.embed.pipeline import run_embedding

    report = run_embedding(cfg)
    print(
        f"embedding store {report.out_dir}: {report.tiles_embedded} tiles of "
        f"{report.slides_requested} slides ({report.slides_skipped} already done before this run)"
    )
    if not report.complete:
        return _report_failures(report.failures, report.out_dir / "failures.parquet", "slides")
    return EXIT_OK


def run_evaluate_embeddings(cfg: EvaluateEmbeddingsConfig) -> int:
    """NMI/ARI of k-means on trained vs baseline embeddings against synthetic ground truth."""
    from mixture_ray.embed.evaluate import evaluate_embeddings

    result = evaluate_embeddings(cfg)
    print(f"{result.n_tiles} tiles, k={result.k}, findings {result.findings}")
    for name, s in (("trained", result.trained), ("baseline", result.baseline)):
        print(f"  {name:8s} NMI {s.nmi:.3f}  ARI {s.ari:.3f}")
    print("trained beats baseline" if result.trained_wins else "trained does NOT beat baseline")
    return EXIT_OK


def run_cluster(cfg: ClusterConfig) -> int:
    """k-means per magnification for each k (cuML on GPU, scikit-learn on CPU)."""
    from mixture_ray.cluster.stage import run_cluster as cluster

    report = cluster(cfg)
    print(f"clusterings written to {report.out_dir}:")
    columns = ["magnification", "k", "rows", "inertia", "silhouette", "seconds"]
    print(report.metrics[columns].to_string(index=False))
    return EXIT_OK


def run_review(cfg: ReviewConfig) -> int:
    """Write montages and the self-contained review page(s)."""
    from mixture_ray.review.stage import run_review as review

    report = review(cfg)
    for page in report.pages:
        print(f"review page: {page}")
    for mapping in report.oracle_mappings:
        print(f"oracle mapping (simulated pathologist): {mapping}")
    return EXIT_OK


def run_integrate(cfg: IntegrateConfig) -> int:
    """Merge clusters into findings from mapping file(s)."""
    from mixture_ray.integrate import run_integrate as integrate

    report = integrate(cfg)
    print(f"labelled tiles: {report.path} {report.counts}")
    return EXIT_OK


def run_finetune(cfg: FinetuneConfig) -> int:
    """Fine-tune an ElEx + linear layer on the integrated labels (Ray Train; resumes by name)."""
    from mixture_ray.finetune.run import run_finetune as finetune

    report = finetune(cfg)
    print(
        f"finetune {report.run_dir}: step {report.step} (resumed from {report.start_step}), "
        f"{report.n_train} train / {report.n_val} validation tiles, classes {list(report.classes)}; "
        f"best epoch {report.best_epoch}: validation balanced accuracy {report.val_balanced_accuracy:.3f}"
    )
    print(f"  classifier: {report.classifier}\n  metrics: {report.run_dir / 'metrics.json'}")
    return EXIT_OK


def _report_failures(failures: Sequence[Any], table: Any, what: str) -> int:
    """Print the first failures (item: reason) to stderr; returns EXIT_PARTIAL."""
    print(f"{len(failures)} {what} failed; see {table}:", file=sys.stderr)
    for failure in failures[:20]:
        print(f"  {failure.item_id}: {failure.error}", file=sys.stderr)
    return EXIT_PARTIAL


def run_classify(cfg: ClassifyConfig) -> int:
    """Classify every tissue tile of a cohort with a fine-tuned classifier (Ray Data actors)."""
    from mixture_ray.classify.pipeline import run_classify as classify

    report = classify(cfg)
    print(
        f"prediction store {report.out_dir}: {report.tiles_classified} tiles of {report.slides_requested} "
        f"slides at {report.magnification}x ({report.slides_skipped} already done), "
        f"classes {list(report.classes)}"
    )
    if not report.complete:
        return _report_failures(report.failures, report.out_dir / "failures.parquet", "slides")
    return EXIT_OK


def run_maps(cfg: MapsConfig) -> int:
    """Draw one finding map per slide (Ray task per slide); agreement with synthetic truth."""
    from mixture_ray.maps.stage import run_maps as maps

    report = maps(cfg)
    print(f"maps {report.out_dir}: {len(report.maps)} slides drawn")
    if "accuracy" in report.agreement and len(report.agreement):
        print(f"  tile agreement with ground truth: mean {report.agreement['accuracy'].mean():.3f} "
              f"(per slide in {report.out_dir / 'agreement.csv'})")
    if not report.complete:
        return _report_failures(report.failures, report.out_dir / "failures.parquet", "slides")
    return EXIT_OK


def run_cases(cfg: CasesConfig) -> int:
    """Per-case finding counts and frequencies (and the non-integrated baseline tables)."""
    from mixture_ray.cases.stage import run_cases as cases

    report = cases(cfg)
    print(f"cases {report.out_dir}: {len(report.frequencies)} cases x {report.frequencies.shape[1]} "
          f"frequency columns; baseline k {sorted(report.baseline)}")
    if report.empty:
        print(f"  {len(report.empty)} case/magnification groups had no counted tile: {report.empty[:5]}",
              file=sys.stderr)
    return EXIT_OK


def run_stats(cfg: StatsConfig) -> int:
    """Diagnosis (RF/SVM, AUC with DeLong CI) and survival (KM, log-rank, Cox) from case frequencies."""
    from mixture_ray.stats.stage import run_stats as stats

    report = stats(cfg)
    best, base = report.summary["best_integrated"], report.summary["best_baseline"]
    print(f"stats {report.out_dir}: {report.summary['n_cases']} cases ({report.summary['n_events']} events), "
          f"{report.summary['n_test']} in the test split")
    print(f"  best integrated: {best['feature_set']} {best['model']} AUC {best['auc']:.3f} "
          f"({best['ci_low']:.3f}-{best['ci_high']:.3f})")
    if base is not None:
        print(f"  best baseline: {base['feature_set']} {base['model']} AUC {base['auc']:.3f} "
              f"({base['ci_low']:.3f}-{base['ci_high']:.3f}); DeLong p "
              f"{report.summary['delong_p_best_integrated_vs_best_baseline']:.3g}")
    logrank = report.summary["logrank"]
    if logrank.get("p") is not None:
        print(f"  log-rank by out-of-fold predicted class: p {logrank['p']:.3g}")
    for note in report.notes:
        print(f"  note: {note}", file=sys.stderr)
    print(f"  report: {report.report}")
    return EXIT_OK


def run_demo(cfg: DemoConfig) -> int:
    """Run every stage on a small synthetic cohort."""
    from mixture_ray.demo import run_demo as demo

    return demo(cfg)


@dataclasses.dataclass(frozen=True)
class Stage:
    """A CLI verb: its config class and the function that runs it."""

    config: type
    run: Callable[[Any], int]
    summary: str


STAGES: dict[str, Stage] = {
    "synth": Stage(SynthConfig, run_synth, "write a synthetic cohort with planted findings"),
    "tile": Stage(TileConfig, run_tile, "tile slides or an image folder into Parquet"),
    "explain": Stage(ExplainConfig, run_explain,
                     "explain fit|apply|analyse: NMF classes of CNN activations on slides"),
    "pretrain": Stage(PretrainConfig, run_pretrain, "MoCo v2 pretraining of a ResNet extractor (Ray Train)"),
    "embed": Stage(EmbedConfig, run_embed, "embed tiles with a ResNet checkpoint (Ray Data actors)"),
    "evaluate-embeddings": Stage(
        EvaluateEmbeddingsConfig, run_evaluate_embeddings, "k-means NMI/ARI of embeddings vs synthetic truth"
    ),
    "cluster": Stage(ClusterConfig, run_cluster, "k-means of the embeddings for a list of k"),
    "review": Stage(ReviewConfig, run_review, "montages and a review page per magnification and k"),
    "integrate": Stage(IntegrateConfig, run_integrate, "mapping file(s) -> labelled tile set"),
    "finetune": Stage(FinetuneConfig, run_finetune,
                      "fine-tune finding classifiers on labelled tiles (Ray Train)"),
    "classify": Stage(ClassifyConfig, run_classify, "predicted finding of every cohort tile (Ray Data)"),
    "maps": Stage(MapsConfig, run_maps, "finding map per slide (Ray task per slide) + truth agreement"),
    "cases": Stage(CasesConfig, run_cases, "per-case finding frequencies (+ non-integrated baseline)"),
    "stats": Stage(StatsConfig, run_stats, "diagnosis and survival statistics from case frequencies"),
    "demo": Stage(DemoConfig, run_demo, "run the pipeline on a small synthetic cohort (local Ray)"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: one sub-command per stage, one flag per config key."""
    parser = argparse.ArgumentParser(prog="mixture-ray", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, stage in STAGES.items():
        doc = (stage.config.__doc__ or "").strip()
        p = sub.add_parser(name, help=stage.summary, description=doc)
        p.add_argument("--config", help="YAML file of config keys for this stage")
        p.add_argument(
            "--verbose",
            action="store_true",
            help="show Ray's own log lines and progress bars (default: they go to <out_dir>/_logs/ray.log)",
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one config key (repeatable); values are YAML, e.g. magnifications=[5,20]",
        )
        for key, (_, field) in config_fields(stage.config).items():
            default = field.default if field.default is not dataclasses.MISSING else None
            if field.default_factory is not dataclasses.MISSING:
                default = list(field.default_factory())
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            text = field.metadata.get("help", "")
            text += " (required)" if required else f" (default: {default})"
            p.add_argument(_flag(key), dest=f"opt_{key}", metavar="VALUE", help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["explain"] and len(argv) > 1 and not argv[1].startswith("-"):
        argv = ["explain", "--action", *argv[1:]]  # `explain fit ...` -> `explain --action fit`
    args = build_parser().parse_args(argv)
    stage = STAGES[args.stage]
    overrides = list(args.set)
    for key in config_fields(stage.config):
        value = getattr(args, f"opt_{key}")
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        cfg: Any = load_config(stage.config, args.config, overrides)
        from mixture_ray.ray_runtime import route_ray_logs

        out_dir = getattr(cfg, "out_dir", None)
        route_ray_logs(out_dir / "_logs" / "ray.log" if out_dir is not None else None, verbose=args.verbose)
        return stage.run(cfg)
    except MixtureRayError as exc:
        print(f"mixture-ray {args.stage}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"mixture-ray {args.stage}: interrupted; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
