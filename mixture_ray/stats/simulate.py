"""A simulated cohort for the stats stage with known truth: planted findings, diagnosis and survival.

Case fractions over the six tissue findings are drawn from the synthetic cohort's Dirichlet priors
(half the cases UIP-like), outcomes from its planted model (:class:`OutcomeModel`: diagnosis logit,
Cox/Weibull survival with log-HR 4 for dense fibrosis and 6 for fibroblastic foci per unit
fraction). Frequency tables are what a perfect finding classifier would give: the fractions
(``tiles=0``) or a multinomial sample of ``tiles`` tiles per case; a coarser 5x table merges
findings, and baseline tables mix the findings over k pseudo-clusters.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixture_ray.synth import findings
from mixture_ray.synth.layout import ALPHA_OTHER, ALPHA_UIP_LIKE
from mixture_ray.synth.outcomes import OutcomeModel, simulate

if TYPE_CHECKING:
    from pathlib import Path

NAMES = [findings.finding(c).name for c in findings.TISSUE_CODES]
MERGED_5X = {"fibrosis": ("dense_fibrosis", "fibroblastic_foci"),
             "inflammation": ("cellular_inflammation", "lymphoid_aggregate"),
             "normal": ("normal_alveolar", "fat")}


@dataclasses.dataclass(frozen=True)
class SimulatedCohort:
    """Frequency table (20x and 5x), clinical table, baseline tables by k and the planted log-HRs."""

    frequencies: pd.DataFrame
    clinical: pd.DataFrame
    baselines: dict[int, pd.DataFrame]
    log_hr: dict[str, float]

    def write(self, folder: Path) -> dict[str, Path]:
        """frequencies.csv, clinical.csv and baseline/k<k>.csv in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "baseline").mkdir(exist_ok=True)
        self.frequencies.to_csv(folder / "frequencies.csv", index=False)
        self.clinical.to_csv(folder / "clinical.csv", index=False)
        for k, table in self.baselines.items():
            table.to_csv(folder / "baseline" / f"k{k}.csv", index=False)
        return {"frequencies": folder / "frequencies.csv", "clinical": folder / "clinical.csv",
                "baseline_dir": folder / "baseline"}


def _observe(rng: np.random.Generator, p: np.ndarray, tiles: int) -> np.ndarray:
    return p if tiles <= 0 else rng.multinomial(tiles, p / p.sum()) / tiles


def simulate_cohort(n_cases: int, seed: int = 0, *, tiles: int = 0, baseline_ks: tuple[int, ...] = (4, 8),
                    model: OutcomeModel | None = None) -> SimulatedCohort:
    """Simulate ``n_cases`` cases (ids ``case-0000`` ...) with the planted outcome model."""
    rng = np.random.default_rng(seed)
    model = model or OutcomeModel()
    uip_like = rng.permutation(np.arange(n_cases) < n_cases // 2)
    freq_rows, clin_rows = [], []
    mixers = {k: rng.dirichlet(np.full(k, 0.3), size=len(NAMES)) for k in baseline_ks}
    base_rows: dict[int, list[dict[str, object]]] = {k: [] for k in baseline_ks}
    for i in range(n_cases):
        case_id = f"case-{i:04d}"
        p = rng.dirichlet(ALPHA_UIP_LIKE if uip_like[i] else ALPHA_OTHER)
        outcome = simulate(rng, dict(zip(findings.TISSUE_CODES, p.tolist(), strict=True)), model)
        at20 = _observe(rng, p, tiles)
        merged = np.array([sum(p[NAMES.index(n)] for n in members) for members in MERGED_5X.values()])
        at5 = _observe(rng, merged, tiles // 4)
        freq_rows.append({"case_id": case_id, **{f"20x/{n}": v for n, v in zip(NAMES, at20, strict=True)},
                          **{f"5x/{n}": v for n, v in zip(MERGED_5X, at5, strict=True)}})
        clin_rows.append({"case_id": case_id, "diagnosis": outcome.diagnosis, "label": outcome.label,
                          "time": round(outcome.time, 6), "event": outcome.event,
                          **{f"frac_{n}": round(float(v), 6) for n, v in zip(NAMES, p, strict=True)}})
        for k, mixer in mixers.items():
            q = _observe(rng, p @ mixer, tiles)
            base_rows[k].append({"case_id": case_id, **{f"20x/c{j}": v for j, v in enumerate(q)}})
    log_hr = {findings.finding(c).name: b for c, b in model.cox.items()}
    return SimulatedCohort(pd.DataFrame(freq_rows), pd.DataFrame(clin_rows),
                           {k: pd.DataFrame(rows) for k, rows in base_rows.items()}, log_hr)
