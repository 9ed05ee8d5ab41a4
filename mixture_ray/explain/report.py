"""One K's analyses over all applied slides: numbers (JSON-ready) plus their figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.explain import analyse, plots
from mixture_ray.explain.fitting import load_h

if TYPE_CHECKING:
    from mixture_ray.explain.config import ExplainAnalyseConfig
    from mixture_ray.explain.extract import SlideGrid


def analyse_k(cfg: ExplainAnalyseConfig, k: int, grids: list[SlideGrid], apply_dir: Path,
              nmf_dir: Path, out: Path) -> dict[str, Any]:
    """Correlations, cosine similarity, logistic regression, GradCAM and truth IoU for one K."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    h = load_h(nmf_dir, k, torch.device("cpu")).numpy()
    weights = {g.slide_id: np.load(apply_dir / g.slide_id / f"k{k}_weights.npy") for g in grids}
    windows = [w for g in grids for w in analyse.tile_windows(g, weights[g.slide_id])]
    mean, std = analyse.weight_correlation(windows)
    cos = analyse.cosine_similarity(h)
    plots.matrix(mean, out / "weight_correlation.png", f"K={k}: class weight correlation "
                 "(mean ± std over tiles)", err=std)
    plots.matrix(cos, out / "h_cosine.png", f"K={k}: cosine similarity of H rows", vmin=0.0)
    result: dict[str, Any] = {"k": k, "weight_corr_mean": mean.tolist(),
                              "weight_corr_std": std.tolist(), "h_cosine": cos.tolist()}
    lr = analyse.logistic(windows, cfg.seed)
    result["logistic"] = {key: v for key, v in lr.items() if key != "roc"}
    if "roc" in lr:
        plots.roc(np.array(lr["roc"]["fpr"]), np.array(lr["roc"]["tpr"]), lr["auc"],
                  out / "logistic_roc.png", f"K={k}: class sums -> model prediction")
        plots.bars({"coefficient": np.array(lr["coefficients"])}, out / "logistic_coef.png",
                   f"K={k}: logistic coefficients (standardised)", "coefficient")
    class_max = np.max([w.reshape(-1, k).max(axis=0) for w in weights.values()], axis=0)
    agree = analyse.gradcam_agreement(windows, class_max, cfg.weight_threshold, cfg.cam_threshold)
    result["gradcam"] = agree.to_dict(orient="records")
    if len(agree):
        for metric in ("iou", "corr"):
            groups = {f"predicted {p}": _by_class(agree[agree.pred == p], metric, k)
                      for p in sorted(agree.pred.unique())}
            plots.bars(groups, out / f"gradcam_{metric}.png", f"K={k}: GradCAM {metric} "
                       "by predicted label", metric)
    if cfg.masks_dir is not None:
        result["truth"] = _truth(cfg, k, grids, weights, apply_dir, out)
    return result


def _by_class(frame: Any, metric: str, k: int) -> np.ndarray:
    values = np.full(k, np.nan)
    for row in frame.itertuples(index=False):
        values[int(row.cls)] = getattr(row, metric)
    return values


def _truth(cfg: ExplainAnalyseConfig, k: int, grids: list[SlideGrid], weights: dict[str, np.ndarray],
           apply_dir: Path, out: Path) -> dict[str, Any]:
    from mixture_ray.synth import FINDINGS, read_mask

    assert cfg.masks_dir is not None
    pairs, triples = [], []
    for g in grids:
        mask_path = Path(cfg.masks_dir) / f"{g.slide_id}.png"
        if not mask_path.exists():
            continue
        truth = analyse.cell_truth(read_mask(mask_path), cfg.mask_downsample, g.count.shape,
                             float(g.meta["cell_level0"]))
        pairs.append((np.load(apply_dir / g.slide_id / f"k{k}_classes.npy"), truth))
        triples.append((weights[g.slide_id], g.count > 0, truth))
    names = [f.name for f in sorted(FINDINGS, key=lambda f: f.code)]
    iou = analyse.truth_iou(pairs, k, len(names))
    corr = analyse.truth_correlation(triples, len(names))
    plots.matrix(iou, out / "truth_iou.png", f"K={k}: IoU of NMF class with planted finding",
                 xlabels=names, vmin=0.0)
    plots.matrix(corr, out / "truth_corr.png", f"K={k}: correlation of NMF class weight with planted "
                 "finding", xlabels=names)
    per_class = []
    for c in range(k):
        best = int(iou[c].argmax())
        per_class.append({"cls": c, "best_finding": names[best], "best_iou": float(iou[c].max()),
                          "corr": float(corr[c, best])})
    return {"slides": len(pairs), "iou": iou.tolist(), "corr": corr.tolist(), "findings": names,
            "per_class": per_class}
