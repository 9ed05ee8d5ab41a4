"""What the demo tells a person at the end, and writes to summary.json: paths and known-truth figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.report import Failure, Report


@dataclasses.dataclass
class DemoHeadline(Report):
    """What the demo tells a person at the end: where to look, and the known-truth figures."""

    out_dir: Path
    complete: bool = True
    failures: tuple[Failure, ...] = ()
    seconds: float = 0.0
    review_page: str = ""
    qc_page: str = ""
    stats_report: str = ""
    maps: str = ""
    nmi_moco: float = float("nan")
    nmi_random: float = float("nan")
    map_agreement: float = float("nan")
    auc_integrated: float = float("nan")
    auc_integrated_ci: tuple[float, float] = (float("nan"), float("nan"))
    auc_baseline: float = float("nan")
    delong_p: float = float("nan")
    test_cases: int = 0
    auc_baseline_all_cases: float = float("nan")
    auc_baseline_nested: float = float("nan")
    explain_classes: list[tuple[int, str, float]] = dataclasses.field(default_factory=list)
    explain_auc: float = float("nan")
    explain_seeds: list[int] = dataclasses.field(default_factory=list)
    explain_spread: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """The closing block: paths first, then one plain line per headline figure."""
        out_dir = self.out_dir
        iou = ", ".join(f"class {c}: {name} {value:.2f}" for c, name, value in self.explain_classes)
        low, high = self.auc_integrated_ci
        verdict = "significant" if self.delong_p < 0.05 else "no significant difference"
        return "\n".join([
            f"[demo] done in {self.seconds / 60:.1f} min; every output is under {out_dir}",
            "[demo] look at:",
            f"  slide quality control (pass / flag / fail per slide): {self.qc_page}",
            f"  review page (assign clusters to findings): {self.review_page}",
            f"  statistics report: {self.stats_report}",
            f"  finding maps, one PNG per slide: {self.maps}",
            "[demo] known-truth summary (synthetic cohorts with planted findings):",
            f"  embeddings: k-means NMI with the planted findings {self.nmi_moco:.2f} after MoCo "
            f"pretraining vs {self.nmi_random:.2f} for a random network (1 = perfect)",
            f"  finding maps: {self.map_agreement:.0%} of tiles carry their planted finding",
            f"  diagnosis: integrated findings AUC {self.auc_integrated:.2f} (95% CI {low:.2f}-{high:.2f}) "
            f"vs best non-integrated baseline {self.auc_baseline:.2f}; {verdict} "
            f"(DeLong p {self.delong_p:.2f}, {self.test_cases} test cases)",
            f"  leakage: the baseline clustered on the analysis cohort itself reaches AUC "
            f"{self.auc_baseline_nested:.2f} fitted on the training cases only (fold-nested) vs "
            f"{self.auc_baseline_all_cases:.2f} fitted on every case; leakage "
            f"{self.auc_baseline_all_cases - self.auc_baseline_nested:+.2f} (same test cases)",
            *self._explain_lines(iou),
        ])

    def _explain_lines(self, iou: str) -> list[str]:
        if not self.explain_classes:
            return ["  activation clustering: not run (explain: false)"]
        return [f"  activation clustering: each NMF class's best-matching planted finding (IoU): {iou}; "
                f"class weights predict the model's output with AUC {self.explain_auc:.2f}",
                *self._explain_spread()]

    def _explain_spread(self) -> list[str]:
        if not self.explain_spread:
            return []
        parts = [f"{name} {mean:.2f} ± {std:.2f}" for name, (mean, std) in self.explain_spread.items()]
        return [f"  activation clustering over {len(self.explain_seeds)} seeds "
                f"({', '.join(map(str, self.explain_seeds))}), mean ± std: " + ", ".join(parts)]
