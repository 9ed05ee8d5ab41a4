"""Synthetic cohort: Aperio SVS slides with planted findings, masks, diagnosis and survival."""

from mixture_ray.synth.aperio_writer import write_svs
from mixture_ray.synth.cohort import Cohort, write_cohort
from mixture_ray.synth.findings import FINDINGS, Finding
from mixture_ray.synth.truth import read_mask, tile_ground_truth, tissue_fractions

__all__ = [
    "FINDINGS",
    "Cohort",
    "Finding",
    "read_mask",
    "tile_ground_truth",
    "tissue_fractions",
    "write_cohort",
    "write_svs",
]
