"""The stages ``bench_scale.py`` runs on one simulated cohort, each measured from the driver.

tile -> embed (random ResNet18) -> cluster (distributed engine) -> classify (a seeded random
ResNet18 classifier) -> maps -> cases (with the k-means baseline) -> review -> export (QuPath,
AnnData, h5). The stores (tiles, embeddings, predictions) live under ``stores``: a local folder,
or an ``s3://`` prefix, when each stage's object-store requests are counted by a loopback proxy.
Clusterings and the outputs of maps, cases, review and export are local folders, as they must be.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

TILE = 64
TILES_PER_SLIDE = 10
K = 8
CLASSES = ("normal_alveolar", "dense_fibrosis", "fibroblastic_foci", "other")
STAGES = ("tile", "embed", "cluster", "classify", "maps", "cases", "review", "export")


class DriverMeter:
    """Wall time, the driver's CPU seconds and its peak RSS (sampled) over one stage."""

    def __enter__(self) -> DriverMeter:
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0, self.t0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self.done.is_set():
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.perf_counter() - self.t0
        self.cpu = usage.ru_utime + usage.ru_stime - self.cpu0
        self.done.set()
        self.thread.join()


def store_files(store: str) -> int:
    """Data files of a store, local or on an object store (Parquet files outside hidden folders)."""
    from mixture_ray.locations import Location

    where = Location.of(store)
    return sum(1 for f in where.files_below()
               if f.name.endswith(".parquet") and not any(p.startswith(".") for p in
                                                           f.path[len(where.path):].split("/")))


def random_classifier(path: Path) -> Path:
    """A seeded random ResNet18 finding classifier at 20x over :data:`CLASSES`."""
    import torch

    from mixture_ray.models import checkpoint as ckpt
    from mixture_ray.models.backbone import Backbone
    from mixture_ray.models.classifier import classifier_payload

    torch.manual_seed(0)
    net = Backbone("resnet18", len(CLASSES), classes=CLASSES).eval()
    ckpt.save(classifier_payload(net, magnification=20.0, image_size=0), path)
    return path


@dataclasses.dataclass
class StageRun:
    """One cohort's stage figures, filled stage by stage."""

    slides: int
    requests: Callable[[], int] | None = None
    stages: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def measure(self, name: str, work: Callable[[], Any], *, rows: int | None = None,
                store: str | None = None) -> Any:
        """Run one stage, refuse an incomplete one, record its figures; its report."""
        before = self.requests() if self.requests else 0
        with DriverMeter() as meter:
            report = work()
        if not getattr(report, "complete", True):
            raise SystemExit(f"bench_scale: {name} incomplete: {report.summary()[:2000]}")
        figures: dict[str, Any] = {
            "wall_s": meter.wall, "driver_cpu_s": meter.cpu,
            "driver_cpu_ms_per_slide": 1000 * meter.cpu / self.slides,
            "driver_peak_rss_bytes": meter.peak, "rows": rows, "files": store_files(store) if store else None}
        if self.requests:
            figures["requests"] = self.requests() - before
            figures["requests_per_slide"] = figures["requests"] / self.slides
        self.stages[name] = figures
        return report


def run_stages(manifest: Path, work: Path, n: int, stores: str,
               requests: Callable[[], int] | None = None) -> dict[str, Any]:
    """Every stage on one cohort in this process (its own local Ray); per-stage figures."""
    import ray

    from mixture_ray.cases.config import CasesConfig
    from mixture_ray.cases.stage import run as run_cases
    from mixture_ray.classify.config import ClassifyConfig
    from mixture_ray.classify.stage import run as run_classify
    from mixture_ray.cluster.config import ClusterConfig
    from mixture_ray.cluster.stage import run as run_cluster
    from mixture_ray.config import build_config
    from mixture_ray.embed.config import EmbedConfig
    from mixture_ray.embed.stage import run as run_embed
    from mixture_ray.export.config import ExportConfig
    from mixture_ray.export.stage import run as run_export
    from mixture_ray.maps.config import MapsConfig
    from mixture_ray.maps.stage import run as run_maps
    from mixture_ray.review.config import ReviewConfig
    from mixture_ray.review.stage import run as run_review
    from mixture_ray.tile.config import TileConfig
    from mixture_ray.tile.stage import run as run_tile

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    tiles, embeddings, predictions = f"{stores}/tiles", f"{stores}/embeddings", f"{stores}/predictions"
    work.mkdir(parents=True, exist_ok=True)
    clusters, classifier = work / "clusters", random_classifier(work / "classifier.pt")
    run = StageRun(n, requests)
    tiled = run.measure("tile", lambda: run_tile(build_config(TileConfig, {
        "manifest": str(manifest), "out_dir": tiles, "tile_size": TILE, "magnifications": [20.0],
        "max_tiles_per_slide": TILES_PER_SLIDE, "pool.workers": 2})), store=tiles)
    run.stages["tile"]["rows"] = tiled.tiles_written
    embedded = run.measure("embed", lambda: run_embed(build_config(EmbedConfig, {
        "tiles": tiles, "out_dir": embeddings, "model": "random", "pool.batch_size": 256})), store=embeddings)
    rows = embedded.tiles_embedded
    run.stages["embed"]["rows"] = rows
    run.measure("cluster", lambda: run_cluster(build_config(ClusterConfig, {
        "embeddings": embeddings, "out_dir": str(clusters), "ks": [K], "silhouette_sample": 0,
        "engine": "distributed", "num_gpus": 0})), rows=rows)
    classified = run.measure("classify", lambda: run_classify(build_config(ClassifyConfig, {
        "tiles": tiles, "classifier": str(classifier), "out_dir": predictions, "pool.batch_size": 256,
        "max_background": 1.0})), store=predictions)
    run.stages["classify"]["rows"] = classified.tiles_classified
    run.measure("maps", lambda: run_maps(build_config(MapsConfig, {
        "manifest": str(manifest), "out_dir": str(work / "maps"), "predictions": [predictions],
        "thumbnail_px": 128})), rows=classified.tiles_classified)
    run.measure("cases", lambda: run_cases(build_config(CasesConfig, {
        "predictions": [predictions], "out_dir": str(work / "cases"), "exclude": [],
        "embeddings": [embeddings], "clusters": str(clusters), "baseline_ks": [K]})), rows=rows)
    run.measure("review", lambda: run_review(build_config(ReviewConfig, {
        "clusters": str(clusters), "tiles": tiles, "out_dir": str(work / "review"), "ks": [K],
        "per_cluster": 48})), rows=rows)
    run.measure("export", lambda: run_export(build_config(ExportConfig, {
        "out_dir": str(work / "export"), "formats": ["qupath", "anndata", "h5"], "predictions": predictions,
        "clusters": str(clusters), "embeddings": embeddings, "tiles": tiles})), rows=rows)
    ray.shutdown()
    return {"slides": n, "stores": "s3" if stores.startswith("s3://") else "local", "stages": run.stages}
