"""One slide's QC (the body of its Ray task): measure, decide, write its thumbnail and mask."""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mixture_ray.model_input.stain import estimate_stains
from mixture_ray.qc.audit import audit_resolution, tiff_pixel_size
from mixture_ray.qc.blur import laplacian_variance, sample_tiles
from mixture_ray.qc.decide import FAIL, decide
from mixture_ray.qc.draw import boxes_mask, qc_thumbnail
from mixture_ray.qc.masks import dilate, fold_mask, pen_mask, tissue_mask
from mixture_ray.qc.modality import classify_modality
from mixture_ray.slides.colour import profile_description
from mixture_ray.store.qc_table import slide_file

if TYPE_CHECKING:
    from mixture_ray.qc.config import QcConfig

THUMBNAILS, MASKS = "thumbnails", "masks"


def _save_png(image: Image.Image, target: Path) -> None:
    tmp = target.with_name(f".{uuid.uuid4().hex}.png.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, target)


def _stain(tiles: np.ndarray, thumbnail: np.ndarray, tissue: np.ndarray, background: int) -> dict[str, float]:
    pixels = tiles.reshape(-1, 3) if len(tiles) else thumbnail[tissue]
    pixels = pixels[(pixels <= background).any(axis=1)]
    try:
        estimate = estimate_stains(pixels)
    except ValueError:  # tissue, but almost nothing stained: as faded as it gets
        return {"stain_h_max": 0.0, "stain_e_max": 0.0, "stain_intensity": 0.0, "faded_score": 1.0}
    intensity = estimate.intensity()
    h_max, e_max = (float(c) for c in estimate.max_concentration)
    return {"stain_h_max": h_max, "stain_e_max": e_max,
            "stain_intensity": intensity, "faded_score": float(np.clip(1.0 - intensity, 0.0, 1.0))}


def qc_slide(
    cfg: QcConfig, slide_id: str, case_id: str, path: str, manifest_mpp: float | None
) -> dict[str, Any]:
    """Measure one slide, decide, and write ``thumbnails/<id>.png`` and ``masks/<id>.png``.

    Args:
        cfg: the QC settings.
        slide_id: the slide's id (file names are percent-encoded from it).
        case_id: its case.
        path: the slide file.
        manifest_mpp: the manifest's mpp for the slide (NaN or None when not given).

    Returns:
        One row of the QC table (:data:`mixture_ray.store.qc_table.QC_SCHEMA` keys).
    """
    from mixture_ray.slides.factory import open_slide

    given = None if manifest_mpp is None or math.isnan(manifest_mpp) else float(manifest_mpp)
    reader = open_slide(path, cfg.backend, to_srgb=cfg.to_srgb)
    try:
        thumbnail = reader.thumbnail(cfg.thumbnail_px)
        level0 = reader.level_dimensions[0]
        tissue_all = tissue_mask(thumbnail, background=cfg.background)
        pen = pen_mask(thumbnail)
        tissue = tissue_all & ~pen
        fold = fold_mask(thumbnail, tissue)
        sampled = sample_tiles(reader, tissue & ~fold, tile_px=cfg.tile_px, sample_mpp=cfg.sample_mpp,
                               manifest_mpp=given, count=cfg.tiles_per_slide, seed=cfg.seed)
        facts = {"backend": reader.backend, "levels": len(reader.level_dimensions), "slide_mpp": reader.mpp,
                 "objective_power": reader.objective_power, "has_icc_profile": reader.icc_profile is not None,
                 "icc_description": profile_description(reader.icc_profile)}
    finally:
        reader.close()
    pixel_size = tiff_pixel_size(Path(path))
    mpp, problems = audit_resolution(
        slide_mpp=reader.mpp, slide_mpp_y=pixel_size[1] if pixel_size and reader.mpp else None,
        manifest_mpp=given, objective_power=reader.objective_power, magnifications=cfg.magnifications,
        mpp_range=(cfg.mpp_range[0], cfg.mpp_range[1]), power_tolerance=cfg.power_tolerance)
    modality = classify_modality(thumbnail, tissue, dark_background=cfg.dark_background,
                                 dab_share=cfg.dab_share)
    variances = np.array([laplacian_variance(t, cfg.blur_contrast) for t in sampled.pixels])
    blurry = variances < cfg.blur_variance
    downsample = level0[0] / thumbnail.shape[1]
    tissue_px, covered = int(tissue.sum()), max(1, int((tissue | pen).sum()))
    area = tissue_px * (level0[0] / thumbnail.shape[1]) * (level0[1] / thumbnail.shape[0])
    m: dict[str, Any] = {
        "slide_id": slide_id, "case_id": case_id, "path": path, "width": level0[0], "height": level0[1],
        "mpp": mpp, "manifest_mpp": given, **facts,
        "tissue_fraction": tissue_px / tissue.size,
        "tissue_area_mm2": area * mpp * mpp / 1e6 if mpp else None,
        "modality": modality.verdict, "background_value": modality.background_value,
        "bright_signal_fraction": modality.bright_signal_fraction, "dab_fraction": modality.dab_fraction,
        "eosin_fraction": modality.eosin_fraction,
        **_stain(sampled.pixels, thumbnail, tissue, cfg.background),
        "tiles_sampled": len(variances),
        "laplacian_var_median": float(np.median(variances)) if len(variances) else None,
        "blurry_fraction": float(blurry.mean()) if len(variances) else 0.0,
        "pen_fraction": float(pen.sum()) / covered, "fold_fraction": float(fold.sum()) / covered,
    }
    decision, reasons = decide(m, cfg, problems)
    # Only defects that flag the slide mark regions to leave out: specks below a defect's threshold
    # (a few dark pixels of a clean slide) would otherwise drop tiles of a slide that passed.
    shown = np.zeros_like(tissue)
    if m["pen_fraction"] > cfg.pen_fraction:
        shown |= pen
    if m["fold_fraction"] > cfg.fold_fraction:
        shown |= fold
    if m["blurry_fraction"] > cfg.blur_fraction:
        shown |= boxes_mask(tissue.shape, sampled.boxes[blurry], level0)
    flagged = dilate(shown, cfg.mask_margin_px)
    out = Path(cfg.out_dir)
    thumb_path = slide_file(out / THUMBNAILS, slide_id, ".png")
    mask_path = slide_file(out / MASKS, slide_id, ".png")
    title = f"{slide_id}: {decision.upper()}" + (f" ({reasons[0]})" if reasons else "")
    _save_png(qc_thumbnail(thumbnail, pen=pen, fold=fold, boxes=sampled.boxes, blurry=blurry,
                           level0_size=level0, title=title[:120], decision=decision), thumb_path)
    if decision != FAIL and flagged.any():
        _save_png(Image.fromarray(flagged.astype(np.uint8) * 255), mask_path)
    has_mask = decision != FAIL and flagged.any()
    m.update({"decision": decision, "reason": "; ".join(reasons),
              "flagged_fraction": float((flagged & (tissue | pen)).sum()) / covered,
              "thumbnail": str(thumb_path.relative_to(out)),
              "mask": str(mask_path.relative_to(out)) if has_mask else None,
              "mask_downsample": downsample if has_mask else None})
    return m
