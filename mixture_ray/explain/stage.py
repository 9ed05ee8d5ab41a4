"""`mixture-ray explain fit|apply|analyse`: the stage driver (Ray task per slide for grids)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mixture_ray.explain.extract import extract_slide, grid_settings, load_grid
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import SUCCESS, StageFolder, require_complete, write_json_atomic

if TYPE_CHECKING:
    from mixture_ray.explain.config import ExplainConfig


@dataclasses.dataclass(frozen=True)
class ExplainReport(Report):
    """What one explain action wrote: its folder, one line per K, and failed slides."""

    action: str
    out_dir: Path
    lines: tuple[str, ...]
    failures: list[Failure]
    complete: bool

    def summary(self) -> str:
        """The action's folder and one line per K (or per slide)."""
        return "\n".join([f"explain {self.action}: {self.out_dir}", *self.lines])


def build_grids(cfg: ExplainConfig) -> tuple[list[str], list[Failure]]:
    """Activation grid of every manifest slide, one Ray task per slide (resumable)."""
    import ray

    from mixture_ray.ray_runtime import ensure_ray
    from mixture_ray.store.manifest import read_manifest

    assert cfg.manifest is not None
    frame = read_manifest(Path(cfg.manifest))
    root = Path(cfg.out_dir) / "grids"
    folder = StageFolder(root, stage="explain-grids", item_column=None)
    folder.prepare(grid_settings(cfg))
    ensure_ray()
    gpus = 1 if cfg.device != "cpu" and torch.cuda.is_available() else 0
    task = ray.remote(extract_slide).options(num_cpus=cfg.task_cpus, num_gpus=gpus)
    rows: list[dict[Any, Any]] = frame.to_dict("records")
    refs = [task.remote(cfg, str(r["slide_id"]), str(r["path"]), _mpp(r.get("mpp"))) for r in rows]
    errors = ray.get(refs)
    failures = [Failure(str(r["slide_id"]), str(r["path"]), e)
                for r, e in zip(rows, errors, strict=True) if e is not None]
    ids = [str(r["slide_id"]) for r in rows]
    folder.finish(requested=ids, failures=failures, extra={})
    return [i for i in ids if (root / i / SUCCESS).exists()], failures


def _mpp(value: Any) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def run_fit(cfg: ExplainConfig) -> ExplainReport:
    """Grids of the training slides, then NMF per K on a sample of their feature vectors."""
    from mixture_ray.explain.fitting import fit_nmf, sample_vectors

    ids, failures = build_grids(cfg)
    if not ids:
        raise_all_failed(failures)
    grids = [load_grid(Path(cfg.out_dir) / "grids" / i) for i in ids]
    vectors = sample_vectors(grids, cfg.sample_vectors, cfg.seed)
    out = Path(cfg.out_dir) / "nmf"
    folder = StageFolder(out, stage="explain-fit", item_column=None)
    folder.prepare({**grid_settings(cfg), "n_classes": cfg.n_classes, "slides": ids,
                    "sample_vectors": cfg.sample_vectors, "seed": cfg.seed})
    rows = fit_nmf(vectors, cfg.n_classes, max_iter=cfg.max_iter, tol=cfg.tol, seed=cfg.seed,
                   device=cfg.device, out=out)
    lines = tuple(f"  K={row['k']}: {row['n_vectors']} vectors x {row['channels']} channels, "
                  f"relative error {row['relative_err']:.4f}, {row['n_iter']} iterations, "
                  f"{row['seconds']:.1f}s" for row in rows)
    ok = folder.finish(requested=ids, failures=failures,
                      extra={"fits": rows, "grid_settings": grid_settings(cfg)})
    return ExplainReport("fit", out, lines, failures, ok)


def raise_all_failed(failures: list[Failure]) -> None:
    """Every slide failed: raise with the first reasons."""
    from mixture_ray.errors import StageIncompleteError

    detail = "; ".join(f"{f.item_id}: {f.error}" for f in failures[:5])
    raise StageIncompleteError(f"explain: no slide produced an activation grid ({detail})")


