"""The list of stages: CLI verb -> config class and ``run`` function, imported lazily.

The CLI (:mod:`mixture_ray.cli`), ``python -m mixture_ray`` and multi-stage pipeline jobs
(:mod:`mixture_ray.pipeline.job`) are generated from this one list.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from mixture_ray.report import Report


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One verb: where its config class and its ``run(cfg) -> Report`` live, and what it does."""

    name: str
    config_ref: str
    run_ref: str
    help: str

    def config(self) -> type:
        """The stage's frozen config dataclass (imports its module)."""
        cls: type = _resolve(self.config_ref)
        return cls

    def runner(self) -> Callable[[Any], Report]:
        """The stage's ``run`` function (imports its module, and with it the stage's dependencies)."""
        run: Callable[[Any], Report] = _resolve(self.run_ref)
        return run


def _resolve(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _spec(name: str, package: str, config: str, help: str, run: str = "stage:run") -> StageSpec:
    return StageSpec(name, f"mixture_ray.{package}.config:{config}", f"mixture_ray.{package}.{run}", help)


STAGES: tuple[StageSpec, ...] = (
    _spec("synth", "synth", "SynthConfig", "write a synthetic cohort with planted findings"),
    _spec("qc", "qc", "QcConfig",
          "slide quality control (Ray task per slide): pass/flag/fail table, thumbnails, masks, page"),
    _spec("tile", "tile", "TileConfig", "tile slides into a Parquet tile store"),
    _spec("import-images", "tile", "ImportImagesConfig",
          "an ImageFolder tree of labelled tiles as a tile store", "images:run_import"),
    _spec("pretrain", "pretrain", "PretrainConfig", "MoCo v2 pretraining of a ResNet extractor (Ray Train)"),
    _spec("embed", "embed", "EmbedConfig", "embed tiles with a ResNet checkpoint (Ray Data actors)"),
    _spec("evaluate-embeddings", "embed", "EvaluateEmbeddingsConfig",
          "k-means NMI/ARI of embeddings vs synthetic truth", "evaluate:evaluate_embeddings"),
    _spec("cluster", "cluster", "ClusterConfig", "k-means of the embeddings for a list of k"),
    _spec("review", "review", "ReviewConfig", "montages and a review page per magnification and k"),
    _spec("integrate", "review", "IntegrateConfig", "mapping file(s) -> labelled tile set",
          "integrate:run_integrate"),
    _spec("finetune", "finetune", "FinetuneConfig",
          "fine-tune finding classifiers on labelled tiles (Ray Train)"),
    _spec("classify", "classify", "ClassifyConfig", "predicted finding of every cohort tile (Ray Data)"),
    _spec("maps", "maps", "MapsConfig", "finding map per slide (Ray task per slide) + truth agreement"),
    _spec("cases", "cases", "CasesConfig", "per-case finding frequencies (+ non-integrated baseline)"),
    _spec("split", "stats", "SplitConfig",
          "the train/test case split as a file (for cluster.fit_split and stats.split: fold-nested runs)",
          "split:run_split"),
    _spec("stats", "stats", "StatsConfig", "diagnosis and survival statistics from case frequencies"),
    _spec("explain fit", "explain", "ExplainFitConfig",
          "activation grids of training slides and NMF classes per K", "stage:run_fit"),
    _spec("explain apply", "explain", "ExplainApplyConfig",
          "class weights of the fitted NMF on slides: heatmaps and overlays", "stage:run_apply"),
    _spec("explain analyse", "explain", "ExplainAnalyseConfig",
          "class correlations, logistic regression, GradCAM and truth IoU", "stage:run_analyse"),
    _spec("export", "export", "ExportConfig",
          "QuPath GeoJSON, AnnData .h5ad and TRIDENT/CLAM .h5 from a run's stores"),
    _spec("report", "run_report", "RunReportConfig",
          "one self-contained HTML page of a run folder: cohort, QC, failures, montages, maps, statistics"),
    _spec("pipeline", "pipeline", "PipelineConfig",
          "run several stages in order from one YAML file (all configs checked first)", "job:run"),
    _spec("demo", "pipeline", "DemoConfig", "run the pipeline on small synthetic cohorts (local Ray)",
          "demo:run_demo"),
)

BY_NAME: dict[str, StageSpec] = {spec.name: spec for spec in STAGES}
