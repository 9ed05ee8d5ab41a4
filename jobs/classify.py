"""`ray job submit -- python jobs/classify.py [--config FILE] [--set k=v ...]`: classify on a cluster.

Ray is joined through RAY_ADDRESS, which `ray job submit` sets; the code is the same as locally.
"""

from __future__ import annotations

import sys

from mixture_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["classify", *sys.argv[1:]]))
