"""The planted findings of the synthetic cohort: codes, names, map colours and planted effects.

A finding's *code* is the value stored in the ground-truth mask. ``log_hr`` is the planted Cox
coefficient per unit of tissue fraction (a fraction of 1.0 = the whole tissue of the case is that
finding), so ``exp(log_hr / 10)`` is the hazard ratio per 10 percentage points.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Role = Literal["risk", "null", "background"]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One finding: mask code, name, RGB map colour, planted log hazard ratio and roles."""

    code: int
    name: str
    colour: tuple[int, int, int]
    log_hr: float
    role: Role
    diagnostic: bool
    description: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (colour as a list)."""
        out = dataclasses.asdict(self)
        out["colour"] = list(self.colour)
        return out


FINDINGS: tuple[Finding, ...] = (
    Finding(0, "background", (255, 255, 255), 0.0, "background", False,
            "airspace / glass: near white, all of R, G, B above 220"),
    Finding(1, "normal_alveolar", (120, 200, 120), 0.0, "null", False,
            "thin pink septa lace around large pale air spaces, few nuclei"),
    Finding(2, "dense_fibrosis", (200, 40, 60), 4.0, "risk", True,
            "dense eosin pink with wavy collagen streaks and few elongated nuclei"),
    Finding(3, "cellular_inflammation", (240, 160, 40), 0.0, "null", False,
            "pink stroma packed with small round dark nuclei"),
    Finding(4, "fibroblastic_foci", (60, 120, 230), 6.0, "risk", True,
            "pale blue-grey myxoid matrix with parallel spindle nuclei"),
    Finding(5, "lymphoid_aggregate", (120, 40, 160), 0.0, "null", False,
            "round blobs of very dense dark purple round nuclei"),
    Finding(6, "fat", (250, 220, 90), 0.0, "null", False,
            "large empty polygonal cells with thin pink membranes"),
)

BACKGROUND = 0
NORMAL, DENSE_FIBROSIS, INFLAMMATION, FIBROBLASTIC_FOCI, LYMPHOID, FAT = 1, 2, 3, 4, 5, 6
TISSUE_CODES: tuple[int, ...] = tuple(f.code for f in FINDINGS if f.code != BACKGROUND)
# Findings that fill Voronoi regions; lymphoid aggregates are placed as round blobs instead.
REGION_CODES: tuple[int, ...] = (NORMAL, DENSE_FIBROSIS, INFLAMMATION, FIBROBLASTIC_FOCI, FAT)


def finding(code: int) -> Finding:
    """The finding with mask code ``code``."""
    for item in FINDINGS:
        if item.code == code:
            return item
    raise KeyError(f"no finding with code {code}")


def colour_table() -> list[tuple[int, int, int]]:
    """RGB map colour indexed by finding code."""
    return [f.colour for f in sorted(FINDINGS, key=lambda f: f.code)]
