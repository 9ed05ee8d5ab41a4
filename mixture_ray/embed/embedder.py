"""The Ray Data callable class: run the encoder (loaded once per actor) on a batch of ready tiles."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch
from torch.nn import functional as F  # noqa: N812 (the torch convention)

from mixture_ray.faults import crash_once
from mixture_ray.models.augment import centre_crop, normalise, resize_to, to_float
from mixture_ray.models.jpeg_decode import ready_tiles
from mixture_ray.store.schemas import TILE_ID_COLUMNS, embedding_schema

if TYPE_CHECKING:
    from mixture_ray.models.backbone import Backbone
    from mixture_ray.models.encoder import EncoderSpec

KEY_COLUMNS = TILE_ID_COLUMNS
#: Autocast dtype on a GPU per model precision (fp32: no autocast).
GPU_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def preprocess(tiles: torch.Tensor, crop_fraction: float, encoder: Backbone | None = None) -> torch.Tensor:
    """uint8 (B, H, W, 3) on the model's device -> normalised float (B, 3, h, w).

    With an ``encoder``, its own input size (timm models) and normalisation; else ImageNet's.
    """
    images = centre_crop(to_float(tiles), crop_fraction)
    if encoder is None:
        return normalise(images)
    return normalise(resize_to(images, encoder.input_size), encoder.mean, encoder.std)


@torch.inference_mode()
def embed_tensor(encoder: Backbone, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L2-normalised head output, pooled features) of preprocessed images, as float32 on CPU."""
    cuda = images.device.type == "cuda"
    dtype = GPU_DTYPES.get(encoder.precision)  # the model card's precision (presets); bf16 otherwise
    autocast = torch.autocast("cuda", dtype=dtype) if cuda and dtype else contextlib.nullcontext()
    with autocast:
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        features = encoder.forward_head(encoder.forward_features(images), pre_logits=True)
        head = F.normalize(encoder.get_classifier()(features).float(), dim=1)
    return head.cpu(), features.float().cpu()


def _fixed(values: np.ndarray, width: int) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, width)


class TileEmbedder:
    """``map_batches`` class: ready uint8 tiles (numpy batch) -> embedding rows; it only runs the model."""

    def __init__(self, encoder: EncoderSpec, *, crop_fraction: float, threads: int) -> None:
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        if not self.cuda:
            torch.set_num_threads(max(1, threads))
        self.encoder = encoder.load()
        self.encoder = self.encoder.to(self.device)
        if self.cuda:
            self.encoder = self.encoder.to(memory_format=torch.channels_last)
        self.crop = crop_fraction
        self.schema = embedding_schema(self.encoder.num_classes, self.encoder.num_features)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Embed a batch: head and pooled features per tile (zeros and an ``error`` where it has none)."""
        crash_once("embed.batch")
        tiles, errors = ready_tiles(batch, self.device)
        n = len(errors)
        head = np.zeros((n, self.encoder.num_classes), np.float32)
        features = np.zeros((n, self.encoder.num_features), np.float32)
        ok = [i for i, error in enumerate(errors) if error is None]
        if ok:
            h, f = embed_tensor(self.encoder, preprocess(tiles[ok], self.crop, self.encoder))
            head[ok], features[ok] = h.numpy(), f.numpy()
        columns = {name: pa.array(batch[name], from_pandas=True) for name in KEY_COLUMNS}
        columns["head"] = _fixed(head, self.encoder.num_classes)
        columns["features"] = _fixed(features, self.encoder.num_features)
        columns["error"] = pa.array(errors, pa.string())
        return pa.table(columns).cast(self.schema)
