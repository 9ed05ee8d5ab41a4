"""Typed, validated stage configs loaded from YAML with ``key=value`` overrides.

Every stage has one frozen dataclass here. ``load_config(TileConfig, path, ["max_tiles_per_slide=50"])``
reads the YAML file (if any), applies the overrides, coerces each value to the declared type and
runs the class's ``validate``. Unknown keys and bad values raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from mixture_ray.errors import ConfigError
from mixture_ray.store.paths import absolute_path

C = TypeVar("C")


def _help(text: str, default: Any = dataclasses.MISSING, *, path_unless: tuple[str, ...] = ()) -> Any:
    """A dataclass field with a help string (shown by ``mixture-ray <stage> --help``).

    ``path_unless`` marks a string field that holds a path unless it is one of these keywords
    (``model: random``); such a path is made absolute like every ``Path`` field.
    """
    metadata: dict[str, Any] = {"help": text}
    if path_unless:
        metadata["path_unless"] = path_unless
    if isinstance(default, list | tuple):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """`mixture-ray synth`: write a synthetic cohort with planted findings, diagnosis and survival."""

    out_dir: Path = _help("folder that receives slides/, masks/, manifest.csv, clinical.csv")
    n_cases: int = _help("number of cases", 8)
    min_slides_per_case: int = _help("fewest slides per case", 1)
    max_slides_per_case: int = _help("most slides per case", 3)
    width: int = _help("slide width at level 0 in pixels", 4096)
    height: int = _help("slide height at level 0 in pixels", 4096)
    mpp: float = _help("microns per pixel at level 0 (written as MPP in the description)", 0.5)
    app_mag: float = _help("objective power written as AppMag", 20.0)
    levels: int = _help("pyramid levels (each 4x smaller than the one above)", 3)
    tile_px: int = _help("TIFF tile edge in pixels", 256)
    jpeg_quality: int = _help("JPEG quality of the TIFF tiles", 85)
    mask_downsample: int = _help("ground-truth mask pixel = this many level-0 pixels", 16)
    seed: int = _help("random seed; the same seed gives the same cohort", 0)

    def validate(self) -> None:
        _positive(self, "n_cases", "width", "height", "levels", "tile_px", "mask_downsample")
        _positive(self, "mpp", "app_mag", "min_slides_per_case", "max_slides_per_case")
        if self.min_slides_per_case > self.max_slides_per_case:
            raise ConfigError(
                "min_slides_per_case: must be <= max_slides_per_case "
                f"(got {self.min_slides_per_case} > {self.max_slides_per_case})"
            )
        if self.tile_px % 16:
            raise ConfigError(f"tile_px: must be a multiple of 16 for TIFF tiles (got {self.tile_px})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality: must be in 1..100 (got {self.jpeg_quality})")
        smallest = min(self.width, self.height) // 4 ** (self.levels - 1)
        if smallest < 16:
            raise ConfigError(
                f"levels: {self.levels} levels of a {self.width}x{self.height} slide leave a "
                f"level under 16 px; use fewer levels or a larger slide"
            )


TileEncoding = Literal["jpeg", "png", "none"]
Backend = Literal["auto", "openslide", "tiffslide", "cucim"]


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """`mixture-ray tile`: cut slides (or an ImageFolder tree) into a Parquet tile store."""

    out_dir: Path = _help("tile store folder (created; reruns skip slides already committed)")
    manifest: Path | None = _help(
        "CSV/Parquet manifest (slide_id, case_id, path[, mpp]) or a folder of slides", None
    )
    from_images: Path | None = _help("ImageFolder tree to import instead of slides", None)
    magnifications: tuple[float, ...] = _help(
        "objective magnifications to tile at; mpp = 10 / magnification", [2.5, 5.0, 20.0]
    )
    tile_size: int = _help("tile edge in pixels at the target magnification", 280)
    stride: int = _help("step between tiles in pixels at the target magnification; 0 = tile_size", 0)
    background_threshold: int = _help("a pixel is background when all of R, G, B exceed this", 220)
    max_background: float = _help("drop tiles whose background fraction exceeds this", 0.9)
    max_tiles_per_slide: int = _help(
        "keep at most this many tiles per slide and magnification, drawn with the seed; 0 = all", 300
    )
    encoding: TileEncoding = _help("tile pixels stored as jpeg, png, or none (coordinates only)", "jpeg")
    jpeg_quality: int = _help("JPEG quality when encoding=jpeg", 90)
    backend: Backend = _help("slide reader: auto, openslide, tiffslide, cucim", "auto")
    workers: int = _help("pixel-reading actors (one slide handle cache each)", 2)
    actor_cpus: float = _help("logical CPUs each pixel actor reserves in Ray's scheduler", 1.0)
    batch_size: int = _help("tiles per Ray Data batch in the pixel stage", 32)
    tile_cache_mb: int = _help("decoded native-tile cache per open slide and level, in MiB", 64)
    slides_per_commit: int = _help("slides written and committed together (resume granularity)", 16)
    seed: int = _help("random seed for tile sampling", 0)

    def validate(self) -> None:
        if (self.manifest is None) == (self.from_images is None):
            raise ConfigError("manifest / from_images: give exactly one of them")
        if not self.magnifications:
            raise ConfigError("magnifications: give at least one magnification")
        for mag in self.magnifications:
            if not 0 < mag <= 100:
                raise ConfigError(f"magnifications: {mag} is not a magnification in (0, 100]")
        _positive(self, "tile_size", "workers", "batch_size", "slides_per_commit")
        _positive(self, "actor_cpus", "tile_cache_mb")
        if self.stride < 0:
            raise ConfigError(f"stride: must be >= 0 (got {self.stride})")
        if not 0 <= self.background_threshold <= 255:
            raise ConfigError(f"background_threshold: must be in 0..255 (got {self.background_threshold})")
        if not 0.0 <= self.max_background <= 1.0:
            raise ConfigError(f"max_background: must be in [0, 1] (got {self.max_background})")
        if self.max_tiles_per_slide < 0:
            raise ConfigError(f"max_tiles_per_slide: must be >= 0 (got {self.max_tiles_per_slide})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality: must be in 1..100 (got {self.jpeg_quality})")

    @property
    def step(self) -> int:
        """Stride in target pixels (tile_size when stride is 0)."""
        return self.stride or self.tile_size


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """`mixture-ray demo`: the whole pipeline on a small synthetic cohort on the local machine."""

    out_dir: Path = _help("folder for every stage's output (cohort/, tiles/, ...)", Path("demo_out"))
    n_cases: int = _help("synthetic cases", 6)
    slide_px: int = _help("synthetic slide edge in pixels at level 0 (20x, 0.5 um/px)", 3072)
    tile_size: int = _help("tile edge in pixels", 128)
    magnifications: tuple[float, ...] = _help("magnifications to tile at", [5.0, 20.0])
    max_tiles_per_slide: int = _help("tiles kept per slide and magnification", 200)
    workers: int = _help("pixel-reading actors", 2)
    analysis_cases: int = _help(
        "cases of the second synthetic cohort that classify -> maps -> cases -> stats analyse", 40
    )
    analysis_slide_px: int = _help("slide edge in pixels of the analysis cohort", 1024)
    seed: int = _help("random seed of the cohort and the sampling", 0)

    def validate(self) -> None:
        _positive(self, "n_cases", "slide_px", "tile_size", "max_tiles_per_slide", "workers")
        _positive(self, "analysis_cases", "analysis_slide_px")


EmbeddingColumn = Literal["features", "head"]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """`mixture-ray pretrain`: MoCo v2 self-supervised ResNet (an ElEx) on a tile store (Ray Train)."""

    tiles: Path = _help("tile store folder written by `mixture-ray tile`")
    out_dir: Path = _help("Ray Train storage folder; the run lives in out_dir/name")
    name: str = _help("run name; rerunning with the same name resumes from its last checkpoint", "elex")
    magnification: float | None = _help("train on tiles of this magnification only; null = all", None)
    arch: str = _help("torchvision ResNet: resnet18, resnet34 or resnet50", "resnet18")
    dim: int = _help("MoCo output dimension", 128)
    mlp: bool = _help("use a 2-layer MLP projection head (MoCo v2) instead of one linear layer", True)
    queue_size: int = _help("MoCo queue length K (negative keys)", 4096)
    momentum: float = _help("key-encoder momentum m", 0.99)
    temperature: float = _help("softmax temperature T", 0.1)
    lr: float = _help("Adam learning rate", 1e-4)
    batch_size: int = _help("tiles per worker per step", 64)
    max_steps: int = _help("total optimiser steps of the run (a resumed run continues to this)", 1000)
    checkpoint_every: int = _help("report a checkpoint every this many steps (and at the end)", 100)
    keep_checkpoints: int = _help("checkpoints kept in the run folder", 2)
    crop_fraction: float = _help("centre crop edge / tile edge after rotation (224/280 = 0.8)", 0.8)
    rotation: float = _help("random rotation within +/- this many degrees", 20.0)
    color_jitter: float = _help("colour jitter strength (brightness/contrast/saturation); 0 = off", 0.0)
    split_bn: int = _help("split batch norm groups emulating shuffle-BN with one worker", 8)
    workers: int = _help("Ray Train workers (>1: DDP with cross-worker key shuffle)", 1)
    cpus_per_worker: float = _help("CPUs each training worker reserves", 1.0)
    use_gpu: bool | None = _help("train on GPUs; null = when the cluster has them", None)
    cache_tiles: bool = _help("decode tiles once and keep them in Ray's object store", True)
    max_failures: int = _help("worker failures retried from the last checkpoint", 1)
    log_every: int = _help("print loss and throughput every this many steps", 20)
    fail_at_step: int = _help("testing only: the first attempt kills its worker at this step", 0)
    seed: int = _help("random seed (weights, queue, augmentation)", 0)

    def validate(self) -> None:
        _positive(self, "dim", "queue_size", "temperature", "lr", "batch_size", "max_steps")
        _positive(self, "checkpoint_every", "keep_checkpoints", "workers", "cpus_per_worker", "log_every")
        if self.arch not in ("resnet18", "resnet34", "resnet50"):
            raise ConfigError(f"arch: {self.arch!r} is not one of resnet18, resnet34, resnet50")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum: must be in [0, 1) (got {self.momentum})")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(f"crop_fraction: must be in (0, 1] (got {self.crop_fraction})")
        if not 0.0 <= self.rotation <= 180.0 or self.color_jitter < 0:
            raise ConfigError("rotation: must be in [0, 180]; color_jitter: must be >= 0")
        if self.split_bn < 1 or (self.workers == 1 and self.batch_size % self.split_bn):
            raise ConfigError(
                f"split_bn: must be >= 1 and divide batch_size (got {self.split_bn}, {self.batch_size})"
            )
        if self.max_failures < -1 or self.fail_at_step < 0:
            raise ConfigError("max_failures: must be >= -1; fail_at_step: must be >= 0")


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
    """`mixture-ray embed`: 128-d head and pooled backbone features of every tile (Ray Data actors)."""

    tiles: Path = _help("tile store folder written by `mixture-ray tile`")
    out_dir: Path = _help("embedding store folder (reruns skip committed tile chunks)")
    model: str = _help(
        "ResNet checkpoint: a pretrain run folder, a Ray checkpoint folder or a .pt file; "
        "'random' = randomly initialised network (baseline)",
        path_unless=("random",),
    )
    arch: str = _help("architecture when model=random", "resnet18")
    dim: int = _help("head output dimension when model=random", 128)
    mlp: bool = _help("MLP head when model=random", True)
    magnification: float | None = _help("embed tiles of this magnification only; null = all", None)
    crop_fraction: float = _help("centre crop edge / tile edge before the network", 1.0)
    batch_size: int = _help("tiles per batch", 64)
    workers: int = _help("embedding actors (one model each)", 1)
    actor_cpus: float = _help("CPUs each actor reserves (on GPU nodes each actor takes one GPU)", 1.0)
    torch_threads: int = _help("torch intra-op threads per actor on CPU; 0 = the actor's CPUs", 0)
    seed: int = _help("seed of the random initialisation when model=random", 0)

    def validate(self) -> None:
        _positive(self, "dim", "batch_size", "workers", "actor_cpus")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(f"crop_fraction: must be in (0, 1] (got {self.crop_fraction})")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads: must be >= 0 (got {self.torch_threads})")
        if not self.model:
            raise ConfigError("model: give a checkpoint path or 'random'")


@dataclasses.dataclass(frozen=True)
class EvaluateEmbeddingsConfig:
    """`mixture-ray evaluate-embeddings`: NMI/ARI of k-means on embeddings vs synthetic truth."""

    embeddings: Path = _help("embedding store of the trained extractor (MoCo)")
    baseline: Path = _help("embedding store of the baseline (e.g. model=random)")
    masks: Path = _help("folder of ground-truth masks <slide_id>.png (synthetic cohort masks/)")
    tiles: Path = _help("tile store the embeddings came from (gives each tile's level-0 size)")
    mask_downsample: int = _help("level-0 pixels per mask pixel", 16)
    magnification: float | None = _help("evaluate tiles of this magnification only; null = all", None)
    min_purity: float = _help("keep tiles whose majority finding covers at least this fraction", 0.8)
    column: EmbeddingColumn = _help("embedding clustered: features (backbone) or head", "features")
    k: int = _help("k-means clusters; 0 = number of ground-truth findings present", 0)
    include_background: bool = _help("keep tiles whose majority finding is background", False)
    out: Path | None = _help("also write the result as JSON here", None)
    seed: int = _help("k-means seed", 0)

    def validate(self) -> None:
        _positive(self, "mask_downsample")
        if not 0.0 <= self.min_purity <= 1.0:
            raise ConfigError(f"min_purity: must be in [0, 1] (got {self.min_purity})")
        if self.k < 0 or self.k == 1:
            raise ConfigError(f"k: must be 0 (auto) or >= 2 (got {self.k})")


ExplainAction = Literal["fit", "apply", "analyse"]


@dataclasses.dataclass(frozen=True)
class ExplainConfig:
    """`mixture-ray explain fit|apply|analyse`: NMF classes of a CNN layer's activations on slides.

    fit: activation grids of the manifest's slides + NMF per K (H saved); apply: grids + W with H
    fixed, heatmaps and class overlays per slide; analyse: correlations, logistic regression to
    the model's prediction, GradCAM IoU/correlation (and IoU with masks_dir when given), plots.
    """

    action: ExplainAction = _help("fit, apply or analyse (the word after `explain`)")
    out_dir: Path = _help("explain folder: grids/, nmf/, apply/, analysis/ live under it")
    manifest: Path | None = _help("CSV/Parquet manifest or slide folder (fit, apply)", None)
    nmf_dir: Path | None = _help("folder of a fitted NMF (apply); default out_dir/nmf", None)
    arch: str = _help("torchvision model name (weights=None), e.g. resnet18", "resnet18")
    checkpoint: Path | None = _help("state_dict file loaded with weights_only=True", None)
    num_classes: int = _help("output classes of the model head", 2)
    positive_class: int = _help("output index that means 'yes' (prediction and GradCAM)", 1)
    layer: str = _help("module name whose output is clustered, e.g. layer4 or layer3", "layer4")
    non_negative: Literal["error", "relu"] = _help(
        "a layer output with negative values: error, or pass it through ReLU", "error"
    )
    mpp: float = _help("microns per pixel the tiles are read at (0.5 = 20x)", 0.5)
    tile_size: int = _help("tile edge in pixels at mpp", 512)
    stride: int = _help("step between tiles in pixels at mpp (overlap = tile_size - stride)", 256)
    border: int = _help("feature-map pixels dropped at each tile edge", 2)
    background_threshold: int = _help("a pixel is background when all of R, G, B exceed this", 220)
    max_background: float = _help("tiles with a larger background fraction are skipped", 0.9)
    n_classes: tuple[int, ...] = _help("NMF class counts K fitted (fit) / applied", [4, 6, 8])
    sample_vectors: int = _help("feature vectors sampled from the grids for the NMF fit", 100000)
    max_iter: int = _help("NMF iterations at most", 400)
    tol: float = _help("NMF relative error decrease per 10 iterations to stop", 1e-4)
    device: str = _help("torch device: auto, cpu, cuda", "auto")
    batch_size: int = _help("tiles per forward pass", 16)
    gradcam: bool = _help("compute GradCAM of positive_class on the same layer", True)
    memmap_mb: int = _help("grids larger than this many MiB are memory-mapped files", 256)
    task_cpus: float = _help("CPUs each per-slide Ray task reserves", 1.0)
    thumbnail_px: int = _help("longest side of overlay/heatmap images", 1024)
    masks_dir: Path | None = _help("ground-truth masks/<slide_id>.png (analyse, synthetic)", None)
    mask_downsample: int = _help("level-0 pixels per mask pixel", 16)
    weight_threshold: float = _help("class region: weight > this fraction of its maximum", 0.1)
    cam_threshold: float = _help("GradCAM region: value > this fraction of the tile maximum", 0.1)
    seed: int = _help("random seed (vector sampling, NMF init, logistic split)", 0)

    def validate(self) -> None:
        _positive(self, "mpp", "tile_size", "stride", "sample_vectors", "max_iter", "tol")
        _positive(self, "batch_size", "memmap_mb", "task_cpus", "thumbnail_px", "num_classes")
        _positive(self, "mask_downsample")
        if self.action in ("fit", "apply") and self.manifest is None:
            raise ConfigError(f"manifest: required for explain {self.action}")
        if not self.n_classes or min(self.n_classes) < 1:
            raise ConfigError(f"n_classes: give class counts >= 1 (got {self.n_classes})")
        if self.border < 0 or 2 * self.border >= self.tile_size:
            raise ConfigError(f"border: must be >= 0 and leave part of the tile (got {self.border})")
        if not 0 <= self.positive_class < self.num_classes:
            raise ConfigError(f"positive_class: must be in 0..{self.num_classes - 1}")
        if not 0.0 <= self.max_background <= 1.0:
            raise ConfigError(f"max_background: must be in [0, 1] (got {self.max_background})")
        for name in ("weight_threshold", "cam_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: must be in [0, 1)")


KMeansEngineName = Literal["auto", "sklearn", "sklearn-lloyd", "cuml"]


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """`mixture-ray cluster`: k-means of the embeddings per magnification for a list of k."""

    embeddings: Path = _help("embedding store folder written by `mixture-ray embed`")
    out_dir: Path = _help("clustering output folder")
    ks: tuple[int, ...] = _help("numbers of clusters", [5, 8, 10, 30, 50, 80, 100, 120])
    feature: Literal["features", "head"] = _help("embedding column: 512-d features or 128-d head", "features")
    standardize: bool = _help("z-score each dimension before clustering", False)
    engine: KMeansEngineName = _help("auto (cuML on GPU, else sklearn), sklearn, sklearn-lloyd, cuml", "auto")
    per_case: bool = _help("cluster each case separately (supplemental set) and merge the ids", False)
    silhouette_sample: int = _help("rows sampled for the silhouette score; 0 = skip", 5000)
    seed: int = _help("random seed", 0)

    def validate(self) -> None:
        if not self.ks or any(k < 2 for k in self.ks):
            raise ConfigError(f"ks: give numbers of clusters >= 2 (got {list(self.ks)})")
        if self.silhouette_sample < 0:
            raise ConfigError(f"silhouette_sample: must be >= 0 (got {self.silhouette_sample})")


FINDINGS_20X = (
    "dense_fibrosis",
    "elastosis",
    "fibroblastic_foci",
    "fat",
    "mucin",
    "bronchiolar_epithelium",
    "lymphocyte_aggregation",
)


@dataclasses.dataclass(frozen=True)
class ReviewConfig:
    """`mixture-ray review`: montages and a self-contained review page per magnification and k."""

    clusters: Path = _help("clustering folder written by `mixture-ray cluster`")
    tiles: Path = _help("tile store the embeddings came from (for the montage pixels)")
    out_dir: Path = _help("folder for pages, montages and (optionally) oracle mappings")
    findings: tuple[str, ...] = _help(
        "finding names offered for each cluster (plus other, exclude)", list(FINDINGS_20X)
    )
    ks: tuple[int, ...] = _help("only these k (empty = every clustering found)", [])
    per_cluster: int = _help("tiles per montage, drawn at random with the seed", 120)
    thumb_px: int = _help("montage cell edge in pixels", 96)
    seed: int = _help("random seed of the montage sampling", 0)
    oracle_cohort: Path | None = _help(
        "synthetic cohort folder: also write an oracle mapping from its ground truth (a simulation "
        "of the pathologist for tests and the demo, not a feature of real use)",
        None,
    )
    oracle_purity: float = _help(
        "oracle: clusters whose majority finding is below this share are excluded", 0.6
    )

    def validate(self) -> None:
        _positive(self, "per_cluster", "thumb_px")
        if not self.findings:
            raise ConfigError("findings: give at least one finding name")
        bad = [f for f in self.findings if f in ("other", "exclude") or not f.strip()]
        if bad:
            raise ConfigError(f"findings: {bad} are reserved or empty names")
        if not 0.0 < self.oracle_purity <= 1.0:
            raise ConfigError(f"oracle_purity: must be in (0, 1] (got {self.oracle_purity})")


@dataclasses.dataclass(frozen=True)
class IntegrateConfig:
    """`mixture-ray integrate`: mapping file(s) + assignments -> a labelled tile set."""

    mappings: tuple[Path, ...] = _help("mapping files, applied in order (later ones override)")
    out_dir: Path = _help("labelled tile set folder")
    findings: tuple[str, ...] = _help("finding names the mappings may use", list(FINDINGS_20X))
    corrections: Path | None = _help(
        "CSV of tile-level corrections: slide_id, x, y, magnification, finding", None
    )

    def validate(self) -> None:
        if not self.mappings:
            raise ConfigError("mappings: give at least one mapping file")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """`mixture-ray finetune`: ElEx backbone + a linear layer over the findings, all layers trained.

    Labelled tiles (`mixture-ray integrate` output) are joined to their pixels, split into
    train/validation by case (seeded), and trained with cross-entropy and Adam on Ray Train; the
    best epoch by validation balanced accuracy is exported as out_dir/name/classifier.pt.
    """

    labels: Path = _help("integrate output folder (labels.parquet + _SUCCESS) or its labels.parquet")
    tiles: Path = _help("tile store the labelled tiles come from (for the pixels)")
    out_dir: Path = _help("Ray Train storage folder; the run lives in out_dir/name")
    model: str = _help(
        "ElEx checkpoint (pretrain run folder, Ray checkpoint folder or .pt) or 'random' (baseline)",
        path_unless=("random",),
    )
    name: str = _help("run name; rerunning with the same name resumes from its last checkpoint", "classifier")
    arch: str = _help("architecture when model=random", "resnet18")
    findings: tuple[str, ...] = _help("class order; empty = the findings in the labels, sorted", [])
    magnification: float | None = _help("train on tiles of this magnification only; null = all", None)
    splits: tuple[str, ...] = _help("use only tiles whose tile-store split is one of these; empty = all", [])
    val_fraction: float = _help("share of cases held out for validation (no case in both)", 0.2)
    image_size: int = _help("tiles are resized to this edge in pixels; 0 = as stored", 0)
    epochs: int = _help("passes over the training tiles (a resumed run continues to this)", 10)
    batch_size: int = _help("tiles per worker per step", 32)
    lr: float = _help("Adam learning rate", 1e-4)
    balanced: bool = _help("class-balanced sampling (each class equally likely per draw)", True)
    flips: bool = _help("random horizontal/vertical flips", True)
    rotation: float = _help("random rotation within +/- this many degrees; 0 = off", 0.0)
    checkpoint_every: int = _help("report a checkpoint every this many steps (and at each epoch end)", 100)
    keep_checkpoints: int = _help("checkpoints kept in the run folder", 2)
    workers: int = _help("Ray Train workers (>1: DDP)", 1)
    cpus_per_worker: float = _help("CPUs each training worker reserves", 1.0)
    use_gpu: bool | None = _help("train on GPUs; null = when the cluster has them", None)
    max_failures: int = _help("worker failures retried from the last checkpoint", 1)
    log_every: int = _help("print loss every this many steps", 20)
    fail_at_step: int = _help("testing only: the first attempt kills its worker at this step", 0)
    seed: int = _help("random seed (split, weights, sampling, augmentation)", 0)

    def validate(self) -> None:
        _positive(self, "epochs", "batch_size", "lr", "checkpoint_every", "keep_checkpoints")
        _positive(self, "workers", "cpus_per_worker", "log_every")
        if not self.model:
            raise ConfigError("model: give an ElEx checkpoint path or 'random'")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must be in (0, 1) (got {self.val_fraction})")
        if self.image_size < 0:
            raise ConfigError(f"image_size: must be >= 0 (got {self.image_size})")
        if not 0.0 <= self.rotation <= 180.0:
            raise ConfigError(f"rotation: must be in [0, 180] (got {self.rotation})")
        if len(set(self.findings)) != len(self.findings):
            raise ConfigError(f"findings: names repeat ({list(self.findings)})")
        if self.max_failures < -1 or self.fail_at_step < 0:
            raise ConfigError("max_failures: must be >= -1; fail_at_step: must be >= 0")


@dataclasses.dataclass(frozen=True)
class ClassifyConfig:
    """`mixture-ray classify`: predicted finding and class probabilities of every cohort tile.

    Tile the cohort first (224 px, non-overlapping, every tile), e.g.
    ``mixture-ray tile --tile-size 224 --max-background 0.7 --max-tiles-per-slide 0``.
    """

    tiles: Path = _help("tile store of the cohort (written by `mixture-ray tile`)")
    classifier: Path = _help("fine-tuned classifier: a finetune run folder or its classifier.pt")
    out_dir: Path = _help("prediction store folder (reruns skip committed slides)")
    magnification: float | None = _help(
        "classify tiles of this magnification; null = the magnification the classifier was trained at", None
    )
    max_background: float = _help("tiles whose background fraction exceeds this are not classified", 0.7)
    batch_size: int = _help("tiles per batch", 64)
    workers: int = _help("classifier actors (one model each)", 1)
    actor_cpus: float = _help("CPUs each actor reserves (on GPU nodes each actor takes one GPU)", 1.0)
    torch_threads: int = _help("torch intra-op threads per actor on CPU; 0 = the actor's CPUs", 0)

    def validate(self) -> None:
        _positive(self, "batch_size", "workers", "actor_cpus")
        if not 0.0 <= self.max_background <= 1.0:
            raise ConfigError(f"max_background: must be in [0, 1] (got {self.max_background})")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads: must be >= 0 (got {self.torch_threads})")


@dataclasses.dataclass(frozen=True)
class MapsConfig:
    """`mixture-ray maps`: one finding map per slide (Ray task per slide), PNG with a legend."""

    predictions: Path = _help("prediction store written by `mixture-ray classify`")
    manifest: Path = _help("the slides' manifest (CSV/Parquet: slide_id, case_id, path[, mpp]) or folder")
    out_dir: Path = _help("folder for <slide_id>.png maps, agreement.csv and failures")
    thumbnail_px: int = _help("longest edge of the map in pixels", 1024)
    alpha: float = _help("opacity of the finding colours over the thumbnail", 0.45)
    truth_cohort: Path | None = _help(
        "synthetic cohort folder (masks/, findings.json, truth.json): adds per-slide agreement "
        "of the predictions with the planted ground truth", None
    )
    backend: Backend = _help("slide reader: auto, openslide, tiffslide, cucim", "auto")

    def validate(self) -> None:
        _positive(self, "thumbnail_px")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha: must be in [0, 1] (got {self.alpha})")


@dataclasses.dataclass(frozen=True)
class CasesConfig:
    """`mixture-ray cases`: per-case finding counts and frequencies (magnifications side by side).

    Counts are summed over all slides of a case; listed findings are dropped before normalising.
    With ``clusters`` and ``embeddings`` it also writes the non-integrated baseline: per-case
    frequencies of the nearest k-means centroid for each k.
    """

    predictions: tuple[Path, ...] = _help("prediction stores (one per magnification) from `classify`")
    out_dir: Path = _help("folder for counts/frequencies tables (CSV + Parquet) and baseline/k<k>.*")
    exclude: tuple[str, ...] = _help(
        "'<mag>x/<finding>' dropped before normalising", ["5x/complete_normal"]
    )
    embeddings: tuple[Path, ...] = _help(
        "embedding stores of the cohort tiles (for the non-integrated baseline)", []
    )
    clusters: Path | None = _help("clustering folder (`mixture-ray cluster`) whose centroids are used", None)
    baseline_ks: tuple[int, ...] = _help("k of the non-integrated baseline", [4, 8, 10, 20, 30, 50, 80])

    def validate(self) -> None:
        if not self.predictions:
            raise ConfigError("predictions: give at least one prediction store")
        bad = [e for e in self.exclude if "/" not in e or not e.split("/", 1)[0].endswith("x")]
        if bad:
            raise ConfigError(f"exclude: {bad} are not '<mag>x/<finding>' (e.g. 5x/complete_normal)")
        if bool(self.embeddings) != (self.clusters is not None):
            raise ConfigError("embeddings / clusters: give both (baseline) or neither")
        if any(k < 2 for k in self.baseline_ks):
            raise ConfigError(f"baseline_ks: must be >= 2 (got {list(self.baseline_ks)})")


@dataclasses.dataclass(frozen=True)
class StatsConfig:
    """`mixture-ray stats`: diagnosis and survival statistics from per-case finding frequencies.

    Random forest and SVM per magnification feature set on a seeded, label-stratified split (ROC AUC
    with DeLong 95 % CI, paired DeLong tests), the non-integrated baseline tables, Kaplan-Meier and
    log-rank by out-of-fold predicted class, Cox per finding (univariable, multivariable without
    collinear findings, proportional-hazards check, subgroups); tables (CSV + JSON), PNG plots,
    report.html and summary.json, then _SUCCESS. Runs on the driver (no Ray).
    """

    frequencies: Path = _help(
        "per-case frequency table (CSV/Parquet: case_id + '<mag>x/<finding>' columns) or a folder "
        "holding frequencies.parquet|csv"
    )
    clinical: Path = _help("clinical CSV: case id, binary label, follow-up time, event (columns below)")
    out_dir: Path = _help("folder for the tables, plots, report.html, summary.json and _SUCCESS")
    feature_sets: tuple[str, ...] = _help(
        "'+'-joined magnification sets the diagnosis is predicted from; sets whose magnifications are "
        "absent from the table are skipped with a note",
        ["2.5x", "5x", "20x", "5x+20x", "2.5x+5x+20x"],
    )
    baseline_dir: Path | None = _help(
        "folder of non-integrated baseline tables k<k>.csv|parquet (case_id + '<mag>x/c<cluster>')", None
    )
    baseline_ks: tuple[int, ...] = _help(
        "baseline k values used (files missing are noted); empty = every k<k> file found",
        [4, 8, 10, 20, 30, 50, 80],
    )
    case_id_column: str = _help("clinical column of the case id", "case_id")
    label_column: str = _help("clinical column of the binary diagnosis label", "label")
    positive_label: str = _help(
        "label value of the positive class for text labels; empty = labels are 0/1", ""
    )
    time_column: str = _help("clinical column of follow-up time (>= 0)", "time")
    event_column: str = _help("clinical column of the event indicator (1 event, 0 censored)", "event")
    covariates: tuple[str, ...] = _help("numeric clinical columns added to the multivariable Cox model", [])
    subgroup_column: str = _help(
        "clinical column for subgroup Cox analyses (e.g. diagnosis); empty = none", ""
    )
    missing_clinical: Literal["warn", "error"] = _help(
        "frequency-table cases with no clinical row: warn (left out, listed) or error", "warn"
    )
    test_fraction: float = _help("share of cases in the label-stratified test split", 0.3)
    cv_folds: int = _help("stratified folds of the out-of-fold predicted class (Kaplan-Meier groups)", 5)
    rf_trees: int = _help("random forest trees", 500)
    svm_c: float = _help("SVM (RBF kernel, standardised features) regularisation C", 1.0)
    ci_level: float = _help("confidence level of every interval", 0.95)
    horizon: float = _help("survival is reported at this time (unit of the time column)", 5.0)
    cox_feature_set: str = _help("'+'-joined magnifications of the Cox findings; empty = all", "")
    hr_per: float = _help(
        "hazard ratios are reported per this change in frequency (0.1 = 10 percentage points); "
        "coefficients per unit frequency are kept too", 0.1
    )
    reference_findings: tuple[str, ...] = _help(
        "columns ('<mag>x/<finding>') left out of the multivariable Cox model as the reference of their "
        "magnification (frequencies sum to 1); a magnification not listed drops its most common finding",
        [],
    )
    max_correlation: float = _help("multivariable Cox: drop a finding while a pair has |r| above this", 0.8)
    max_vif: float = _help("multivariable Cox: then drop the finding of highest VIF while above this", 5.0)
    min_events: int = _help("Cox models (and subgroup levels) with fewer events are skipped", 10)
    cox_penalizer: float = _help("lifelines CoxPHFitter penalizer (0 = plain partial likelihood)", 0.0)
    n_jobs: int = _help("random forest threads (-1 = all cores)", 1)
    seed: int = _help("random seed (split, forests, SVM, folds)", 0)

    def validate(self) -> None:
        from mixture_ray.stats.features import parse_feature_set

        _positive(self, "cv_folds", "rf_trees", "svm_c", "horizon", "hr_per", "min_events")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds: must be >= 2 (got {self.cv_folds})")
        for name in ("test_fraction", "ci_level"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: must be in (0, 1) (got {getattr(self, name)})")
        if not 0.0 < self.max_correlation <= 1.0:
            raise ConfigError(f"max_correlation: must be in (0, 1] (got {self.max_correlation})")
        if self.max_vif <= 1.0:
            raise ConfigError(f"max_vif: must be > 1 (got {self.max_vif})")
        if self.cox_penalizer < 0 or self.n_jobs == 0:
            raise ConfigError("cox_penalizer: must be >= 0; n_jobs: must not be 0")
        if not self.feature_sets:
            raise ConfigError("feature_sets: give at least one magnification set, e.g. [20x, 5x+20x]")
        sets = [("feature_sets", s) for s in self.feature_sets]
        if self.cox_feature_set:
            sets.append(("cox_feature_set", self.cox_feature_set))
        for key, text in sets:
            try:
                parse_feature_set(text)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from exc
        if any(k < 1 for k in self.baseline_ks):
            raise ConfigError(f"baseline_ks: k must be >= 1 (got {list(self.baseline_ks)})")
        columns = [self.case_id_column, self.label_column, self.time_column, self.event_column]
        if any(not c.strip() for c in columns) or len(set(columns)) < 4:
            raise ConfigError(f"case_id_column/label_column/time_column/event_column: give four distinct "
                              f"column names (got {columns})")
        clash = sorted(set(self.covariates) & set(columns))
        if clash:
            raise ConfigError(f"covariates: {clash} are already the id, label, time or event column")


def _positive(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value <= 0:
            raise ConfigError(f"{name}: must be > 0 (got {value!r})")


# ---------------------------------------------------------------- loading and coercion


def config_fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    """Field name -> (resolved type, field) for a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def _is_textual(hint: Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint in (str, Path) or (len(args) == 1 and args[0] in (str, Path))


def parse_overrides(pairs: Iterable[str], cls: type | None = None) -> dict[str, Any]:
    """Parse ``key=value`` strings. Path and string keys of ``cls`` are taken literally;
    other values are read as YAML scalars or lists (``magnifications=[5, 20]``)."""
    hints = typing.get_type_hints(cls) if cls is not None else {}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        if key in hints and _is_textual(hints[key]):
            out[key] = raw if raw.lower() not in ("null", "none", "~") else None
            continue
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from exc
    return out


def load_config(
    cls: type[C],
    path: Path | str | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> C:
    """Build a validated ``cls`` from a YAML file plus overrides (later wins)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of key: value at the top")
        values.update(loaded or {})
    values.update(overrides if isinstance(overrides, Mapping) else parse_overrides(overrides, cls))
    return build_config(cls, values)


def build_config(cls: type[C], values: Mapping[str, Any]) -> C:
    """Coerce ``values`` to ``cls`` field types, reject unknown keys, then validate."""
    fields = config_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) for {cls.__name__}: {', '.join(unknown)}; known keys: {', '.join(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, (hint, field) in fields.items():
        if name in values:
            kwargs[name] = coerce(name, hint, values[name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{name}: required key is missing ({field.metadata.get('help', '')})")
    cfg = _with_absolute_paths(cls(**kwargs))
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def _with_absolute_paths(cfg: C) -> C:
    """``cfg`` with every path field (defaults included) made absolute: see store.paths."""
    changes: dict[str, Any] = {}
    for name, (_, field) in config_fields(type(cfg)).items():
        value = getattr(cfg, name)
        keywords = field.metadata.get("path_unless")
        if isinstance(value, Path):
            changes[name] = absolute_path(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, Path) for v in value):
            changes[name] = tuple(absolute_path(v) for v in value)
        elif keywords and isinstance(value, str) and value and value not in keywords:
            changes[name] = str(absolute_path(value))
    return dataclasses.replace(cfg, **changes) if changes else cfg  # type: ignore[type-var]


def coerce(name: str, hint: Any, value: Any) -> Any:
    """Convert ``value`` to the annotated type ``hint`` or raise ConfigError naming ``name``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(name, arg, value)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{name}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else [value]
        if isinstance(value, str):
            items = [v for v in value.split(",") if v.strip()]
            items = [yaml.safe_load(v) for v in items]
        return tuple(coerce(f"{name}[{i}]", args[0], v) for i, v in enumerate(items))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{name}: expected a path, got {value!r}")
        return Path(value)
    raise ConfigError(f"{name}: unsupported config type {hint!r}")  # pragma: no cover
