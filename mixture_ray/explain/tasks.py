"""Where explain's GPU work runs: Ray tasks that request ``num_gpus`` from the configuration.

The NMF fit is one task that reads the grids from the fit folder and writes ``k<K>.pt`` beside
them; apply is one task per slide that reads its grid and H and writes its maps. Only settings,
paths, summary rows and device records travel through Ray; the kernels (fitting.py, apply.py,
nmf.py) hold no Ray code. Each task reports the device its torch used and its Ray node.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from mixture_ray.report import Failure

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from mixture_ray.explain.config import ExplainFitConfig, GridRun


@dataclasses.dataclass(frozen=True)
class TaskPlace:
    """Where one task ran: its torch device label (``cpu``, ``cuda:0``) and its Ray node id."""

    device: str
    node: str


def task_gpus(run: GridRun) -> float:
    """GPUs each explain task requests for the run settings.

    Args:
        run: the run settings (``num_gpus``: ``auto`` or a number; ``device: cpu`` requests none).

    Returns:
        A number is requested as given (an autoscaler can start a GPU node for it); ``auto`` is 1
        when the running cluster has a GPU now, else 0.
    """
    from mixture_ray.ray_runtime import gpus_per_actor

    if run.device == "cpu":
        return 0.0
    return gpus_per_actor("auto" if run.num_gpus == "auto" else str(run.num_gpus))


def devices_record(places: Sequence[TaskPlace], gpus: float) -> dict[str, Any]:
    """The ``devices`` entry of a ``_SUCCESS`` record.

    Args:
        places: where each task ran.
        gpus: the GPUs each task requested.

    Returns:
        ``{"nmf": device labels (comma-joined when tasks differ), "num_gpus_per_task": gpus,
        "nodes": sorted Ray node ids}``.
    """
    return {"nmf": ", ".join(sorted({p.device for p in places})), "num_gpus_per_task": gpus,
            "nodes": sorted({p.node for p in places})}


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def _set_threads(task_cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(task_cpus)))


def _fit_task(cfg: ExplainFitConfig, grids: Path, slide_ids: list[str],
              out: Path) -> tuple[list[dict[str, Any]], TaskPlace]:
    from mixture_ray.explain.fitting import fit_grids

    _set_threads(cfg.task_cpus)
    rows, device = fit_grids(grids, slide_ids, cfg.n_classes, n_vectors=cfg.sample_vectors,
                             max_iter=cfg.max_iter, tol=cfg.tol, seed=cfg.seed, device=cfg.device,
                             out=out)
    return rows, TaskPlace(device, _node_id())


def fit_in_task(cfg: ExplainFitConfig, grids: Path, slide_ids: Sequence[str],
                out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fit the NMF per K in one Ray task (``num_cpus=task_cpus``, ``num_gpus`` from ``cfg``).

    Args:
        cfg: the fit settings (K values, sampling, NMF settings, device, task resources).
        grids: the grids folder the task reads (a path every node sees).
        slide_ids: the slides whose grids are sampled.
        out: the NMF folder the task writes ``k<K>.pt`` into.

    Returns:
        (one summary row per K, the ``devices`` record). An error in the task is raised here.
    """
    import ray

    from mixture_ray.ray_runtime import ensure_ray

    ensure_ray()
    gpus = task_gpus(cfg)
    task = ray.remote(_fit_task).options(num_cpus=cfg.task_cpus, num_gpus=gpus)
    rows, place = ray.get(task.remote(cfg, grids, list(slide_ids), out))
    return rows, devices_record([place], gpus)


def _apply_task(grid_folder: Path, nmf_dir: Path, ks: tuple[int, ...], device: str, task_cpus: float,
                out: Path, target: int) -> tuple[str | None, str, TaskPlace | None]:
    """One slide's apply; any error is returned (as extract_slide does), not raised."""
    from mixture_ray.explain.apply import apply_grid

    try:
        _set_threads(task_cpus)
        applied = apply_grid(grid_folder, nmf_dir, ks, device=device, out=out, target=target)
    except Exception as exc:  # one slide failing must not stop the others
        return f"{type(exc).__name__}: {exc}", "", None
    return None, applied.summary(), TaskPlace(applied.device, _node_id())


def apply_in_tasks(grids: Path, slide_ids: Sequence[str], nmf_dir: Path, ks: Sequence[int],
                   run: GridRun, out: Path, *, target: int
                   ) -> tuple[dict[str, str], list[Failure], dict[str, Any]]:
    """Apply the fitted NMF to every slide, one Ray task per slide (``num_gpus`` from ``run``).

    Args:
        grids: the grids folder (``<slide_id>/`` per slide), read by the tasks.
        slide_ids: the slides to apply.
        nmf_dir: the fitted NMF folder, read by the tasks.
        ks: the class counts K applied.
        run: device, GPUs and CPUs of the tasks.
        out: the apply folder; each slide's maps go to ``out/<slide_id>``.
        target: the class the grids' GradCAM is of (``positive_class``), named in its figures.

    Returns:
        (slide id -> a short description (grid size, tiles, the GradCAM figures written or why
        none were), for slides done; failed slides with the reason; the ``devices`` record of the
        slides done).
    """
    import ray

    from mixture_ray.ray_runtime import ensure_ray

    ensure_ray()
    gpus = task_gpus(run)
    task = ray.remote(_apply_task).options(num_cpus=run.task_cpus, num_gpus=gpus)
    refs = [task.remote(grids / i, nmf_dir, tuple(ks), run.device, run.task_cpus, out / i, target)
            for i in slide_ids]
    done: dict[str, str] = {}
    failures: list[Failure] = []
    places: list[TaskPlace] = []
    for slide_id, ref in zip(slide_ids, refs, strict=True):
        try:
            error, text, place = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker died (retries spent), or similar
            error, text, place = f"{type(exc).__name__}: {exc}", "", None
        if error is not None or place is None:
            failures.append(Failure(slide_id, str(grids / slide_id), error or "no result"))
        else:
            done[slide_id] = text
            places.append(place)
    return done, failures, devices_record(places, gpus)
