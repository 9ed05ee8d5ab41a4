"""Fine-tuning feeds: keys shuffled per epoch before pixels are read; the same seed gives the same weights."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from mixture_ray.finetune.sampler import epoch_counts
from tests.finetune.support import ft_cfg


def test_training_keys_are_shuffled_before_pixels_are_read(labelled: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """Each epoch streams the tiles it draws (only those) in a seeded order of its own; a part is read in
    interleaved slices when the workers outnumber the parts; every labelled tile belongs to one slice."""
    from mixture_ray.finetune.stage import prepare

    labels, tiles = labelled
    prep = prepare(ft_cfg(labels, tiles, tmp_path))
    feed = prep.train

    def rows(epoch: int, counts: np.ndarray | None = None, **where: int) -> list[int]:
        return [int(r["row"]) for r in feed.dataset(epoch, counts=counts, **where).take_all()]

    first = rows(0)
    assert sorted(first) == list(range(len(prep.train_targets)))
    assert first != sorted(first) and rows(1) != first and rows(0) == first
    counts = epoch_counts(prep.train_targets, len(prep.classes), balanced=True, seed=0, epoch=0)
    assert sorted(rows(0, counts)) == np.flatnonzero(counts).tolist()  # tiles not drawn are not read
    wide = dataclasses.replace(feed, slices=feed.slices_for(len(feed.files), 3))
    shares = [[int(r["row"]) for r in wide.dataset(0, rank=k, world=3).take_all()] for k in range(3)]
    assert all(shares)
    assert sorted(r for share in shares for r in share) == list(range(len(prep.train_targets)))


def _cpu_burner() -> subprocess.Popen[bytes]:
    """A process spinning one core, to change the machine's load (and Ray Data's block timing)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def test_the_same_seed_gives_the_same_classifier_under_load(labelled: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    """Two one-epoch runs (augmented, balanced sampling), the second beside a CPU burner: same weights."""
    from mixture_ray.finetune.stage import run as run_finetune

    labels, tiles = labelled
    weights = []
    for name in ("quiet", "loaded"):
        burner = _cpu_burner() if name == "loaded" else None
        try:
            report = run_finetune(ft_cfg(labels, tiles, tmp_path, name=name, rotation=20.0,
                                         **{"train.checkpoint_every": 1000}))
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
        weights.append(torch.load(report.classifier, map_location="cpu", weights_only=True)["state_dict"])
    quiet, loaded = weights
    assert quiet.keys() == loaded.keys()
    assert all(torch.equal(quiet[k], loaded[k]) for k in quiet)
