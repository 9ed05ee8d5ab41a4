"""Peak driver memory (RSS) of `review`, `finetune` and `cases` on one synthetic cohort.

``python scripts/driver_memory.py --out driver_memory.json [--quick] [--work DIR]`` builds a cohort
(synth -> tile at 20x, every tissue tile -> embed with a random encoder -> k-means -> oracle review
-> integrate -> classify with a seeded random classifier), then runs each measured stage in a fresh
Python process and reads that process's peak resident set size (``resource.getrusage``,
``ru_maxrss``). Only the driver is measured: Ray workers are other processes. The same cohort
before and after a change shows whether a stage's driver memory scales with the cohort.

The full size takes a few minutes on a quiet machine; ``--quick`` is a smoke run of about a minute.
Prints a table and writes JSON: ``name``, ``unit`` (MiB), ``cohort`` (cases, slides, tiles, labelled
tiles, tile-store bytes) and ``stages`` (stage -> peak RSS MiB and seconds), plus ``hardware``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MEASURED = ("review", "finetune", "cases")
CLASSES = ("normal_alveolar", "dense_fibrosis", "fibroblastic_foci", "other")


def sizes(quick: bool) -> dict[str, Any]:
    """Cohort and stage settings of a full or a quick run."""
    if quick:
        return {"n_cases": 3, "slide_px": 1024, "tile_size": 32, "ks": [4], "per_cluster": 20,
                "epochs": 1, "batch_size": 16}
    return {"n_cases": 12, "slide_px": 4096, "tile_size": 64, "ks": [8], "per_cluster": 120,
            "epochs": 1, "batch_size": 32}


def build_cohort(work: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Synth -> tile -> embed -> cluster -> oracle review -> integrate -> classify, under ``work``.

    Args:
        work: the folder that receives every stage's output.
        settings: :func:`sizes`.

    Returns:
        Facts about the cohort (cases, slides, tiles, labelled tiles, tile-store bytes).
    """
    import pyarrow.parquet as pq
    import ray
    import torch

    from mixture_ray.classify.config import ClassifyConfig
    from mixture_ray.classify.stage import run as run_classify
    from mixture_ray.cluster.config import ClusterConfig
    from mixture_ray.cluster.stage import run as run_cluster
    from mixture_ray.config import build_config
    from mixture_ray.embed.config import EmbedConfig
    from mixture_ray.embed.stage import run as run_embedding
    from mixture_ray.models import checkpoint as ckpt
    from mixture_ray.models.backbone import Backbone
    from mixture_ray.models.classifier import classifier_payload
    from mixture_ray.ray_runtime import ensure_ray
    from mixture_ray.review.config import IntegrateConfig
    from mixture_ray.review.integrate import run_integrate
    from mixture_ray.store.folder import committed_files
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.synth.config import SynthConfig
    from mixture_ray.tile.config import TileConfig
    from mixture_ray.tile.stage import run as run_tiling

    ensure_ray()
    cohort = write_cohort(build_config(SynthConfig, {
        "out_dir": work / "cohort", "n_cases": settings["n_cases"], "width": settings["slide_px"],
        "height": settings["slide_px"], "seed": 0}))
    tiled = run_tiling(build_config(TileConfig, {
        "manifest": cohort.manifest, "out_dir": work / "tiles", "tile_size": settings["tile_size"],
        "magnifications": [20.0], "max_tiles_per_slide": 0, "max_background": 0.7}))
    if not tiled.complete:
        raise SystemExit(f"tiling failed: {tiled.summary()}")
    run_embedding(build_config(EmbedConfig, {
        "tiles": work / "tiles", "out_dir": work / "embeddings", "model": "random", "magnification": 20.0}))
    run_cluster(build_config(ClusterConfig, {
        "embeddings": work / "embeddings", "out_dir": work / "clusters", "ks": settings["ks"],
        "silhouette_sample": 0}))
    findings = [f["name"] for f in json.loads(cohort.findings.read_text())]
    run_stage("review", work, settings, oracle=True)  # the oracle mapping, for the labels
    mapping = sorted((work / "review_setup").glob("mapping-oracle-*.yaml"))[0]
    labels = run_integrate(build_config(IntegrateConfig, {
        "mappings": [mapping], "out_dir": work / "labels", "findings": findings}))
    torch.manual_seed(3)
    net = Backbone("resnet18", len(CLASSES), classes=CLASSES).eval()
    ckpt.save(classifier_payload(net, magnification=20.0, image_size=0), work / "classifier.pt")
    run_classify(build_config(ClassifyConfig, {
        "tiles": work / "tiles", "classifier": work / "classifier.pt", "out_dir": work / "predictions"}))
    ray.shutdown()
    files = committed_files(work / "tiles")
    tiles = pq.read_table(files, columns=["slide_id"])
    return {"cases": settings["n_cases"], "slides": len(set(tiles["slide_id"].to_pylist())),
            "tiles": tiles.num_rows, "labelled_tiles": int(sum(labels.counts.values())),
            "tile_store_bytes": sum(f.stat().st_size for f in files)}


