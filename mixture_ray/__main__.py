"""``python -m mixture_ray <stage> ...``: the same as ``mixture-ray <stage> ...``."""

import sys

from mixture_ray.cli import main

sys.exit(main())
