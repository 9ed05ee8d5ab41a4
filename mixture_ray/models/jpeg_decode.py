"""Tile decoding on the model's device: torchvision's ``decode_jpeg`` (nvJPEG on a CUDA device).

Used when ``input.decode = model``: a GPU actor then decodes its own batch, so a GPU node needs
few CPU cores to keep its GPU fed. Free of Ray, so the GPU check runs it on a bare machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 (the torch convention)
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

JPEG_MAGIC = b"\xff\xd8"


def decode_tiles(
    data: Sequence[bytes | None], device: torch.device, size: int = 0
) -> tuple[torch.Tensor, list[str | None]]:
    """Encoded tiles -> uint8 (B, S, S, 3) on ``device`` and one error per tile (None where decoded).

    Args:
        data: JPEG (decoded on ``device``) or PNG (decoded on the CPU) bytes; None = no pixels.
        device: where the tiles are decoded and returned.
        size: tile edge of the output (0 = the first decoded tile's edge); others are resized.

    Returns:
        The stacked tiles (zeros where a tile failed) and the errors.
    """
    errors: list[str | None] = [None] * len(data)
    decoded: dict[int, torch.Tensor] = {}
    jpeg_index = [i for i, d in enumerate(data) if d is not None and d[:2] == JPEG_MAGIC]
    if jpeg_index:
        raw = [torch.frombuffer(bytearray(data[i]), dtype=torch.uint8) for i in jpeg_index]  # type: ignore[arg-type]
        try:
            images = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)
            decoded.update(zip(jpeg_index, images, strict=True))
        except RuntimeError:  # one bad JPEG fails the batch call: decode one by one
            for i, tensor in zip(jpeg_index, raw, strict=True):
                try:
                    decoded[i] = decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device)
                except RuntimeError as exc:
                    errors[i] = f"cannot decode tile: {exc}"
    for i, item in enumerate(data):
        if item is None:
            errors[i] = "tile has no pixels (tiled with encoding=none; use input.pixels=slides)"
        elif i not in decoded and errors[i] is None:
            try:
                tensor = torch.frombuffer(bytearray(item), dtype=torch.uint8)
                decoded[i] = decode_image(tensor, mode=ImageReadMode.RGB).to(device)
            except RuntimeError as exc:
                errors[i] = f"cannot decode tile: {exc}"
    first = next(iter(decoded.values()), None)
    side = size or (int(first.shape[-1]) if first is not None else 1)
    out = torch.zeros((len(data), side, side, 3), dtype=torch.uint8, device=device)
    for i, image in decoded.items():  # (3, H, W)
        if image.shape[-2:] != (side, side):
            resized = F.interpolate(image[None].float(), size=(side, side), mode="bilinear",
                                    antialias=True, align_corners=False)[0]
            image = resized.round().clamp(0, 255).to(torch.uint8)
        out[i] = image.permute(1, 2, 0)
    return out, errors


def error_text(value: object) -> str | None:
    """A tile's error as passed between stages: "" (or a null) means none."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _resized(tile: torch.Tensor, side: int) -> torch.Tensor:
    """A uint8 (H, W, 3) tile resized to (side, side, 3) (bilinear, antialiased)."""
    if tile.shape[:2] == (side, side):
        return tile
    image = tile.permute(2, 0, 1)[None].float()
    resized = F.interpolate(image, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)


def as_uint8_batch(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy uint8 (B, H, W, 3) batch on ``device`` (pinned for the copy when it is a GPU).

    A ragged batch (an object array of tiles of several sizes, which Ray Data makes when it joins
    blocks of different tile sizes) is resized to its first tile's size.
    """
    if pixels.dtype == object:
        tiles = [torch.from_numpy(np.ascontiguousarray(t, dtype=np.uint8)) for t in pixels]
        side = int(tiles[0].shape[0]) if tiles else 1
        pixels = torch.stack([_resized(t, side) for t in tiles]).numpy() if tiles else np.zeros((0, 1, 1, 3))
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def ready_tiles(batch: Mapping[str, np.ndarray], device: torch.device,
                size: int = 0) -> tuple[torch.Tensor, list[str | None]]:
    """A model actor's batch as uint8 (B, H, W, 3) tiles on ``device``, with one error per row.

    Args:
        batch: numpy columns; ``pixels`` and ``error`` when CPU stages readied the tiles, else the
            encoded ``image`` bytes, decoded here (on the GPU when ``device`` is one).
        device: the model's device.
        size: tile edge the model wants when decoding here (0 = as stored).

    Returns:
        The tiles and the errors (None where a tile is ready).
    """
    if "pixels" in batch:
        errors = [error_text(e) for e in batch["error"]]
        return as_uint8_batch(batch["pixels"], device), errors
    return decode_tiles([None if b is None else bytes(b) for b in batch["image"]], device, size)
