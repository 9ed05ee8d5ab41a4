"""Thumbnails as data URIs, and relative links from the report to full-size files."""

from __future__ import annotations

import base64
import io
import os
import urllib.parse
from pathlib import Path

from PIL import Image

from mixture_ray.run_report.markup import esc, figure


def thumbnail_uri(path: Path, px: int) -> str:
    """``path`` shrunk to at most ``px`` on its longest edge, as a JPEG data URI.

    Args:
        path: an image file (PNG, JPEG, ...).
        px: the longest edge of the thumbnail.

    Returns:
        ``data:image/jpeg;base64,...``.
    """
    with Image.open(path) as image:
        image.draft("RGB", (px, px))
        thumb = image.convert("RGB")
    thumb.thumbnail((px, px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def relative_href(path: Path, report: Path) -> str:
    """The URL of ``path`` relative to the report's folder (every character percent-quoted)."""
    rel = Path(os.path.relpath(path, report.parent)).as_posix()
    return urllib.parse.quote(rel)


def linked_thumbnail(path: Path, report: Path, px: int, caption: str) -> str:
    """A figure: the thumbnail of ``path`` linked to the file itself; unreadable images are named."""
    try:
        uri = thumbnail_uri(path, px)
    except (OSError, ValueError) as exc:
        return f"<figure><figcaption>{esc(caption)}: image cannot be read ({esc(exc)})</figcaption></figure>"
    return figure(uri, caption, relative_href(path, report))
