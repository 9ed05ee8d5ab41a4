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
    from collections.abc import Callable, Sequence

    from mixture_ray.report import Report


def known_truth_check(out_dir: Path, *, n_cases: int = 4, slide_px: int = 2048,
                      finding: int = findings.FIBROBLASTIC_FOCI, n_classes: tuple[int, ...] = (4,),
                      per_slide: int = 160, epochs: int = 3, mpp: float = 1.0,
                      layer: str = "layer3", tile_size: int = 128, seed: int = 0,
                      seed_runs: Sequence[Path] = ()) -> dict[str, Any]:
    """Run the whole check under ``out_dir``; returns {K: analysis summary} plus the detector.

    Deterministic: the same arguments give the same numbers whatever the number of CPUs (the
    detector trains on a fixed number of torch threads; explain's tasks run ``task_cpus`` each).

    Args:
        out_dir: the check's folder (``cohort/``, ``detector.pt``, ``explain/``).
        n_cases: synthetic cases (one slide each).
        slide_px: slide edge in pixels.
        finding: the planted finding the detector learns.
        n_classes: the NMF class counts K.
        per_slide: training tiles sampled per slide.
        epochs: detector training epochs.
        mpp: microns per pixel of the explain tiles.
        layer: the clustered layer.
        tile_size: explain tile edge (stride half of it).
        seed: cohort, tile sampling, detector, NMF and the logistic regression's split.
        seed_runs: explain folders of this check under other seeds (see
            :func:`known_truth_spread`), tabulated with this one by explain analyse.

    Returns:
        ``{"detector": its training summary, "analysis": analysis/summary.json}``.
    """
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
                                                  "seed": seed, "seed_runs": list(seed_runs)})
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


def known_truth_spread(out_dir: Path, *, seeds: Sequence[int] = (0, 1, 2), **options: Any
                       ) -> dict[str, Any]:
    """The check once per seed, and each K's numbers per seed with their mean and std.

    The first seed's check is ``out_dir`` itself (the layout of :func:`known_truth_check`); each
    other seed's is ``out_dir/seeds/seed<s>``. The first seed's analysis tabulates them all:
    ``explain/analysis/seed_spread.csv`` and ``seed_spread`` per K in its ``summary.json``.

    Args:
        out_dir: the first seed's check folder.
        seeds: the seeds (cohort, detector, NMF and split all change with the seed).
        **options: the other arguments of :func:`known_truth_check`.

    Returns:
        What :func:`known_truth_check` returns for the first seed (its ``analysis`` holds the spread).
    """
    first, *rest = seeds
    others = [Path(out_dir) / "seeds" / f"seed{s}" for s in rest]
    for s, folder in zip(rest, others, strict=True):
        known_truth_check(folder, seed=s, **options)
    return known_truth_check(out_dir, seed=first, seed_runs=[f / "explain" for f in others], **options)
