"""`mixture-ray qc`: per-slide quality control (Ray task per slide) and the table tile reads.

Public API for other stages: :func:`mixture_ray.store.qc_table.read_qc` (decisions, flagged-region
masks) and :func:`mixture_ray.model_input.stain.normalise_stain` (Macenko stain normalisation).
"""
