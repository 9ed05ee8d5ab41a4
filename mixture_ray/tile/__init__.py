"""Tiling: slides (or image folders) -> a committed Parquet tile store."""