def nmf_dir(cfg: ExplainConfig) -> Path:
    """The fitted NMF folder (nmf_dir or out_dir/nmf), required complete."""
    path = Path(cfg.nmf_dir) if cfg.nmf_dir is not None else Path(cfg.out_dir) / "nmf"
    require_complete(path, "explain fit")
    fitted = json.loads((path / "settings.json").read_text())
    mine = json.loads(json.dumps(grid_settings(cfg), default=str))
    changed = sorted(k for k in mine if fitted.get(k) != mine[k])
    if changed:
        from mixture_ray.errors import ConfigError

        raise ConfigError(f"{path} was fitted with other grid settings: {', '.join(changed)}")
    return path


def run_apply(cfg: ExplainConfig) -> ExplainReport:
    """Grids of the manifest's slides, W with H fixed, class maps and figures per slide and K."""
    from mixture_ray.explain.apply import apply_slide
    from mixture_ray.explain.fitting import load_h
    from mixture_ray.explain.nmf import resolve_device

    fitted = nmf_dir(cfg)
    ids, failures = build_grids(cfg)
    out = Path(cfg.out_dir) / "apply"
    folder = StageFolder(out, stage="explain-apply", item_column=None)
    folder.prepare({"nmf_dir": fitted, "n_classes": cfg.n_classes})
    device = resolve_device(cfg.device)
    hs = {k: load_h(fitted, k, device) for k in cfg.n_classes}
    lines = []
    for slide_id in ids:
        grid = load_grid(Path(cfg.out_dir) / "grids" / slide_id)
        for h in hs.values():
            apply_slide(grid, h, out / slide_id)
        lines.append(f"  {slide_id}: {grid.count.shape[0]}x{grid.count.shape[1]} cells, "
                     f"{len(grid.tiles)} tiles -> {out / slide_id}")
    ok = folder.finish(requested=[*ids, *(f.item_id for f in failures)],
                      failures=failures, extra={"slides": ids, "nmf_dir": str(fitted)})
    return ExplainReport("apply", out, tuple(lines), failures, ok)


def run_analyse(cfg: ExplainConfig) -> ExplainReport:
    """Analyses and plots per K over every applied slide; writes analysis/summary.json."""
    from mixture_ray.explain.report import analyse_k

    root = Path(cfg.out_dir)
    require_complete(root / "apply", "explain apply")
    applied = json.loads((root / "apply" / SUCCESS).read_text())
    fitted = Path(applied["nmf_dir"])
    out = root / "analysis"
    folder = StageFolder(out, stage="explain-analyse", item_column=None)
    folder.prepare({"n_classes": cfg.n_classes, "masks_dir": cfg.masks_dir,
                    "weight_threshold": cfg.weight_threshold,
                    "cam_threshold": cfg.cam_threshold, "seed": cfg.seed})
    grids = [load_grid(root / "grids" / s) for s in applied["slides"]]
    results: dict[str, Any] = {}
    lines = []
    for k in cfg.n_classes:
        start = time.perf_counter()
        results[f"k{k}"] = analyse_k(cfg, k, grids, root / "apply", fitted, out / f"k{k}")
        lines.append(f"  K={k}: {_headline(results[f'k{k}'])} ({time.perf_counter() - start:.1f}s)")
    write_json_atomic(out / "summary.json", results)
    folder.finish(requested=[], failures=[], extra={})
    return ExplainReport("analyse", out, tuple(lines), [], True)


def _headline(result: dict[str, Any]) -> str:
    parts = []
    lr = result.get("logistic", {})
    if "auc" in lr:
        parts.append(f"logistic AUC {lr['auc']:.3f}")
    if "truth" in result:
        best = [f"{c['best_finding']}:{c['best_iou']:.2f}" for c in result["truth"]["per_class"]]
        parts.append("best IoU " + ", ".join(best))
    return "; ".join(parts) or "done"


def run(cfg: ExplainConfig) -> ExplainReport:
    """Run one explain action: fit, apply or analyse.

    Args:
        cfg: the explain settings; ``cfg.action`` picks the action.

    Returns:
        The action's report (complete unless some slides failed).
    """
    np.seterr(all="ignore")
    return {"fit": run_fit, "apply": run_apply, "analyse": run_analyse}[cfg.action](cfg)
