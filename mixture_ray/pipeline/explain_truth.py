"""Known-truth check: NMF classes of a detector of one planted finding vs the truth masks.

synthetic cohort -> ResNet18 trained to detect ``finding`` -> explain fit / apply / analyse with
the masks -> per class the best IoU with a finding mask, plus the logistic-regression AUC.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.config import build_config
from mixture_ray.errors import StageIncompleteError
from mixture_ray.explain.config import ExplainAnalyseConfig, ExplainApplyConfig, ExplainFitConfig
from mixture_ray.synth import findings
from mixture_ray.synth.config import SynthConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from mixture_ray.report import Report


def known_truth_check(out_dir: Path, *, n_cases: int = 4, slide_px: int = 2048,
                      finding: int = findings.FIBROBLASTIC_FOCI, n_classes: tuple[int, ...] = (4,),
                      per_slide: int = 160, epochs: int = 3, mpp: float = 1.0,
                      layer: str = "layer3", tile_size: int = 128, seed: int = 0
                      ) -> dict[str, Any]:
    """Run the whole check under ``out_dir``; returns {K: analysis summary} plus the detector."""
    import json

    from mixture_ray.explain.finding_model import sample_tiles, train_detector
    from mixture_ray.explain.stage import run_analyse, run_apply, run_fit
    from mixture_ray.synth.cohort import write_cohort

    out_dir = Path(out_dir)
    cohort_dir = out_dir / "cohort"
    synth = build_config(SynthConfig, {"out_dir": cohort_dir, "n_cases": n_cases,
                                       "width": slide_px, "height": slide_px, "seed": seed,
                                       "min_slides_per_case": 1, "max_slides_per_case": 1})
    if not (cohort_dir / "_SUCCESS").exists():
        write_cohort(synth)
    checkpoint = out_dir / "detector.pt"
    images, labels = sample_tiles(cohort_dir / "manifest.csv", cohort_dir / "masks", code=finding,
                                  mpp=mpp, tile=64, per_slide=per_slide, min_fraction=0.5,
                                  seed=seed)
    detector = train_detector(images, labels, checkpoint, epochs=epochs, seed=seed)
    explain_dir = out_dir / "explain"
    slides = {"out_dir": explain_dir, "manifest": cohort_dir / "manifest.csv", "device": "cpu",
              "batch_size": 32, "thumbnail_px": 512}
    fit = build_config(ExplainFitConfig, {
        **slides, "checkpoint": checkpoint, "layer": layer, "mpp": mpp, "tile_size": tile_size,
        "stride": tile_size // 2, "border": 2, "n_classes": list(n_classes), "seed": seed})
    apply = build_config(ExplainApplyConfig, slides)
    analyse = build_config(ExplainAnalyseConfig, {"out_dir": explain_dir, "masks_dir": cohort_dir / "masks",
                                                  "seed": seed})
    steps: list[tuple[str, Callable[[Any], Report], Any]] = [
        ("fit", run_fit, fit), ("apply", run_apply, apply), ("analyse", run_analyse, analyse)]
    for action, run, cfg in steps:
        report = run(cfg)
        if not report.complete:
            raise StageIncompleteError(f"explain {action} left slides failed:\n" + report.summary())
    summary = json.loads((out_dir / "explain" / "analysis" / "summary.json").read_text())
    return {"detector": {"tiles": detector.n_tiles, "positive": detector.n_positive,
                         "train_accuracy": detector.train_accuracy,
                         "seconds": detector.seconds, "finding": findings.finding(finding).name},
            "analysis": summary}
