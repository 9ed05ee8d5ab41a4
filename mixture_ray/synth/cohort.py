"""`mixture-ray synth`: write a seeded synthetic cohort of Aperio slides with planted truth.

Output folder::

    slides/<slide_id>.svs   masks/<slide_id>.png   findings.json   manifest.csv
    clinical.csv            truth.json             _SUCCESS (written last)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.errors import ConfigError
from mixture_ray.report import Failure, Report
from mixture_ray.synth import findings, layout
from mixture_ray.synth.aperio_writer import write_svs
from mixture_ray.synth.outcomes import OutcomeModel, simulate
from mixture_ray.synth.records import (
    MANIFEST_COLUMNS,
    clinical_columns,
    clinical_row,
    truth_record,
    write_csv,
)
from mixture_ray.synth.render import SlideRenderer, TextureBank, build_bank
from mixture_ray.synth.truth import tissue_fractions, write_mask

if TYPE_CHECKING:
    from mixture_ray.synth.config import SynthConfig

BANK_VARIANTS = 2
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Cohort(Report):
    """Paths of a written synthetic cohort."""

    root: Path
    slides_dir: Path
    masks_dir: Path
    manifest: Path
    clinical: Path
    findings: Path
    truth: Path
    n_cases: int
    n_slides: int
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """Cases, slides and the two tables a user opens first."""
        return (f"synthetic cohort written to {self.root}: {self.n_cases} cases, {self.n_slides} slides\n"
                f"  manifest: {self.manifest}\n  clinical: {self.clinical}")


def region_size(width: int, height: int) -> float:
    """Typical diameter of a finding region in level-0 px (scales with the slide)."""
    return float(np.clip(math.sqrt(width * height) / 5, 256, 2048))


def write_slide(path: Path, mask_path: Path, rng: np.random.Generator, bank: TextureBank,
                mixture: dict[int, float], cfg: SynthConfig) -> np.ndarray:
    """Lay out, render and write one slide and its mask; returns the mask."""
    ds = cfg.mask_downsample
    shape = (-(-cfg.height // ds), -(-cfg.width // ds))
    slide_layout = layout.make_layout(rng, shape, region_size(cfg.width, cfg.height) / ds, mixture)
    renderer = SlideRenderer(rng, slide_layout, bank, cfg.width, cfg.height, ds)
    bands = (renderer.rows(y, cfg.tile_px) for y in range(0, cfg.height, cfg.tile_px))
    write_svs(path, bands, width=cfg.width, height=cfg.height, levels=cfg.levels,
              tile=cfg.tile_px, mpp=cfg.mpp, app_mag=cfg.app_mag, quality=cfg.jpeg_quality)
    mask = slide_layout.mask
    write_mask(mask_path, mask)
    return mask


def write_cohort(cfg: SynthConfig) -> Cohort:
    """Write the whole cohort described by ``cfg``; the same config gives the same cohort.

    Args:
        cfg: the cohort's size, slide geometry and seed.

    Returns:
        The paths written (slides, masks, manifest, clinical table, findings and truth).
    """
    cfg.validate()
    root = Path(cfg.out_dir)
    slides_dir, masks_dir = root / "slides", root / "masks"
    try:
        slides_dir.mkdir(parents=True, exist_ok=True)
        masks_dir.mkdir(parents=True, exist_ok=True)
        (root / "_SUCCESS").unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"out_dir: cannot create {root} ({exc.strerror})") from exc

    seeds = np.random.SeedSequence(cfg.seed).spawn(3)
    bank_size = 1024 if max(cfg.width, cfg.height) > 2048 else 512
    bank = build_bank(np.random.default_rng(seeds[0]), bank_size, BANK_VARIANTS)
    case_rng = np.random.default_rng(seeds[1])
    uip_like = case_rng.permutation([i % 2 == 0 for i in range(cfg.n_cases)])
    case_seeds = seeds[1].spawn(cfg.n_cases)
    outcome_rng = np.random.default_rng(seeds[2])
    model = OutcomeModel()

    manifest: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    for i in range(cfg.n_cases):
        rng = np.random.default_rng(case_seeds[i])
        case_id = f"case{i:03d}"
        mixture = layout.case_mixture(rng, bool(uip_like[i]))
        n_slides = int(rng.integers(cfg.min_slides_per_case, cfg.max_slides_per_case + 1))
        masks, slide_ids = [], []
        for j in range(n_slides):
            slide_id = f"{case_id}_s{j}"
            masks.append(write_slide(slides_dir / f"{slide_id}.svs", masks_dir / f"{slide_id}.png",
                                     rng, bank, mixture, cfg))
            slide_ids.append(slide_id)
            log.info("synth: wrote %s (%dx%d)", slide_id, cfg.width, cfg.height)
            manifest.append({"slide_id": slide_id, "case_id": case_id,
                             "path": f"slides/{slide_id}.svs", "mpp": cfg.mpp})
        fractions = tissue_fractions(masks)
        outcome = simulate(outcome_rng, fractions, model)
        cases.append({"case_id": case_id, "slide_ids": slide_ids, "uip_like": bool(uip_like[i]),
                      "mixture": mixture, "fractions": fractions, "outcome": outcome})

    cohort = Cohort(root, slides_dir, masks_dir, root / "manifest.csv", root / "clinical.csv",
                    root / "findings.json", root / "truth.json", cfg.n_cases, len(manifest))
    write_csv(cohort.manifest, MANIFEST_COLUMNS, manifest)
    write_csv(cohort.clinical, clinical_columns(), [clinical_row(c) for c in cases])
    cohort.findings.write_text(json.dumps([f.to_dict() for f in findings.FINDINGS], indent=2) + "\n")
    cohort.truth.write_text(json.dumps(truth_record(cfg, model, cases), indent=2) + "\n")
    (root / "_SUCCESS").write_text("")
    return cohort
