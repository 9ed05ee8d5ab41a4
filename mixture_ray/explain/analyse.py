"""Analyses of NMF classes.

Weight correlations, H cosine similarity, logistic regression to the model's prediction, GradCAM
IoU / correlation by predicted label, and IoU with truth masks.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mixture_ray.explain.extract import SlideGrid


def tile_windows(grid: SlideGrid, weights: np.ndarray
                 ) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
    """Per tile: (pred, weights of its kept cells (h, w, K), its GradCAM (h, w) or None)."""
    rows, cols = grid.count.shape
    out = []
    table = grid.tiles[["r0", "c0", "r1", "c1", "pred"]].to_numpy(np.int64)
    for i, (tr0, tc0, tr1, tc1, pred) in enumerate(table):
        r0, c0, r1, c1 = max(tr0, 0), max(tc0, 0), min(tr1, rows), min(tc1, cols)
        if r1 <= r0 or c1 <= c0:
            continue
        cam = None
        if grid.cams is not None:
            cam = grid.cams[i][r0 - tr0: r1 - tr0, c0 - tc0: c1 - tc0]
        out.append((int(pred), weights[r0:r1, c0:c1], cam))
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def weight_correlation(windows: Sequence[tuple[int, np.ndarray, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over tiles of the K x K Pearson correlation of class weights within a tile."""
    mats = []
    for _, w, _ in windows:
        flat = w.reshape(-1, w.shape[-1])
        if flat.shape[0] < 3:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            mats.append(np.corrcoef(flat.T))
    if not mats:
        k = windows[0][1].shape[-1] if windows else 0
        return np.full((k, k), np.nan), np.full((k, k), np.nan)
    stack = np.stack(mats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0), np.nanstd(stack, axis=0)


def cosine_similarity(h: np.ndarray) -> np.ndarray:
    """K x K cosine similarity of the class vectors (rows of H)."""
    norm = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
    return np.asarray(norm @ norm.T)


def logistic(windows: Sequence[tuple[int, np.ndarray, Any]], seed: int) -> dict[str, Any]:
    """Logistic regression from per-tile class-weight sums to the model's predicted label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
        roc_curve,
    )
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([w.reshape(-1, w.shape[-1]).sum(axis=0) for _, w, _ in windows])
    y = np.array([p for p, _, _ in windows])
    result: dict[str, Any] = {"n_tiles": len(y), "n_positive": int(y.sum())}
    if len(y) < 4 or y.min() == y.max() or min(y.sum(), len(y) - y.sum()) < 2:
        result["note"] = "the model predicts one label for (almost) every tile; no regression"
        return result
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_tr, y_tr)
    score = clf.predict_proba(x_te)[:, 1]
    pred = (score >= 0.5).astype(int)
    fpr, tpr, _ = roc_curve(y_te, score)
    result.update({
        "coefficients": clf[-1].coef_[0].tolist(), "intercept": float(clf[-1].intercept_[0]),
        "accuracy": float(accuracy_score(y_te, pred)),
        "precision": float(precision_score(y_te, pred, zero_division=0)),
        "recall": float(recall_score(y_te, pred, zero_division=0)),
        "f1": float(f1_score(y_te, pred, zero_division=0)),
        "auc": float(roc_auc_score(y_te, score)), "n_test": len(y_te),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}})
    return result


def gradcam_agreement(windows: Sequence[tuple[int, np.ndarray, np.ndarray | None]],
                      class_max: np.ndarray, weight_threshold: float, cam_threshold: float
                      ) -> pd.DataFrame:
    """Agreement of each class's weight with GradCAM, per class and predicted label.

    Mean and std over tiles (``iou``, ``iou_std``) of the IoU of (weight > thr * class max) with
    (GradCAM > thr * tile max), and of the Pearson correlation of weight with GradCAM (``corr``,
    ``corr_std``); the std is the sample std (ddof 1), NaN for a single tile.
    """
    rows = []
    for pred, w, cam in windows:
        if cam is None or cam.max() <= 0:
            continue
        cam_region = cam > cam_threshold * cam.max()
        for k in range(w.shape[-1]):
            region = w[..., k] > weight_threshold * class_max[k]
            union = (region | cam_region).sum()
            iou = float((region & cam_region).sum() / union) if union else float("nan")
            rows.append({"pred": pred, "cls": k, "iou": iou,
                         "corr": _corr(w[..., k].ravel(), cam.ravel())})
    frame = pd.DataFrame(rows, columns=["pred", "cls", "iou", "corr"])
    return frame.groupby(["pred", "cls"], as_index=False).agg(
        iou=("iou", "mean"), iou_std=("iou", "std"), corr=("corr", "mean"),
        corr_std=("corr", "std"), n_tiles=("iou", "size"))


def cell_truth(mask: np.ndarray, mask_downsample: int, shape: tuple[int, int],
               cell_level0: float) -> np.ndarray:
    """Majority finding code of every grid cell (rows x cols) from a level-0-aligned mask."""
    from mixture_ray.synth import tile_ground_truth

    size = max(1, round(cell_level0))
    out = np.zeros(shape, np.int16)
    for r in range(shape[0]):
        for c in range(shape[1]):
            out[r, c] = tile_ground_truth(mask, mask_downsample, round(c * cell_level0),
                                          round(r * cell_level0), size)[0]
    return out


def truth_iou(pairs: Sequence[tuple[np.ndarray, np.ndarray]], k: int, n_codes: int) -> np.ndarray:
    """K x codes IoU of argmax-class regions with truth-code regions, pooled over slides.

    ``pairs`` holds (classes, truth) grids per slide; cells with class -1 are ignored.
    """
    inter = np.zeros((k, n_codes))
    area_c = np.zeros(k)
    area_t = np.zeros(n_codes)
    for classes, truth in pairs:
        ok = classes >= 0
        cl, tr = classes[ok].astype(int), truth[ok].astype(int)
        np.add.at(inter, (cl, tr), 1)
        area_c += np.bincount(cl, minlength=k)[:k]
        area_t += np.bincount(tr, minlength=n_codes)[:n_codes]
    union = area_c[:, None] + area_t[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def truth_correlation(triples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], n_codes: int
                      ) -> np.ndarray:
    """K x codes Pearson correlation of class weight with truth-code presence, pooled over slides.

    Args:
        triples: per slide (weights rows x cols x K, covered cells rows x cols, truth codes rows x
            cols); only covered cells count.
        n_codes: the number of truth codes.

    Returns:
        The correlation of each class's weight with the 0/1 indicator of each code over the
        covered cells (from float64 sums, so no cohort-sized copy); NaN where either is constant.
    """
    k = triples[0][0].shape[-1] if triples else 0
    n, sw, sww = 0, np.zeros(k), np.zeros(k)
    st, swt = np.zeros(n_codes), np.zeros((k, n_codes))
    for weights, valid, truth in triples:
        w, t = weights[valid].astype(np.float64), truth[valid].astype(np.int64)
        n += len(w)
        sw += w.sum(axis=0)
        sww += (w * w).sum(axis=0)
        st += np.bincount(t, minlength=n_codes)[:n_codes]
        for c in range(k):
            swt[c] += np.bincount(t, weights=w[:, c], minlength=n_codes)[:n_codes]
    if n == 0:
        return np.full((k, n_codes), np.nan)
    cov = swt / n - np.outer(sw / n, st / n)
    var_w = np.maximum(sww / n - (sw / n) ** 2, 0.0)
    var_t = st / n * (1 - st / n)  # a 0/1 indicator
    denom = np.sqrt(np.outer(var_w, var_t))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 1e-12, cov / denom, np.nan)
