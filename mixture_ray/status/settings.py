"""The few settings worth a table cell: the model, magnification and sizes a stage folder was made with.

Read from the folder's ``_settings.json``; a folder without one (cluster, synth) shows what its
``_SUCCESS`` record holds (its ``config``, or its scalar fields other than counts).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mixture_ray.store.folder import OLD_SETTINGS, SETTINGS

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

#: Keys shown first when a folder's settings hold them (the model, the magnification, the sizes).
KEY_ORDER = ("encoder", "model", "classifier", "magnification", "magnifications", "tile_size", "arch",
             "network", "layer", "ks", "engine", "n_classes")
#: Record fields that are results (counts, lines, devices), not settings.
RESULT_KEYS = frozenset({"stage", "items", "items_failed", "items_committed", "rows", "failed_items",
                         "lines", "devices", "nodes", "counts", "mappings", "config"})
MAX_KEYS = 3
WIDTH = 56


def _value(value: Any) -> str:
    if isinstance(value, str) and "/" in value:
        return "/".join(value.rstrip("/").split("/")[-2:])  # a path: its last two names
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)


def _scalar(value: Any) -> bool:
    return value is not None and (isinstance(value, str | int | float | bool) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, int | float) for v in value)))


def short_settings(settings: Mapping[str, Any], width: int = WIDTH) -> str:
    """``key=value`` of the best-known keys (else the first scalar ones), cut to ``width`` characters.

    Args:
        settings: a settings record.
        width: the longest text returned (a cut text ends with ``...``).

    Returns:
        e.g. ``arch=resnet18 model=elex_20x/elex.pt magnification=20``; empty when nothing fits.
    """
    keys = [k for k in KEY_ORDER if _scalar(settings.get(k))][:MAX_KEYS]
    if not keys:
        keys = sorted(k for k, v in settings.items() if k not in RESULT_KEYS and _scalar(v))[:MAX_KEYS]
    text = " ".join(f"{k}={_value(settings[k])}" for k in keys)
    return text if len(text) <= width else text[: width - 3] + "..."


def folder_settings(folder: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a stage folder: ``_settings.json``, else its record's ``config`` or fields."""
    for name in (SETTINGS, OLD_SETTINGS):
        path = folder / name
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError):
                return {}
            return loaded if isinstance(loaded, dict) else {}
    config = record.get("config")
    if isinstance(config, dict):
        return config
    return {k: v for k, v in record.items() if k not in RESULT_KEYS}
