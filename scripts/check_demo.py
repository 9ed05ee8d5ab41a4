"""Check the demo's summary.json: every headline figure present and finite, every path there.

Usage: ``python scripts/check_demo.py demo_out/summary.json`` (exit 1 with the reasons otherwise).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

FIGURES = ("nmi_moco", "nmi_random", "map_agreement", "auc_integrated", "auc_baseline", "delong_p",
           "auc_baseline_all_cases", "auc_baseline_nested",
           "explain_auc")
PATHS = ("review_page", "stats_report", "maps")


def problems(summary: dict[str, object]) -> list[str]:
    """Every missing or non-finite figure and every missing output path."""
    found = []
    for key in FIGURES:
        value = summary.get(key)
        if not isinstance(value, int | float) or not math.isfinite(value):
            found.append(f"{key}: {value!r} is not a finite number")
    for key in PATHS:
        path = summary.get(key)
        if not isinstance(path, str) or not path or not Path(path).exists():
            found.append(f"{key}: {path!r} does not exist")
    if not summary.get("explain_classes"):
        found.append("explain_classes: no NMF class was matched to a planted finding")
    return found


def main(argv: list[str]) -> int:
    """Check the summary file named in ``argv``; returns the exit status."""
    path = Path(argv[1] if len(argv) > 1 else "demo_out/summary.json")
    if not path.exists():
        print(f"{path}: missing; the demo did not finish", file=sys.stderr)
        return 1
    found = problems(json.loads(path.read_text()))
    for line in found:
        print(f"{path}: {line}", file=sys.stderr)
    if not found:
        print(f"{path}: every headline figure is present")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
