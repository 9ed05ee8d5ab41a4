"""`mixture-ray maps`: per-slide finding maps (Ray task per slide) and ground-truth agreement."""
