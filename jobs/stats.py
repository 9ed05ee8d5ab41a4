"""`ray job submit -- python jobs/stats.py [--config FILE] [--set k=v ...]`: cohort statistics.

The stats stage runs on the driver (lifelines, scikit-learn) and does not use the Ray cluster; the
wrapper exists so the whole pipeline can be submitted the same way.
"""

from __future__ import annotations

import sys

from mixture_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["stats", *sys.argv[1:]]))
