"""Direct decoding of a tiled TIFF level's native tiles, with a small LRU cache.

OpenSlide's ``read_region`` re-composites every request through ARGB; decoding the native
JPEG (or JPEG 2000, via imagecodecs) tiles straight into a numpy array and re-using decoded
tiles across neighbouring requests is several times faster (see benchmarks/bench_tiling.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

WHITE = 255

#: TIFF compression codes -> (codec name for messages, imagecodecs attribute that decodes it).
CODECS = {
    7: ("JPEG", "JPEG8"),
    33003: ("JPEG 2000 (Aperio YCbCr)", "JPEG2K"),
    33004: ("JPEG 2000 (Aperio RGB)", "JPEG2K"),
    33005: ("JPEG 2000 (Aperio RGB)", "JPEG2K"),
    34712: ("JPEG 2000", "JPEG2K"),
}


def codec_available(attribute: str) -> bool:
    """True when this imagecodecs build can decode the codec."""
    import imagecodecs

    codec = getattr(imagecodecs, attribute, None)
    return bool(getattr(codec, "available", False))


def unsupported_codec(compression: int) -> str | None:
    """Name of the page's codec when this machine cannot decode it, else None."""
    name, attribute = CODECS.get(int(compression), ("", ""))
    if attribute and not codec_available(attribute):
        return f"{name} (TIFF compression {int(compression)})"
    return None


class NativeTiledLevel:
    """One tiled, chunky RGB(A) TIFF page read tile by tile."""

    def __init__(self, page: Any, cache_bytes: int = 64 << 20) -> None:
        if not page.is_tiled:
            raise ValueError("page is not tiled")
        if page.samplesperpixel not in (3, 4) or page.planarconfig != 1 or page.dtype != np.uint8:
            raise ValueError("only chunky 8-bit RGB(A) pages are read natively")
        self._page = page
        self._fh = page.parent.filehandle
        self._lock = threading.Lock()
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        self.tile_w, self.tile_h = int(page.tilewidth), int(page.tilelength)
        self.tiles_across = -(-self.width // self.tile_w)
        tile_bytes = self.tile_w * self.tile_h * 3
        self._capacity = max(4, cache_bytes // tile_bytes)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 (h, w, 3) at level pixels (x, y); outside the image is white."""
        out = np.full((h, w, 3), WHITE, dtype=np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return out
        for ty in range(y0 // self.tile_h, (y1 - 1) // self.tile_h + 1):
            for tx in range(x0 // self.tile_w, (x1 - 1) // self.tile_w + 1):
                tile = self._tile(ty * self.tiles_across + tx)
                tile_x, tile_y = tx * self.tile_w, ty * self.tile_h
                sx0, sy0 = max(x0, tile_x), max(y0, tile_y)
                sx1 = min(x1, tile_x + self.tile_w)
                sy1 = min(y1, tile_y + self.tile_h)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - tile_y : sy1 - tile_y, sx0 - tile_x : sx1 - tile_x
                ]
        return out

    def _tile(self, index: int) -> np.ndarray:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        page = self._page
        count = int(page.databytecounts[index])
        if count == 0:
            tile = np.full((self.tile_h, self.tile_w, 3), WHITE, dtype=np.uint8)
        else:
            with self._lock:
                self._fh.seek(int(page.dataoffsets[index]))
                data = self._fh.read(count)
            if len(data) != count:
                raise OSError(f"tile {index} is truncated ({len(data)} of {count} bytes)")
            segment, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
            if segment is None:
                raise OSError(f"tile {index} could not be decoded")
            tile = np.asarray(segment)[0, :, :, :3]
        self._cache[index] = tile
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return tile
