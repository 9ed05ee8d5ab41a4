"""The tables and JSON records a synthetic cohort writes (manifest, clinical, truth).

A *case record* is a dict with ``case_id``, ``slide_ids``, ``uip_like``, ``mixture`` (planned),
``fractions`` (realised, by finding code) and ``outcome`` (:class:`Outcome`); a v2 case record
also has ``v2`` (:func:`cohort_v2.case_record`: site, sub-type probabilities and fractions).
Version 1 tables and records are exactly those written before v2 existed.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.synth import findings, layout

if TYPE_CHECKING:
    from mixture_ray.synth.config import SynthConfig
    from mixture_ray.synth.outcomes import Outcome, OutcomeModel

MANIFEST_COLUMNS = ["slide_id", "case_id", "path", "mpp"]
V2_ONLY_CONFIG = ("version", "sites")  # config keys left out of a v1 truth.json (byte-stable)


def manifest_columns(version: int = 1) -> list[str]:
    """Column order of manifest.csv (v2 adds ``site``)."""
    return MANIFEST_COLUMNS + (["site"] if version == 2 else [])


def clinical_columns(version: int = 1) -> list[str]:
    """Column order of clinical.csv (v2 adds ``site``)."""
    fracs = [f"frac_{findings.finding(c).name}" for c in findings.TISSUE_CODES]
    site = ["site"] if version == 2 else []
    return ["case_id", "slide_ids", "diagnosis", "label", "time", "event", *fracs, *site]


def clinical_row(case: dict[str, Any]) -> dict[str, Any]:
    """One clinical.csv row from a case record (ids, outcome, realised fractions)."""
    outcome: Outcome = case["outcome"]
    row: dict[str, Any] = {
        "case_id": case["case_id"],
        "slide_ids": ";".join(case["slide_ids"]),
        "diagnosis": outcome.diagnosis,
        "label": outcome.label,
        "time": f"{outcome.time:.6f}",
        "event": outcome.event,
    }
    for code, value in case["fractions"].items():
        row[f"frac_{findings.finding(code).name}"] = f"{value:.6f}"
    if "v2" in case:
        row["site"] = case["v2"]["site"]
    return row


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    r"""Write rows as CSV with a header, ``\n`` line ends (byte-stable)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def truth_record(cfg: SynthConfig, model: OutcomeModel,
                 cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything planted, for truth.json: seed, config, models, priors and per-case draws."""
    names = {f.code: f.name for f in findings.FINDINGS}
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()
              if cfg.version == 2 or k not in V2_ONLY_CONFIG}
    return {
        "seed": cfg.seed,
        "config": config,
        **model.describe(),
        "case_mixture": {
            "prior": "Dirichlet over tissue findings; half the cases (shuffled) are UIP-like",
            "alpha_uip_like": {names[c]: a for c, a in zip(findings.TISSUE_CODES, layout.ALPHA_UIP_LIKE,
                                                             strict=True)},
            "alpha_other": {names[c]: a for c, a in zip(findings.TISSUE_CODES, layout.ALPHA_OTHER,
                                                         strict=True)},
            "note": "realised fractions (clinical.csv) differ from the planned mixture; "
                    "outcomes use the realised fractions",
        },
        "fractions": "per case: mask pixels of each finding / non-background mask pixels, "
                     "summed over all slides of the case",
        "cases": [
            {
                "case_id": c["case_id"],
                "uip_like": c["uip_like"],
                "planned_mixture": {names[k]: round(v, 6) for k, v in c["mixture"].items()},
                "diagnosis_score": round(c["outcome"].score, 6),
                "diagnosis_noise": round(c["outcome"].noise, 6),
                "linear_predictor": round(c["outcome"].linear_predictor, 6),
                "event_time": round(c["outcome"].event_time, 6),
                "censor_time": round(c["outcome"].censor_time, 6),
                **c.get("v2", {}),
            }
            for c in cases
        ],
    }
