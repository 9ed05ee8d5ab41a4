"""Provenance section: each stage folder's settings (``_settings.json``), the run summary, versions."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from typing import TYPE_CHECKING

import pandas as pd

from mixture_ray.run_report.markup import Section, esc, table
from mixture_ray.store.folder import SETTINGS

if TYPE_CHECKING:
    from pathlib import Path

    from mixture_ray.run_report.locate import RunLayout

PACKAGES = ("mixture-ray", "torch", "torchvision", "timm", "ray", "numpy", "pandas", "pyarrow",
            "scikit-learn", "lifelines", "matplotlib", "pillow")


def versions() -> pd.DataFrame:
    """Python, the platform and each package's installed version (read from metadata, not imported)."""
    rows = [{"package": "python", "version": platform.python_version()},
            {"package": "platform", "version": platform.platform()}]
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        rows.append({"package": name, "version": version})
    return pd.DataFrame(rows)


def _json_block(path: Path, summary: str) -> str:
    try:
        text = json.dumps(json.loads(path.read_text()), indent=2, sort_keys=True, default=str)
    except (OSError, ValueError) as exc:
        text = f"cannot be read: {exc}"
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"


def provenance_section(layout: RunLayout, max_rows: int) -> Section:
    """Settings of every stage folder (collapsed JSON), the run's summary.json, and versions."""
    parts = []
    if (layout.root / "summary.json").is_file():
        parts.append(_json_block(layout.root / "summary.json", "summary.json (run headline)"))
    settings = [f for f in layout.stage_dirs if (f / SETTINGS).is_file()]
    for folder in settings:
        name = f"{layout.label(folder)} ({layout.stage_dirs[folder] or '?'})"
        parts.append(_json_block(folder / SETTINGS, name))
    if not settings:
        parts.append('<p class="missing">No stage folder holds _settings.json: the settings are unknown.</p>')
    parts.append(table(versions(), "Versions (of the environment that wrote this report)", max_rows))
    return Section("settings", "Settings and versions", "".join(parts))
