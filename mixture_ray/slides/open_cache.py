"""Slides kept open by a long-lived reader (an actor), so each slide is opened once per worker."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from mixture_ray.slides.factory import open_slide
from mixture_ray.slides.reader import resize_rgb

if TYPE_CHECKING:
    import numpy as np

    from mixture_ray.slides.reader import SlideReader


class OpenSlides:
    """The few slides an actor read last, open (least recently used closed first).

    Args:
        backend: slide reader backend (``auto`` probes a tile and falls back).
        tile_cache_bytes: decoded native-tile cache per open slide and level.
        max_open: slides kept open at once.
    """

    def __init__(self, backend: str, *, tile_cache_bytes: int, max_open: int = 4) -> None:
        self.backend, self.cache_bytes, self.max_open = backend, tile_cache_bytes, max_open
        self._open: OrderedDict[str, SlideReader] = OrderedDict()

    def get(self, path: str) -> SlideReader:
        """The open reader of ``path`` (opened now if needed)."""
        reader = self._open.get(path)
        if reader is None:
            reader = open_slide(str(path), self.backend, tile_cache_bytes=self.cache_bytes)
            self._open[path] = reader
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(path)
        return reader

    def read_tile(self, path: str, *, level: int, x: int, y: int, read_size: int,
                  tile_size: int) -> np.ndarray:
        """RGB uint8 (tile_size, tile_size, 3): the ``read_size`` square at ``level`` from level-0 (x, y)."""
        pixels = self.get(path).read_region((x, y), level, (read_size, read_size))
        return resize_rgb(pixels, (tile_size, tile_size))

    def level_read_size(self, path: str, *, level: int, size_level0: int) -> int:
        """Pixels at ``level`` spanning ``size_level0`` level-0 pixels (a stored tile's footprint)."""
        return max(1, round(size_level0 / self.get(path).level_downsamples[level]))

    def close(self) -> None:
        """Close every open slide."""
        while self._open:
            self._open.popitem()[1].close()
