"""The Ray Data callable class: run the finding classifier on a batch of ready tiles."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from mixture_ray.faults import crash_once
from mixture_ray.models.classifier import load_classifier, prepare_tiles
from mixture_ray.models.jpeg_decode import ready_tiles
from mixture_ray.store.schemas import PREDICTION_ID_COLUMNS, prediction_schema

if TYPE_CHECKING:
    from pathlib import Path

    from mixture_ray.models.backbone import Backbone

#: Tile-store columns a prediction row keeps.
KEY_COLUMNS = PREDICTION_ID_COLUMNS


#: Autocast dtype on a GPU per model precision (fp32: no autocast).
GPU_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@torch.inference_mode()
def class_probabilities(net: Backbone, tiles: torch.Tensor) -> torch.Tensor:
    """Softmax class probabilities of uint8 tiles at the network's own input size and normalisation.

    Args:
        net: the classifier (eval mode); its ``input_size``, ``mean``, ``std`` and GPU ``precision``
            are used (:func:`mixture_ray.models.classifier.prepare_tiles`).
        tiles: uint8 (B, H, W, 3) on the net's device.

    Returns:
        float32 (B, n_classes) on the CPU.
    """
    cuda = tiles.device.type == "cuda"
    dtype = GPU_DTYPES.get(net.precision)
    autocast = torch.autocast("cuda", dtype=dtype) if cuda and dtype else contextlib.nullcontext()
    images = prepare_tiles(net, tiles)
    with autocast:
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = net(images)
    return torch.softmax(logits.float(), dim=1).cpu()


class TileClassifier:
    """``map_batches`` class: ready uint8 tiles (numpy batch) -> prediction rows; it only runs the model."""

    def __init__(self, classifier: Path, actor_cpus: float, torch_threads: int) -> None:
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        if not self.cuda:
            torch.set_num_threads(torch_threads or max(1, int(actor_cpus)))
        net, payload = load_classifier(classifier)
        self.net = net.to(self.device)
        if self.cuda:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.image_size = int(payload.get("image_size") or 0)
        self.classes = list(net.classes)
        self.schema = prediction_schema(self.classes)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Classify a batch into prediction rows (an ``error`` where a tile has no pixels)."""
        crash_once("classify.batch")
        tiles, errors = ready_tiles(batch, self.device, self.image_size)
        n, n_classes = len(errors), len(self.classes)
        probs = np.zeros((n, n_classes), np.float32)
        ok = [i for i, error in enumerate(errors) if error is None]
        if ok:
            probs[ok] = class_probabilities(self.net, tiles[ok]).numpy()
        best = probs.argmax(axis=1)
        columns = {name: pa.array(batch[name], from_pandas=True) for name in KEY_COLUMNS}
        columns["finding"] = pa.array(
            [self.classes[b] if e is None else None for b, e in zip(best, errors, strict=True)], pa.string()
        )
        columns["class_index"] = pa.array(best.astype(np.int16))
        columns["confidence"] = pa.array(probs[np.arange(n), best])
        columns["probabilities"] = pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), n_classes)
        columns["error"] = pa.array(errors, pa.string())
        return pa.table(columns).cast(self.schema)
