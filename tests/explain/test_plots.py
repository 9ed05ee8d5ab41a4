"""The overlapped multi-class heatmap: size (the slide's aspect), class colours, legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mixture_ray.explain.plots import class_colours, multiclass


def test_multiclass_heatmap_colours_each_class_and_keeps_the_aspect(tmp_path: Path) -> None:
    rows, cols, k = 20, 30, 3  # a slide 1.5 times as wide as high
    weights = np.full((rows, cols, k), 0.2, np.float32)
    weights[10:, 20:] = 0.0
    weights[10:, 20:, 2] = 1.0  # bottom-right: only class 2 is active, at its maximum
    weights[:, :10, 0] = 1.0  # left: class 0 at its maximum, the others weak
    weights[:10, 10:20, 1] = 1.0  # top middle: class 1 at its maximum
    valid = np.ones((rows, cols), bool)
    valid[0, cols - 1] = False  # one uncovered cell, top right
    path = tmp_path / "k3_multiclass.png"
    multiclass(weights, valid, (600, 400), path)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (400, 600, 3)  # the thumbnail's size: the slide's aspect
    colours = class_colours(k)
    assert (image[300:400, 400:600] == colours[2]).all()  # only class 2: exactly its colour
    assert (image[0:20, 580:600] == 255).all()  # uncovered: white
    left = image[300, 50].astype(int)  # class 0 dominates: closest to class 0's colour
    assert int(np.argmin(np.abs(colours.astype(int) - left).sum(axis=1))) == 0
    legend = image[2:50, 2:80]  # the legend box holds every class's colour square
    for c in range(k):
        assert (legend == colours[c]).all(axis=-1).sum() >= 50, c
