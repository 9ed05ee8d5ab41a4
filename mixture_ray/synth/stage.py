"""`mixture-ray synth`: write a synthetic cohort with planted findings (the verb's entry point).

The cohort itself is drawn in :mod:`mixture_ray.synth.cohort` (v1) and
:mod:`mixture_ray.synth.cohort_v2` (sub-types, look-alikes and sites); this module is the stage's
``run(cfg) -> report``, as every verb has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mixture_ray.synth.cohort import Cohort, write_cohort

if TYPE_CHECKING:
    from mixture_ray.synth.config import SynthConfig


def run(cfg: SynthConfig) -> Cohort:
    """Write the cohort ``cfg`` describes; the same config always gives the same files.

    Args:
        cfg: the cohort's size, slide geometry, seed and design version.

    Returns:
        The report: the paths written (slides, masks, manifest, clinical table, findings, truth).

    Example:
        >>> run(build_config(SynthConfig, {"out_dir": "cohort", "n_cases": 20}))
    """
    return write_cohort(cfg)
