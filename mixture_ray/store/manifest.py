"""Slide manifests: CSV/Parquet (slide_id, case_id, path[, mpp]) or a folder of slides."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mixture_ray.errors import ManifestError
from mixture_ray.locations import is_uri
from mixture_ray.paths import absolute_path

SLIDE_SUFFIXES = frozenset(
    {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide", ".czi", ".dcm"}
)
REQUIRED = ("slide_id", "case_id", "path")


def read_manifest(source: Path) -> pd.DataFrame:
    """Validated manifest with absolute ``path`` and float ``mpp`` (NaN where not given).

    Relative paths are resolved against the manifest's folder; paths are used literally
    (no ``~`` or ``$VAR`` expansion, no shell). A path may be an object-store URI
    (``s3://bucket/slide.svs``): each node then reads a local copy (:mod:`mixture_ray.slides.staged`).
    """
    source = Path(source)
    if source.is_dir():
        return _from_folder(source)
    if not source.exists():
        raise ManifestError(f"manifest {source}: file not found")
    try:
        if source.suffix.lower() == ".parquet":
            frame = pd.read_parquet(source)
        else:
            frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ManifestError(f"manifest {source}: cannot read it as CSV/Parquet ({exc})") from exc
    return validate_manifest(frame, source)


def _is_dicom_series(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() == ".dcm" for p in folder.iterdir())


def _from_folder(folder: Path) -> pd.DataFrame:
    """Slide files of a folder, and its sub-folders holding one DICOM WSI series each (``*.dcm``)."""
    if _is_dicom_series(folder) and not any(p.is_dir() for p in folder.iterdir()):
        series = [folder]  # the folder itself is one DICOM series
    else:
        series = [p for p in folder.iterdir() if _is_dicom_series(p)]
    files = sorted([*(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES
                      and p.suffix.lower() != ".dcm"), *series])
    if not files:
        raise ManifestError(f"folder {folder}: no slide files ({', '.join(sorted(SLIDE_SUFFIXES))}) found")
    frame = pd.DataFrame(
        {
            "slide_id": [p.stem for p in files],
            "case_id": [p.stem for p in files],
            "path": [str(p) for p in files],
        }
    )
    return validate_manifest(frame, folder)


def _rows(mask: pd.Series) -> str:
    # Row numbers as a person sees them in a CSV with a header line.
    return ", ".join(str(i + 2) for i in mask[mask].index[:20])


def validate_manifest(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    """Check columns and values; every problem is reported at once, naming file and rows."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"manifest {source}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(REQUIRED)} and optionally mpp"
        )
    frame = frame.reset_index(drop=True).copy()
    problems: list[str] = []
    for column in REQUIRED:
        frame[column] = frame[column].astype(str).str.strip()
        blank = (frame[column] == "") | frame[column].isin(["nan", "None"])
        if blank.any():
            problems.append(f"empty {column} in row(s) {_rows(blank)}")
    duplicated = frame["slide_id"].duplicated(keep=False) & (frame["slide_id"] != "")
    if duplicated.any():
        ids = sorted(set(frame.loc[duplicated, "slide_id"]))[:10]
        problems.append(
            f"duplicate slide_id {', '.join(ids)} in row(s) {_rows(duplicated)}; slide ids must be unique"
        )
    if "mpp" in frame.columns:
        raw = frame["mpp"].astype(str).str.strip()
        mpp = pd.to_numeric(raw.where(raw != "", None), errors="coerce")
        bad = (mpp.isna() & (raw != "") & ~raw.isin(["nan", "None"])) | (mpp <= 0)
        if bad.any():
            problems.append(f"mpp must be a positive number in row(s) {_rows(bad)}")
        frame["mpp"] = mpp.astype(float)
    else:
        frame["mpp"] = float("nan")
    if problems:
        raise ManifestError(f"manifest {source}: " + "; ".join(problems))
    # The one path rule (mixture_ray.paths): relative rows resolve against the manifest's own folder.
    base = absolute_path(source if source.is_dir() else source.parent)
    frame["path"] = [p if is_uri(p) or Path(p).is_absolute() else str(base / p) for p in frame["path"]]
    return frame[["slide_id", "case_id", "path", "mpp"]]
