"""Score an exported classifier on tiles with known findings (e.g. synthetic ground truth)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixture_ray.finetune.data import decode_images
from mixture_ray.finetune.metrics import ClassificationMetrics, classification_metrics
from mixture_ray.models.classifier import load_classifier, predict

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import pandas as pd


def predict_tiles(classifier: Path, images: Sequence[bytes]) -> np.ndarray:
    """Predicted finding name per encoded tile (resized as in training)."""
    net, payload = load_classifier(classifier)
    tiles = decode_images(images, int(payload.get("image_size") or 0))
    names: np.ndarray = np.asarray(net.classes, dtype=object)[predict(net, tiles)]
    return names


def score(
    truth: pd.Series | Sequence[str], predicted: Sequence[str] | np.ndarray, classes: Sequence[str]
) -> ClassificationMetrics:
    """Metrics of predicted names against true names over ``classes`` + any extra true names.

    A true finding the classifier does not know counts as a class it never predicts (recall 0).
    """
    truth_names = [str(t) for t in truth]
    names = list(classes) + sorted(set(truth_names) - set(classes))
    index = {c: i for i, c in enumerate(names)}
    return classification_metrics([index[t] for t in truth_names], [index[str(p)] for p in predicted], names)
