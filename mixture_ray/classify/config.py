"""`mixture-ray classify` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import ActorPool, TileInput, option
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri


@dataclasses.dataclass(frozen=True)
class ClassifyConfig:
    """`mixture-ray classify`: predicted finding and class probabilities of every cohort tile.

    Tile the cohort first (224 px, non-overlapping, every tile), e.g.
    ``mixture-ray tile --tile-size 224 --max-background 0.7 --max-tiles-per-slide 0``.
    """

    tiles: Path | Uri = option("tile store (folder or URI) of the cohort (written by `mixture-ray tile`)")
    classifier: Path = option("fine-tuned classifier: a finetune run folder or its classifier.pt")
    out_dir: Path | Uri = option("prediction store folder or object-store URI (reruns skip committed slides)")
    magnification: float | None = option(
        "classify tiles of this magnification; null = the magnification the classifier was trained at", None
    )
    max_background: float = option("tiles whose background fraction exceeds this are not classified", 0.7)
    pool: ActorPool = option("model actors (one model each): pool.workers, pool.batch_size, pool.gpus, ...",
                             ActorPool())
    input: TileInput = option("where ready tiles come from: input.pixels (store or slides), input.decode, "
                              "input.cpus, ...", TileInput())
    torch_threads: int = option("torch intra-op threads per actor on CPU; 0 = the actor's CPUs", 0)

    def validate(self) -> None:
        """Check max_background is in [0, 1] and torch_threads >= 0."""
        if not 0.0 <= self.max_background <= 1.0:
            raise ConfigError(f"max_background: must be in [0, 1] (got {self.max_background})")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads: must be >= 0 (got {self.torch_threads})")
