"""`mixture-ray evaluate-embeddings`: k-means NMI/ARI of two embedding stores vs synthetic truth."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler

from mixture_ray.errors import MixtureRayError
from mixture_ray.locations import read_parquet_files
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import committed_locations, write_json_atomic
from mixture_ray.store.schemas import TILE_KEY
from mixture_ray.synth.findings import BACKGROUND, FINDINGS
from mixture_ray.synth.truth import read_mask, tile_ground_truth

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from mixture_ray.embed.config import EvaluateEmbeddingsConfig
    from mixture_ray.locations import Uri


@dataclasses.dataclass(frozen=True)
class ClusterScore:
    """Agreement of k-means clusters with the ground-truth findings."""

    nmi: float
    ari: float


@dataclasses.dataclass(frozen=True)
class EmbeddingEvaluation(Report):
    """Scores of the trained extractor and the baseline on the same tiles."""

    trained: ClusterScore
    baseline: ClusterScore
    n_tiles: int
    k: int
    findings: dict[str, int]
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """NMI and ARI of both extractors and which one wins."""
        lines = [f"{self.n_tiles} tiles, k={self.k}, findings {self.findings}"]
        for name, s in (("trained", self.trained), ("baseline", self.baseline)):
            lines.append(f"  {name:8s} NMI {s.nmi:.3f}  ARI {s.ari:.3f}")
        lines.append("trained beats baseline" if self.trained_wins else "trained does NOT beat baseline")
        return "\n".join(lines)

    @property
    def trained_wins(self) -> bool:
        """The trained extractor beats the baseline on NMI."""
        return self.trained.nmi > self.baseline.nmi

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("complete", "failures")}
        return {**data, "trained_wins": self.trained_wins}


def read_embeddings(root: Path | Uri, column: str, magnification: float | None) -> pd.DataFrame:
    """Tile keys and one embedding column of a complete store (a folder or a URI)."""
    files = committed_locations(root)
    if not files:
        raise MixtureRayError(f"embeddings {root}: no rows (the store holds no committed part)")
    frame: pd.DataFrame = read_parquet_files(files, columns=[*TILE_KEY, column]).to_pandas()
    if magnification is not None:
        frame = frame[np.isclose(frame.magnification, magnification)]
    if frame.empty:
        raise MixtureRayError(f"embeddings {root}: no rows (magnification={magnification})")
    return frame.reset_index(drop=True)


def tile_sizes(tiles: Path | Uri) -> pd.DataFrame:
    """Level-0 tile edge per tile key, from the tile store (a folder or a URI; metadata columns only)."""
    columns = [*TILE_KEY, "size_level0"]
    sizes: pd.DataFrame = read_parquet_files(committed_locations(tiles), columns=columns).to_pandas()
    return sizes


def truth_labels(frame: pd.DataFrame, cfg: EvaluateEmbeddingsConfig) -> tuple[np.ndarray, np.ndarray]:
    """(finding code, purity) per row (needs ``size_level0``) from the ground-truth masks."""
    codes, purity = np.zeros(len(frame), np.int64), np.zeros(len(frame))
    for slide, group in frame.groupby("slide_id"):
        path = cfg.masks / f"{slide}.png"
        if not path.exists():
            raise MixtureRayError(f"masks: {path} not found (slide {slide})")
        mask = read_mask(path)
        for i, x, y, size in zip(group.index, group.x, group.y, group.size_level0, strict=True):
            codes[i], purity[i] = tile_ground_truth(mask, cfg.mask_downsample, int(x), int(y), int(size))
    return codes, purity


def score(vectors: np.ndarray, truth: np.ndarray, k: int, seed: int) -> ClusterScore:
    """NMI and ARI of k-means (standardised vectors) against ``truth``."""
    scaled = StandardScaler().fit_transform(vectors)
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(scaled)
    return ClusterScore(
        float(normalized_mutual_info_score(truth, labels)), float(adjusted_rand_score(truth, labels))
    )


def evaluate_embeddings(cfg: EvaluateEmbeddingsConfig) -> EmbeddingEvaluation:
    """Cluster both stores on the tiles they share and whose truth is pure enough.

    Args:
        cfg: the two embedding stores, the tile store, the truth masks and the scoring settings.

    Returns:
        NMI and ARI of the trained extractor and of the baseline on the same tiles (also written
        to ``cfg.out`` when set).
    """
    trained = read_embeddings(cfg.embeddings, cfg.column, cfg.magnification)
    baseline = read_embeddings(cfg.baseline, cfg.column, cfg.magnification)
    keys = list(TILE_KEY)
    both = trained.merge(baseline, on=keys, suffixes=("_t", "_b")).merge(tile_sizes(cfg.tiles), on=keys)
    if both.empty:
        raise MixtureRayError(f"embeddings {cfg.embeddings} and baseline {cfg.baseline}: no shared tiles")
    codes, purity = truth_labels(both, cfg)
    keep = purity >= cfg.min_purity
    if not cfg.include_background:
        keep &= codes != BACKGROUND
    present = np.unique(codes[keep])
    k = cfg.k or len(present)
    if keep.sum() < max(k, 2) or len(present) < 2:
        raise MixtureRayError(
            f"only {int(keep.sum())} tiles with {len(present)} findings pass min_purity={cfg.min_purity}; "
            "lower min_purity or tile more"
        )
    truth = codes[keep]
    result = EmbeddingEvaluation(
        trained=score(np.stack(list(both[f"{cfg.column}_t"].to_numpy()[keep])), truth, k, cfg.seed),
        baseline=score(np.stack(list(both[f"{cfg.column}_b"].to_numpy()[keep])), truth, k, cfg.seed),
        n_tiles=int(keep.sum()), k=k,
        findings={FINDINGS[c].name: int((truth == c).sum()) for c in present},
    )
    if cfg.out is not None:
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cfg.out, result.to_dict())
    return result
