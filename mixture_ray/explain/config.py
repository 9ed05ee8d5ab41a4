"""`mixture-ray explain fit|apply|analyse` settings: one config per sub-command.

``fit`` names the network, its layer and the tiling (:class:`GridSpec`); it records them in the
NMF folder, and ``apply`` reads them back from there, so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

from mixture_ray.config import narrow, option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.models.backbone import check_arch, require_resnet

NonNegative = Literal["error", "relu"]
#: GPUs each Ray task of explain requests: ``auto`` or a number (see :class:`GridRun`).
GpuSetting = Literal["auto"] | float
_ACTION_IS_A_COMMAND = {
    "action": "the action is the sub-command now: mixture-ray explain fit|apply|analyse, each with its own "
              "config (jobs/explain-fit.yaml, explain-apply.yaml, explain-analyse.yaml)",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridSpec:
    """What an activation grid is made of: the network, the clustered layer and the tiling."""

    arch: str = option("torchvision ResNet (weights=None), e.g. resnet18, resnet50", "resnet18")
    checkpoint: Path | None = option(
        "torchvision state_dict or finetune classifier.pt, loaded with weights_only=True", None
    )
    num_classes: int = option("output classes of the model head", 2)
    positive_class: int = option("output index that means 'yes' (prediction and GradCAM)", 1)
    layer: str = option("module name whose output is clustered, e.g. layer4 or layer3", "layer4")
    non_negative: NonNegative = option(
        "a layer output with negative values: error, or pass it through ReLU", "error"
    )
    mpp: float = option("microns per pixel the tiles are read at (0.5 = 20x)", 0.5)
    tile_size: int = option("tile edge in pixels at mpp", 512)
    stride: int = option("step between tiles in pixels at mpp (overlap = tile_size - stride)", 256)
    border: int = option("feature-map pixels dropped at each tile edge", 2)
    background_threshold: int = option("a pixel is background when all of R, G, B exceed this", 220)
    max_background: float = option("tiles with a larger background fraction are skipped", 0.9)
    gradcam: bool = option("compute GradCAM of positive_class on the same layer", True)

    def grid_spec(self) -> GridSpec:
        """Only the grid settings (what the per-slide tasks and the NMF folder keep)."""
        return narrow(GridSpec, self)

    def settings(self) -> dict[str, Any]:
        """The grid settings as JSON values (recorded by fit, compared on reruns)."""
        spec = self.grid_spec()
        return {f.name: (str(v) if isinstance(v := getattr(spec, f.name), Path) else v)
                for f in dataclasses.fields(spec)}

    def validate(self) -> None:
        """Check the arch, sizes, border, positive class and background fraction."""
        check_arch(self.arch)
        require_resnet(self.arch, "explain")
        require_positive(self, "mpp", "tile_size", "stride", "num_classes")
        if self.border < 0 or 2 * self.border >= self.tile_size:
            raise ConfigError(f"border: must be >= 0 and leave part of the tile (got {self.border})")
        if not 0 <= self.positive_class < self.num_classes:
            raise ConfigError(f"positive_class: must be in 0..{self.num_classes - 1}")
        if not 0.0 <= self.max_background <= 1.0:
            raise ConfigError(f"max_background: must be in [0, 1] (got {self.max_background})")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridRun:
    """How the Ray tasks run: device, GPUs, batch, memory, CPUs per task.

    Every GPU-capable piece of explain runs in a Ray task that requests ``num_gpus`` (the grid of
    a slide, the NMF fit, the NMF apply of a slide), never on the driver. Each task runs
    ``task_cpus`` torch threads whatever its node has, so the same settings give the same numbers
    on any machine of a kind (float sums are split by thread: another ``task_cpus`` or device
    can change the last bits, and through the NMF the classes).
    """

    device: str = option("torch device inside the tasks: auto (CUDA when the task sees a GPU), cpu, cuda",
                         "auto")
    num_gpus: GpuSetting = option(
        "GPUs each Ray task (grid per slide, NMF fit, NMF apply per slide) requests: a number (requested "
        "even when no GPU node is up yet, so an autoscaling cluster starts one), or auto = 1 when the "
        "cluster has a GPU now, else 0; device: cpu requests none", "auto")
    batch_size: int = option("tiles per forward pass", 16)
    memmap_mb: int = option("grids larger than this many MiB are memory-mapped files", 256)
    task_cpus: float = option("CPUs each per-slide Ray task reserves (and its torch threads)", 1.0)
    thumbnail_px: int = option("longest side of overlay/heatmap images", 1024)

    def run_settings(self) -> GridRun:
        """Only the run settings (what the per-slide tasks take)."""
        return narrow(GridRun, self)

    def validate_run(self) -> None:
        """Check the positive sizes and the GPU request (auto, or a number Ray can schedule)."""
        require_positive(self, "batch_size", "memmap_mb", "task_cpus", "thumbnail_px")
        gpus = self.num_gpus
        if gpus != "auto" and not (gpus >= 0 and (gpus <= 1 or float(gpus).is_integer())):
            raise ConfigError(f"num_gpus: give auto, a fraction in [0, 1] or a whole number of GPUs >= 0 "
                              f"(got {gpus!r})")
        if gpus == 0 and self.device.startswith("cuda"):
            raise ConfigError(f"num_gpus: 0 gives the tasks no GPU, but device is {self.device!r}; "
                              "use num_gpus: auto or 1, or device: auto")


def _check_classes(n_classes: tuple[int, ...] | None) -> None:
    if n_classes is not None and (not n_classes or min(n_classes) < 1):
        raise ConfigError(f"n_classes: give class counts >= 1 (got {list(n_classes)})")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplainFitConfig(GridSpec, GridRun):
    """`mixture-ray explain fit`: activation grids of the manifest's slides, then NMF per K (H saved)."""

    #: Keys of earlier versions, and what replaces them.
    RENAMED_KEYS: ClassVar[dict[str, str]] = _ACTION_IS_A_COMMAND

    out_dir: Path = option("explain folder: grids/ and nmf/ are written under it")
    manifest: Path = option("CSV/Parquet manifest or slide folder of the training slides")
    n_classes: tuple[int, ...] = option("NMF class counts K fitted", [4, 6, 8])
    sample_vectors: int = option("feature vectors sampled from the grids for the NMF fit", 100000)
    max_iter: int = option("NMF iterations at most", 400)
    tol: float = option("NMF relative error decrease per 10 iterations to stop", 1e-4)
    seed: int = option("random seed (vector sampling, NMF initialisation)", 0)

    def validate(self) -> None:
        """Grid and run settings, class counts and NMF settings."""
        GridSpec.validate(self)
        self.validate_run()
        _check_classes(self.n_classes)
        require_positive(self, "sample_vectors", "max_iter", "tol")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplainApplyConfig(GridRun):
    """`mixture-ray explain apply`: grids of the manifest's slides, W with the fitted H, maps per slide.

    The network, layer and tiling are those the NMF was fitted with (read from ``nmf_dir``).
    """

    #: Keys of earlier versions, and what replaces them.
    RENAMED_KEYS: ClassVar[dict[str, str]] = _ACTION_IS_A_COMMAND

    out_dir: Path = option("explain folder: grids/ and apply/ are written under it")
    manifest: Path = option("CSV/Parquet manifest or slide folder of the slides to explain")
    nmf_dir: Path | None = option("folder of a fitted NMF; default out_dir/nmf", None)
    n_classes: tuple[int, ...] | None = option("class counts K applied; default every fitted K", None)

    def validate(self) -> None:
        """Run settings and class counts."""
        self.validate_run()
        _check_classes(self.n_classes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplainAnalyseConfig:
    """`mixture-ray explain analyse`: analyses and plots of the applied NMF classes.

    Correlations, logistic regression to the model's prediction, GradCAM IoU/correlation, and IoU
    with ground-truth masks when ``masks_dir`` is given.
    """

    #: Keys of earlier versions, and what replaces them.
    RENAMED_KEYS: ClassVar[dict[str, str]] = _ACTION_IS_A_COMMAND

    out_dir: Path = option("explain folder holding apply/ (analysis/ is written under it)")
    n_classes: tuple[int, ...] | None = option("class counts K analysed; default every applied K", None)
    masks_dir: Path | None = option("ground-truth masks/<slide_id>.png (synthetic cohorts)", None)
    mask_downsample: int = option("level-0 pixels per mask pixel", 16)
    weight_threshold: float = option("class region: weight > this fraction of its maximum", 0.1)
    cam_threshold: float = option("GradCAM region: value > this fraction of the tile maximum", 0.1)
    seed: int = option("random seed of the logistic regression's split", 0)
    seed_runs: tuple[Path, ...] = option(
        "explain folders of the same check run with other seeds, each with a complete analysis/: "
        "each K's numbers are tabulated per run with their mean and std (analysis/seed_spread.csv, "
        "seed_spread in summary.json)", [])

    def validate(self) -> None:
        """Class counts, mask scale and thresholds."""
        _check_classes(self.n_classes)
        require_positive(self, "mask_downsample")
        for name in ("weight_threshold", "cam_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: must be in [0, 1)")
