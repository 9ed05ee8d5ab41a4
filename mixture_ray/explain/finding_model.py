"""A small ResNet18 (weights=None) trained on synthetic tiles to detect one planted finding.

This is the "model trained to detect one planted finding" of the known-truth check: labels come
from the ground-truth masks (tile positive when the finding covers >= ``min_fraction``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from mixture_ray.explain.model import build_model
from mixture_ray.explain.tiles import read_tile, to_batch

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclasses.dataclass(frozen=True)
class DetectorResult:
    """Where the weights went and how well the detector fits its training tiles."""

    checkpoint: Path
    n_tiles: int
    n_positive: int
    train_accuracy: float
    seconds: float


def finding_fraction(mask: np.ndarray, ds: int, code: int, x0: int, y0: int, size0: int) -> float:
    """Fraction of the level-0 square covered by ``code`` (mask px = ``ds`` level-0 px)."""
    r0, c0 = max(y0 // ds, 0), max(x0 // ds, 0)
    r1, c1 = math.ceil((y0 + size0) / ds), math.ceil((x0 + size0) / ds)
    block = mask[r0:r1, c0:c1]
    return float((block == code).mean()) if block.size else 0.0


def sample_tiles(manifest: Path, masks_dir: Path, *, code: int, mpp: float, tile: int,
                 per_slide: int, min_fraction: float, seed: int,
                 mask_downsample: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(tiles N x tile x tile x 3 uint8, labels N) balanced between the finding and the rest."""
    from mixture_ray.slides import open_slide, plan_level
    from mixture_ray.store.manifest import read_manifest
    from mixture_ray.synth import read_mask

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for row in read_manifest(manifest).to_dict("records"):
        mask = read_mask(masks_dir / f"{row['slide_id']}.png")
        reader = open_slide(str(row["path"]))
        try:
            plan = plan_level(reader, mpp=mpp)
            w0, h0 = reader.level_dimensions[0]
            wh = (round(w0 / plan.target_downsample), round(h0 / plan.target_downsample))
            pos: list[np.ndarray] = []
            neg: list[np.ndarray] = []
            for _ in range(per_slide * 20):
                if len(pos) >= per_slide // 2 and len(neg) >= per_slide // 2:
                    break
                x, y = (int(rng.integers(0, max(d - tile, 1))) for d in wh)
                frac = finding_fraction(mask, mask_downsample, code,
                                        round(x * plan.target_downsample),
                                        round(y * plan.target_downsample),
                                        plan.level0_size(tile))
                bucket = pos if frac >= min_fraction else neg if frac == 0 else None
                if bucket is not None and len(bucket) < per_slide // 2:
                    img = read_tile(reader, plan, x, y, tile, wh)
                    if (img > 220).all(axis=-1).mean() < 0.9:
                        bucket.append(img)
            images += pos + neg
            labels += [1] * len(pos) + [0] * len(neg)
        finally:
            reader.close()
    return np.stack(images), np.array(labels, np.int64)


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the body with ``threads`` torch threads, then restore the count.

    CPU convolutions and matrix products split their float sums by thread, so a result depends on
    the thread count: fixing it makes a training the same on a laptop and on a 64-core node.

    Args:
        threads: torch intra-op threads inside the body.

    Returns:
        A context manager.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_detector(images: np.ndarray, labels: np.ndarray, out: Path, *, arch: str = "resnet18",
                   epochs: int = 3, batch: int = 32, lr: float = 1e-3, seed: int = 0,
                   threads: int = 2) -> DetectorResult:
    """Train ``arch`` (2 outputs) with Adam and flips; save the state_dict to ``out``.

    Deterministic: the initial weights, batch order and flips come from ``seed`` and the float sums
    run on ``threads`` torch threads whatever the machine has (the same inputs give the same bytes).

    Args:
        images: tiles N x h x w x 3 uint8.
        labels: 0/1 per tile.
        out: the state_dict file written.
        arch: a torchvision ResNet name.
        epochs: passes over the tiles.
        batch: tiles per step.
        lr: Adam learning rate.
        seed: initial weights, batch order and flips.
        threads: torch threads of the training (fixed, so the result does not depend on the CPU).

    Returns:
        Where the weights went and the training accuracy.
    """
    import time

    start = time.perf_counter()
    with pinned_threads(threads):
        x_all, y_all = to_batch(list(images)), torch.from_numpy(labels)
        model = _train(x_all, y_all, arch=arch, epochs=epochs, batch=batch, lr=lr, seed=seed)
        with torch.no_grad():
            pred = torch.cat([model(x_all[s: s + 64]).argmax(1) for s in range(0, len(y_all), 64)])
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return DetectorResult(out, len(labels), int(labels.sum()),
                          float((pred == y_all).float().mean()), time.perf_counter() - start)


def _train(x_all: torch.Tensor, y_all: torch.Tensor, *, arch: str, epochs: int, batch: int,
           lr: float, seed: int) -> nn.Module:
    model = build_model(arch, 2, init_seed=seed).train()
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(y_all), generator=generator)
        for s in range(0, len(order), batch):
            idx = order[s: s + batch]
            x = x_all[idx]
            flips = torch.rand(2, generator=generator)
            if flips[0] < 0.5:
                x = x.flip(-1)
            if flips[1] < 0.5:
                x = x.flip(-2)
            opt.zero_grad()
            loss_fn(model(x), y_all[idx]).backward()
            opt.step()
    return model.eval()
