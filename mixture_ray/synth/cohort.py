"""`mixture-ray synth`: write a seeded synthetic cohort of Aperio slides with planted truth.

Output folder::

    slides/<slide_id>.svs   masks/<slide_id>.png   findings.json   manifest.csv
    clinical.csv            truth.json             _SUCCESS (written last)

Version 2 (``cfg.version``) adds ``masks_subtype/<slide_id>.png``, a ``site`` column in both
tables and the sites and sub-types in truth.json (:mod:`cohort_v2`); version 1 output is
unchanged by it, byte for byte.
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
from mixture_ray.synth import findings, layout, subtypes
from mixture_ray.synth.aperio_writer import write_svs
from mixture_ray.synth.cohort_v2 import SUBTYPE_MASKS, CaseLook, DesignV2, case_record, subtype_mask
from mixture_ray.synth.outcomes import OutcomeModel, simulate
from mixture_ray.synth.records import (
    clinical_columns,
    clinical_row,
    manifest_columns,
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
                mixture: dict[int, float], cfg: SynthConfig,
                look: CaseLook | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Lay out, render and write one slide and its mask(s).

    A v2 slide (``look`` given) draws a sub-type per region, renders with the case's site and
    also writes its sub-type mask to ``masks_subtype/`` next to ``masks/``.

    Returns:
        The finding mask, and the sub-type mask (None for v1).
    """
    ds = cfg.mask_downsample
    shape = (-(-cfg.height // ds), -(-cfg.width // ds))
    slide_layout = layout.make_layout(rng, shape, region_size(cfg.width, cfg.height) / ds, mixture)
    subs = None if look is None else look.region_subtypes(slide_layout.codes)
    renderer = SlideRenderer(rng, slide_layout, bank, cfg.width, cfg.height, ds, subs,
                             None if look is None else look.site.apply)
    bands = (renderer.rows(y, cfg.tile_px) for y in range(0, cfg.height, cfg.tile_px))
    write_svs(path, bands, width=cfg.width, height=cfg.height, levels=cfg.levels,
              tile=cfg.tile_px, mpp=cfg.mpp, app_mag=cfg.app_mag, quality=cfg.jpeg_quality)
    mask = slide_layout.mask
    write_mask(mask_path, mask)
    if subs is None:
        return mask, None
    sub_mask = subtype_mask(slide_layout.codes, subs, slide_layout.regions)
    write_mask(mask_path.parent.parent / SUBTYPE_MASKS / mask_path.name, sub_mask)
    return mask, sub_mask


def write_cohort(cfg: SynthConfig) -> Cohort:
    """Write the whole cohort described by ``cfg``; the same config gives the same cohort.

    Args:
        cfg: the cohort's size, slide geometry, seed and design version (sites for v2).

    Returns:
        The paths written (slides, masks, manifest, clinical table, findings and truth).
    """
    cfg.validate()
    root = Path(cfg.out_dir)
    slides_dir, masks_dir = root / "slides", root / "masks"
    try:
        slides_dir.mkdir(parents=True, exist_ok=True)
        masks_dir.mkdir(parents=True, exist_ok=True)
        if cfg.version == 2:
            (root / SUBTYPE_MASKS).mkdir(exist_ok=True)
        (root / "_SUCCESS").unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"out_dir: cannot create {root} ({exc.strerror})") from exc

    seeds = np.random.SeedSequence(cfg.seed).spawn(4)  # the first 3 are the v1 streams
    bank_size = 1024 if max(cfg.width, cfg.height) > 2048 else 512
    design = DesignV2.draw(seeds[3], cfg.n_cases, cfg.sites) if cfg.version == 2 else None
    make_bank = build_bank if design is None else subtypes.build_bank
    bank = make_bank(np.random.default_rng(seeds[0]), bank_size, BANK_VARIANTS)
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
        look = None if design is None else design.cases[i]
        masks, sub_masks, slide_ids = [], [], []
        for j in range(n_slides):
            slide_id = f"{case_id}_s{j}"
            mask, sub_mask = write_slide(slides_dir / f"{slide_id}.svs",
                                         masks_dir / f"{slide_id}.png", rng, bank, mixture, cfg, look)
            masks.append(mask)
            sub_masks.append(sub_mask)
            slide_ids.append(slide_id)
            log.info("synth: wrote %s (%dx%d)", slide_id, cfg.width, cfg.height)
            manifest.append({"slide_id": slide_id, "case_id": case_id,
                             "path": f"slides/{slide_id}.svs", "mpp": cfg.mpp})
            if look is not None:
                manifest[-1]["site"] = look.site.name
        fractions = tissue_fractions(masks)
        outcome = simulate(outcome_rng, fractions, model)
        cases.append({"case_id": case_id, "slide_ids": slide_ids, "uip_like": bool(uip_like[i]),
                      "mixture": mixture, "fractions": fractions, "outcome": outcome})
        if look is not None:
            cases[-1]["v2"] = case_record(look, [m for m in sub_masks if m is not None])

    cohort = Cohort(root, slides_dir, masks_dir, root / "manifest.csv", root / "clinical.csv",
                    root / "findings.json", root / "truth.json", cfg.n_cases, len(manifest))
    write_csv(cohort.manifest, manifest_columns(cfg.version), manifest)
    write_csv(cohort.clinical, clinical_columns(cfg.version), [clinical_row(c) for c in cases])
    cohort.findings.write_text(json.dumps([f.to_dict() for f in findings.FINDINGS], indent=2) + "\n")
    record = truth_record(cfg, model, cases)
    if design is not None:
        record = {"version": 2, **record, **design.describe()}
    cohort.truth.write_text(json.dumps(record, indent=2) + "\n")
    # no random run id: the same seed writes the same cohort, byte for byte (the seed identifies it)
    done = {"stage": "synth", "cases": cfg.n_cases, "slides": len(manifest), "seed": cfg.seed}
    (root / "_SUCCESS").write_text(json.dumps(done, indent=2))
    return cohort
