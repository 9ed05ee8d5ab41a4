"""Known-truth QC: plant defects in synthetic slides, run `mixture-ray qc`, score what it finds.

``python scripts/qc_truth.py --out bench_out/qc_truth.json [--per-type 7 --seed 0]`` writes
``per_type`` clean slides and ``per_type`` slides of each defect type (faded, blurred, pen, fold,
fluorescence, ihc; :mod:`mixture_ray.synth.defects`) into ``<out stem>_data/`` beside the JSON
(replaced on each run), runs QC with its default settings (mpp from the manifest), maps each
slide's reasons to defect types and prints and saves the confusion table, per-type precision and
recall (:mod:`mixture_ray.synth.defect_scores`), the slides missed or wrongly flagged, and every
slide's metrics. Runs on CPU with a local Ray (70-100 s on 2 shared cores).

Slides are 1024 px by default: QC's default 256-px blur tiles leave at most four tiles on a 512-px
slide, too few for a blurred region that does not cover the whole slide
(``--size 512 --qc-set tile_px=64`` is what tests/qc/test_truth.py runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mixture_ray.config import build_config, parse_overrides
from mixture_ray.qc.config import QcConfig
from mixture_ray.qc.stage import run as run_qc
from mixture_ray.synth.defect_scores import DefectScores, format_scores, score_qc
from mixture_ray.synth.defects import DEFECT_TYPES, write_defect_set

#: QC settings beyond the manifest and output folder: none, a user's defaults.
QC_SETTINGS: dict[str, Any] = {}
TARGET = 0.9


def qc_truth(data: Path, *, per_type: int, seed: int, size: int,
             settings: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame, DefectScores]:
    """Write the planted set under ``data``, QC it, score it; returns (results, per-slide table, scores)."""
    t0 = time.perf_counter()
    shutil.rmtree(data, ignore_errors=True)
    manifest_path = write_defect_set(data / "set", per_type=per_type, seed=seed, size=size)
    t_write = time.perf_counter() - t0
    cfg = build_config(QcConfig, {"manifest": manifest_path, "out_dir": data / "qc", **settings})
    report = run_qc(cfg)
    t_qc = time.perf_counter() - t0 - t_write
    manifest = pd.read_csv(manifest_path, keep_default_na=False)
    scores, table = score_qc(manifest, report.table)
    results = {
        "name": "qc_truth", "slides": len(table), "slides_per_type": per_type, "seed": seed, "size_px": size,
        "qc_settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("manifest", "out_dir")},
        **scores.to_dict(), "worst_rate": scores.worst(), "target": TARGET,
        "meets_target": scores.worst() >= TARGET,
        "seconds": {"write_set": round(t_write, 1), "qc": round(t_qc, 1)},
        "misses": misses(table), "data": str(data), "qc_complete": report.complete,
    }
    return results, table, scores


def misses(table: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Per defect type, the planted slides not found (fn) and the other slides reported with it (fp)."""
    out = {}
    for kind in DEFECT_TYPES:
        found = table.detected.str.split(",").map(lambda d, k=kind: k in d)
        planted = table.defect == kind
        out[kind] = {"fn": table.slide_id[planted & ~found].tolist(),
                     "fp": table.slide_id[~planted & found].tolist()}
    return out


def json_ready(value: Any) -> Any:
    """``value`` with NaN floats as None (strict JSON), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--per-type", type=int, default=7, help="slides per defect type, and clean slides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1024, help="slide edge in pixels (0.5 um/px)")
    parser.add_argument("--qc-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a QC setting other than its default (repeatable), as `mixture-ray qc --set`")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t0 = time.perf_counter()
    data = args.out.with_name(f"{args.out.stem}_data")
    settings = {**QC_SETTINGS, **parse_overrides(args.qc_set, QcConfig)}
    results, table, scores = qc_truth(data, per_type=args.per_type, seed=args.seed, size=args.size,
                                      settings=settings)
    results["command"] = shlex.join(["python", "scripts/qc_truth.py", *sys.argv[1:]])
    results["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    columns = ["slide_id", "defect", "decision", "detected", "stain_intensity", "blurry_fraction",
               "laplacian_var_median", "pen_fraction", "fold_fraction", "modality", "dab_fraction",
               "eosin_fraction", "background_value", "bright_signal_fraction", "reason", "params"]
    results["slides_table"] = table[columns].to_dict(orient="records")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_ready(results), indent=2, default=str) + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(table[columns[:-2]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n{format_scores(scores)}\n")
    for kind, missed in results["misses"].items():
        if missed["fn"] or missed["fp"]:
            print(f"{kind}: missed {missed['fn'] or '-'}; wrongly reported on {missed['fp'] or '-'}")
    print(f"command: {results['command']}  (seed {args.seed}, {results['slides']} slides)")
    print(f"worst precision/recall {results['worst_rate']:.3f} (target {TARGET}); "
          f"seconds: {results['seconds']}; wrote {args.out}")


if __name__ == "__main__":
    main()
