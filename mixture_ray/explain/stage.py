"""`mixture-ray explain fit|apply|analyse`: the three drivers.

GPU work runs in Ray tasks that request ``num_gpus`` (see :mod:`mixture_ray.explain.tasks`): a task
per slide for grids, one task for the NMF fit, a task per slide for the NMF apply. The driver only
plans, collects small results and writes the markers.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError, StageIncompleteError
from mixture_ray.explain.config import GridSpec
from mixture_ray.explain.extract import extract_slide, load_grid
from mixture_ray.report import Failure, LinesReport
from mixture_ray.store.folder import (
    SUCCESS,
    StageFolder,
    read_settings,
    require_complete,
    write_json_atomic,
)

if TYPE_CHECKING:
    from mixture_ray.explain.config import (
        ExplainAnalyseConfig,
        ExplainApplyConfig,
        ExplainFitConfig,
        GridRun,
    )


def build_grids(spec: GridSpec, run: GridRun, manifest: Path,
                grids: Path) -> tuple[list[str], list[Failure]]:
    """Activation grid of every manifest slide, one Ray task per slide (resumable).

    Args:
        spec: the network, layer and tiling.
        run: device, GPU, batch, memory and CPU settings of the tasks.
        manifest: the slides.
        grids: the grids folder (``<slide_id>/`` per slide).

    Returns:
        (ids of the slides with a grid, failed slides).
    """
    import ray

    from mixture_ray.explain.tasks import task_gpus
    from mixture_ray.ray_runtime import ensure_ray
    from mixture_ray.store.manifest import read_manifest

    frame = read_manifest(manifest)
    folder = StageFolder(grids, stage="explain-grids", item_column=None)
    folder.prepare(spec.settings())
    ensure_ray()
    gpus = task_gpus(run)
    task = ray.remote(extract_slide).options(num_cpus=run.task_cpus, num_gpus=gpus)
    rows: list[dict[Any, Any]] = frame.to_dict("records")
    refs = [task.remote(spec, run, grids, str(r["slide_id"]), str(r["path"]), _mpp(r.get("mpp")))
            for r in rows]
    errors = ray.get(refs)
    failures = [Failure(str(r["slide_id"]), str(r["path"]), e)
                for r, e in zip(rows, errors, strict=True) if e is not None]
    ids = [str(r["slide_id"]) for r in rows]
    folder.finish(requested=ids, failures=failures, extra={})
    return [i for i in ids if (grids / i / SUCCESS).exists()], failures


def _mpp(value: Any) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def raise_all_failed(failures: list[Failure]) -> None:
    """Every slide failed: raise with the first reasons."""
    detail = "; ".join(f"{f.item_id}: {f.error}" for f in failures[:5])
    raise StageIncompleteError(f"explain: no slide produced an activation grid ({detail})")


def run_fit(cfg: ExplainFitConfig) -> LinesReport:
    """Grids of the training slides, then NMF per K on a sample of their feature vectors.

    The NMF runs in one Ray task (``num_gpus`` from ``cfg``) that reads the grids and writes
    ``k<K>.pt``; ``_SUCCESS`` records its device and node under ``devices``.

    Args:
        cfg: the fit settings; the grid settings are recorded in ``out_dir/nmf/_settings.json``.

    Returns:
        The report: one line per K (vectors, relative error, iterations), failed slides.
    """
    from mixture_ray.explain.tasks import fit_in_task

    np.seterr(all="ignore")
    spec = cfg.grid_spec()
    grids = Path(cfg.out_dir) / "grids"
    ids, failures = build_grids(spec, cfg.run_settings(), cfg.manifest, grids)
    if not ids:
        raise_all_failed(failures)
    out = Path(cfg.out_dir) / "nmf"
    folder = StageFolder(out, stage="explain-fit", item_column=None)
    folder.prepare({"grid": spec.settings(), "n_classes": list(cfg.n_classes),
                    "sample_vectors": cfg.sample_vectors, "max_iter": cfg.max_iter, "tol": cfg.tol,
                    "seed": cfg.seed})
    rows, devices = fit_in_task(cfg, grids, ids, out)
    lines = tuple(f"  K={row['k']}: {row['n_vectors']} vectors x {row['channels']} channels, "
                  f"relative error {row['relative_err']:.4f}, {row['n_iter']} iterations, "
                  f"{row['seconds']:.1f}s" for row in rows)
    ok = folder.finish(requested=ids, failures=failures,
                       extra={"fits": rows, "slides": ids, "devices": devices})
    return LinesReport(f"explain fit: {out}", out, lines, failures, ok)


def fitted_nmf(cfg: ExplainApplyConfig) -> tuple[Path, GridSpec, tuple[int, ...]]:
    """The fitted NMF folder (complete), its grid settings, and the K values to apply."""
    path = Path(cfg.nmf_dir) if cfg.nmf_dir is not None else Path(cfg.out_dir) / "nmf"
    require_complete(path, "explain fit")
    fitted = read_settings(path)
    if "grid" not in fitted:
        raise ConfigError(f"{path} was fitted by an earlier version of mixture_ray; rerun explain fit "
                          "into a new out_dir (or delete that nmf/ folder first)")
    spec = build_config(GridSpec, fitted["grid"])
    ks = tuple(cfg.n_classes) if cfg.n_classes is not None else tuple(fitted["n_classes"])
    missing = [k for k in ks if k not in fitted["n_classes"]]
    if missing:
        raise ConfigError(f"n_classes: K={missing} not fitted in {path} (fitted: {fitted['n_classes']})")
    return path, spec, ks


def run_apply(cfg: ExplainApplyConfig) -> LinesReport:
    """Grids of the manifest's slides, W with the fitted H, class maps and figures per slide and K.

    The NMF apply runs in one Ray task per slide (``num_gpus`` from ``cfg``); a slide that fails
    there is recorded in the failures table while the others finish. ``_SUCCESS`` records the
    tasks' devices and nodes under ``devices``.

    Args:
        cfg: the apply settings; the network, layer and tiling come from the fitted NMF folder.

    Returns:
        The report: one line per slide (grid size, tiles, the GradCAM figures written into the
        slide's folder or why there are none), failed slides.
    """
    from mixture_ray.explain.tasks import apply_in_tasks

    np.seterr(all="ignore")
    fitted, spec, ks = fitted_nmf(cfg)
    grids = Path(cfg.out_dir) / "grids"
    ids, failures = build_grids(spec, cfg.run_settings(), cfg.manifest, grids)
    out = Path(cfg.out_dir) / "apply"
    folder = StageFolder(out, stage="explain-apply", item_column=None)
    folder.prepare({"nmf_dir": fitted, "n_classes": list(ks)})
    done, apply_failures, devices = apply_in_tasks(grids, ids, fitted, ks, cfg.run_settings(), out,
                                                   target=spec.positive_class)
    lines = [f"  {slide_id}: {text} -> {out / slide_id}" for slide_id, text in done.items()]
    requested = [*ids, *(f.item_id for f in failures)]
    failures = [*failures, *apply_failures]
    ok = folder.finish(requested=requested, failures=failures,
                       extra={"slides": list(done), "nmf_dir": str(fitted), "n_classes": list(ks),
                              "devices": devices})
    return LinesReport(f"explain apply: {out}", out, tuple(lines), failures, ok)


def run_analyse(cfg: ExplainAnalyseConfig) -> LinesReport:
    """Analyses and plots per K over every applied slide; writes ``analysis/summary.json``.

    With ``seed_runs`` (explain folders of the same check under other seeds, each analysed), each
    K's class-order-free numbers are tabulated per run with their mean and std
    (:mod:`mixture_ray.explain.spread`): ``analysis/seed_spread.csv`` and ``seed_spread`` in that
    K's entry of ``summary.json``.

    Args:
        cfg: the analyse settings; ``out_dir`` holds a complete ``apply/``.

    Returns:
        The report: one headline per K (logistic AUC, best IoU with the truth masks), and with
        ``seed_runs`` the mean ± std of AUC, truth IoU and correlation, and GradCAM IoU and
        correlation.
    """
    from mixture_ray.explain.report import analyse_k

    np.seterr(all="ignore")
    root = Path(cfg.out_dir)
    require_complete(root / "apply", "explain apply")
    applied = json.loads((root / "apply" / SUCCESS).read_text())
    fitted = Path(applied["nmf_dir"])
    applied_ks = applied.get("n_classes") or read_settings(root / "apply")["n_classes"]  # earlier versions
    ks = tuple(cfg.n_classes) if cfg.n_classes is not None else tuple(applied_ks)
    missing = [k for k in ks if k not in applied_ks]
    if missing:
        raise ConfigError(f"n_classes: K={missing} not applied in {root / 'apply'} "
                          f"(applied: {applied_ks})")
    others = _seed_runs(cfg, ks)  # read first: a missing K or other thresholds stop here
    out = root / "analysis"
    folder = StageFolder(out, stage="explain-analyse", item_column=None)
    folder.prepare({"n_classes": list(ks), "masks_dir": cfg.masks_dir,
                    "weight_threshold": cfg.weight_threshold,
                    "cam_threshold": cfg.cam_threshold, "seed": cfg.seed})
    grids = [load_grid(root / "grids" / s) for s in applied["slides"]]
    results: dict[str, Any] = {}
    lines = []
    for k in ks:
        start = time.perf_counter()
        results[f"k{k}"] = analyse_k(cfg, k, grids, root / "apply", fitted, out / f"k{k}")
        lines.append(f"  K={k}: {_headline(results[f'k{k}'])} ({time.perf_counter() - start:.1f}s)")
    lines += _add_spread(results, others, (str(root), int(read_settings(fitted).get("seed", 0))), out)
    write_json_atomic(out / "summary.json", results)
    folder.finish(requested=[], failures=[], extra={"seed_runs": [label for label, _, _ in others]})
    return LinesReport(f"explain analyse: {out}", out, tuple(lines), [], True)


def _seed_runs(cfg: ExplainAnalyseConfig, ks: tuple[int, ...]) -> list[tuple[str, int, dict[str, Any]]]:
    """(folder, fit seed, its summary of the K values ``ks``) of each of ``cfg.seed_runs``."""
    runs = []
    for run in cfg.seed_runs:
        analysis = Path(run) / "analysis"
        require_complete(analysis, "explain analyse")
        settings = read_settings(analysis)
        for key in ("weight_threshold", "cam_threshold"):
            if settings.get(key) != getattr(cfg, key):
                raise ConfigError(f"seed_runs: {run} was analysed with {key} {settings.get(key)} "
                                  f"(here {getattr(cfg, key)}); analyse it again with the same")
        summary = json.loads((analysis / "summary.json").read_text())
        missing = [k for k in ks if f"k{k}" not in summary]
        if missing:
            raise ConfigError(f"seed_runs: K={missing} not analysed in {analysis}")
        applied = json.loads((Path(run) / "apply" / SUCCESS).read_text())
        seed = int(read_settings(Path(applied["nmf_dir"])).get("seed", 0))
        runs.append((str(run), seed, {f"k{k}": summary[f"k{k}"] for k in ks}))
    return runs


def _add_spread(results: dict[str, Any], others: list[tuple[str, int, dict[str, Any]]],
                here: tuple[str, int], out: Path) -> list[str]:
    """Each K's spread over this run and ``others`` into ``results`` and seed_spread.csv; its lines."""
    from mixture_ray.explain.spread import seed_spread, seed_table, spread_lines, write_spread

    csv = out / "seed_spread.csv"
    if not others:
        csv.unlink(missing_ok=True)  # an earlier analysis's, with other runs
        return []
    table = seed_table([(*here, results), *others])
    write_spread(table, csv)
    lines = []
    for result in results.values():
        result["seed_spread"] = seed_spread(table, result["k"])
        lines += spread_lines(result["seed_spread"], result["k"])
    return [*lines, f"  per run, with mean and std: {csv}"]


def _headline(result: dict[str, Any]) -> str:
    parts = []
    lr = result.get("logistic", {})
    if "auc" in lr:
        parts.append(f"logistic AUC {lr['auc']:.3f}")
    if "truth" in result:
        best = [f"{c['best_finding']}:{c['best_iou']:.2f}" for c in result["truth"]["per_class"]]
        parts.append("best IoU " + ", ".join(best))
    return "; ".join(parts) or "done"