def run_stage(stage: str, work: Path, settings: dict[str, Any], *, oracle: bool = False) -> None:
    """Run one stage on the cohort under ``work`` (in this process).

    Args:
        stage: ``review``, ``finetune`` or ``cases``.
        work: the cohort folder of :func:`build_cohort`.
        settings: :func:`sizes`.
        oracle: review only: also write the oracle mapping (setup), into ``review_setup``.

    Returns:
        None.
    """
    from mixture_ray.config import build_config

    if stage == "review":
        from mixture_ray.review.config import ReviewConfig
        from mixture_ray.review.stage import run as run_review

        findings = [f["name"] for f in json.loads((work / "cohort" / "findings.json").read_text())]
        values: dict[str, Any] = {"clusters": work / "clusters", "tiles": work / "tiles",
                                  "out_dir": work / ("review_setup" if oracle else "review"),
                                  "findings": findings, "per_cluster": settings["per_cluster"]}
        if oracle:
            values["oracle_cohort"] = work / "cohort"
        run_review(build_config(ReviewConfig, values))
    elif stage == "finetune":
        from mixture_ray.finetune.config import FinetuneConfig
        from mixture_ray.finetune.stage import run as run_finetune

        run_finetune(build_config(FinetuneConfig, {
            "labels": work / "labels", "tiles": work / "tiles", "out_dir": work / "finetune",
            "name": f"run-{time.time_ns()}", "model": "random", "magnification": 20.0,
            "image_size": 32, "epochs": settings["epochs"], "batch_size": settings["batch_size"],
            "train.checkpoint_every": 1000, "train.keep_checkpoints": 1}))
    elif stage == "cases":
        from mixture_ray.cases.config import CasesConfig
        from mixture_ray.cases.stage import run as run_cases

        run_cases(build_config(CasesConfig, {
            "predictions": [work / "predictions"], "out_dir": work / f"cases-{time.time_ns()}",
            "embeddings": [work / "embeddings"], "clusters": work / "clusters",
            "baseline_ks": settings["ks"], "exclude": []}))
    else:
        raise SystemExit(f"unknown stage {stage!r}; choose from {', '.join(MEASURED)}")


def measure(stage: str, work: Path, quick: bool) -> dict[str, Any]:
    """Peak RSS (MiB) and wall seconds of ``stage`` run alone in a fresh Python process.

    ``build`` (the cohort) runs the same way, so this process never grows.
    """
    command = [sys.executable, __file__, "--child", stage, "--work", str(work)]
    if quick:
        command.append("--quick")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{stage} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("DRIVER_MEMORY ")][-1]
    return {**json.loads(line.removeprefix("DRIVER_MEMORY ")), "seconds": round(seconds, 1)}


def child(stage: str, work: Path, quick: bool) -> None:
    """The measured process: run the stage, then print its peak RSS as one JSON line.

    ``ru_maxrss`` survives ``exec`` on Linux (a child starts at its parent's peak), so the parent
    stays a small process that builds nothing itself; ``VmHWM`` (this process image's own peak,
    from /proc) is reported beside it as a check.
    """
    if stage == "build":
        facts = build_cohort(work, sizes(quick))
        print("DRIVER_MEMORY " + json.dumps(facts), flush=True)
        return
    run_stage(stage, work, sizes(quick))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {"peak_rss_mib": round(peak_kib / 1024, 1)}
    status = Path("/proc/self/status")
    if status.exists():
        hwm = [ln.split()[1] for ln in status.read_text().splitlines() if ln.startswith("VmHWM:")]
        if hwm:
            result["vm_hwm_mib"] = round(int(hwm[0]) / 1024, 1)
    print("DRIVER_MEMORY " + json.dumps(result), flush=True)


def hardware() -> dict[str, Any]:
    """CPU model and count."""
    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]
        model = names[0] if names else model
    return {"cpu": model, "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    """Build the cohort (unless ``--work`` holds one), measure each stage, print and save JSON.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0).
    """
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("driver_memory.json"), help="JSON result file")
    parser.add_argument("--quick", action="store_true", help="a small smoke-test cohort")
    parser.add_argument("--work", type=Path, default=None,
                        help="cohort folder (kept; reused when it holds a built cohort); default: temporary")
    parser.add_argument("--stages", nargs="+", default=list(MEASURED), choices=MEASURED)
    parser.add_argument("--child", choices=[*MEASURED, "build"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.work, args.quick)
        return 0
    with tempfile.TemporaryDirectory(prefix="driver-memory-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        settings = sizes(args.quick)
        facts_file = work / "cohort_facts.json"
        if facts_file.exists():
            cohort = json.loads(facts_file.read_text())
        else:
            cohort = measure("build", work, args.quick)
            cohort["build_seconds"] = cohort.pop("seconds")
            facts_file.write_text(json.dumps(cohort))
        print(f"[driver-memory] cohort: {cohort}", flush=True)
        stages = {}
        for stage in args.stages:
            stages[stage] = measure(stage, work, args.quick)
            print(f"[driver-memory] {stage}: peak driver RSS {stages[stage]['peak_rss_mib']:.0f} MiB, "
                  f"VmHWM {stages[stage].get('vm_hwm_mib', float('nan')):.0f} MiB "
                  f"({stages[stage]['seconds']:.0f} s)", flush=True)
    result = {"name": "driver_memory", "unit": "MiB", "quick": args.quick, "settings": settings,
              "cohort": cohort, "stages": stages, "hardware": hardware()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
