"""Files per store on real-sized slides: rows per Parquet file of a tile store.

Four synthetic 16,384-px slides are tiled with no cap (every tissue tile at 2.5x, 5x and 20x, 280 px)
by this checkout and, as the baseline measured in the same run, by another checkout given with
``--baseline-repo`` (for example a ``git worktree`` of the commit before stores were sized by rows).
Each run is a fresh ``mixture-ray tile`` process. Target: at most one file per 2,000 rows.

    git worktree add /tmp/before 69986d0
    python benchmarks/bench_store_files.py --baseline-repo /tmp/before --out bench_out/store_files.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402

TARGET_ROWS_PER_FILE = 2000


def make_cohort(work: Path, side: int, n: int) -> Path:
    """``n`` synthetic slides of ``side`` px (reused when already written); the manifest."""
    from mixture_ray.config import build_config
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.synth.config import SynthConfig

    out = work / f"cohort_{side}"
    manifest = out / "manifest.csv"
    if not manifest.exists():
        write_cohort(build_config(SynthConfig, {
            "out_dir": str(out), "n_cases": n, "min_slides_per_case": 1, "max_slides_per_case": 1,
            "width": side, "height": side, "seed": 3}))
    return manifest


def store_figures(store: Path) -> dict[str, Any]:
    """Files, rows and row groups of the store's data files (hidden staging folders left out)."""
    import pyarrow.parquet as pq

    files = [p for p in store.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts)]
    metas = [pq.ParquetFile(p).metadata for p in files]
    rows = sum(m.num_rows for m in metas)
    return {"files": len(files), "rows": rows, "row_groups": sum(m.num_row_groups for m in metas),
            "rows_per_file": rows / len(files) if files else 0.0}


def tile_with(checkout: Path, manifest: Path, store: Path) -> dict[str, Any]:
    """One ``mixture-ray tile`` run of ``checkout``'s code; wall time and the store's figures."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "mixture_ray", "tile", "--manifest", str(manifest),
               "--out-dir", str(store), "--max-tiles-per-slide", "0"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tile with {checkout} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {"checkout": str(checkout), "wall_s": wall, **store_figures(store)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--baseline-repo", type=Path, help="a checkout to measure as the baseline")
    parser.add_argument("--side", type=int, default=16384, help="slide edge in px (default 16,384)")
    parser.add_argument("--slides", type=int, default=4)
    parser.add_argument("--work", type=Path, help="where the cohort is kept (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_store_files_"))
    work.mkdir(parents=True, exist_ok=True)
    manifest = make_cohort(work, args.side, args.slides)
    runs = {}
    if args.baseline_repo is not None:
        runs["baseline"] = tile_with(args.baseline_repo.resolve(), manifest, work / "tiles_baseline")
        print(f"[bench_store_files] baseline: {runs['baseline']}", file=sys.stderr)
    runs["this"] = tile_with(REPO, manifest, work / "tiles_this")
    print(f"[bench_store_files] this checkout: {runs['this']}", file=sys.stderr)
    this = runs["this"]
    result = {
        "name": "tile_store_rows_per_file",
        "unit": "rows per Parquet file",
        "value": this["rows_per_file"],
        "target_value": TARGET_ROWS_PER_FILE,
        "baseline_name": "the --baseline-repo checkout, same cohort and command, same run",
        "baseline_value": runs["baseline"]["rows_per_file"] if "baseline" in runs else None,
        "files_ratio": (runs["baseline"]["files"] / this["files"]) if "baseline" in runs else None,
        "runs": runs,
        "params": {"side": args.side, "slides": args.slides,
                   "command": "mixture-ray tile --max-tiles-per-slide 0"},
        "hardware": hardware_info(),
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
