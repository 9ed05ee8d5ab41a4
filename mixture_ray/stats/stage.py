"""`mixture-ray stats`: the stage driver.

Runs every analysis, writes the tables (CSV + JSON), plots, report.html and summary.json, and
``_SUCCESS`` last (a failed run leaves none).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mixture_ray.report import Failure, Report
from mixture_ray.stats import outputs, paper_plots, plots
from mixture_ray.stats.analyses import Analyses, analyse
from mixture_ray.stats.colours import class_order, feature_colours
from mixture_ray.stats.report import sections, texts, write_report
from mixture_ray.store.folder import StageFolder, write_json_atomic

if TYPE_CHECKING:
    from mixture_ray.stats.config import StatsConfig

PLOTS = ("roc_feature_sets", "roc_integrated_vs_baseline", "km_predicted_class", "forest_cox",
         "feature_importance", "score_by_diagnosis", "finding_correlation")


@dataclasses.dataclass(frozen=True)
class StatsReport(Report):
    """What a stats run produced: headline numbers (summary.json), every table, the files written."""

    out_dir: Path
    headline: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    plots: dict[str, Path]
    report: Path
    notes: tuple[str, ...]
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """Cases, the best integrated and baseline AUCs, log-rank, notes and the report's path."""
        h = self.headline
        best, base = h["best_integrated"], h["best_baseline"]
        lines = [f"stats {self.out_dir}: {h['n_cases']} cases ({h['n_events']} events), "
                 f"{h['n_test']} in the test split",
                 f"  best integrated: {best['feature_set']} {best['model']} AUC {best['auc']:.3f} "
                 f"({best['ci_low']:.3f}-{best['ci_high']:.3f})"]
        if base is not None:
            lines.append(f"  best baseline: {base['feature_set']} {base['model']} AUC {base['auc']:.3f} "
                         f"({base['ci_low']:.3f}-{base['ci_high']:.3f}); DeLong p "
                         f"{h['delong_p_best_integrated_vs_best_baseline']:.3g}" + _boot_text(h))
        if h["logrank"].get("p") is not None:
            lines.append(f"  log-rank by out-of-fold predicted class: p {h['logrank']['p']:.3g}")
        lines += [f"  note: {note}" for note in self.notes]
        lines.append(f"  report: {self.report}")
        return "\n".join(lines)


def _boot_text(headline: dict[str, Any]) -> str:
    boot = headline.get("bootstrap_best_integrated_vs_best_baseline")
    if not boot or boot.get("p") is None:
        return ""
    return f", bootstrap p {boot['p']:.3g} ({boot['iterations']} iterations)"


def run(cfg: StatsConfig) -> StatsReport:
    """Run the stage; bad input raises a MixtureRayError subclass naming the file, rows or key.

    Args:
        cfg: the frequency and clinical tables and the analysis settings.

    Returns:
        The headline numbers, every table, the plots and the HTML report written.
    """
    out = Path(cfg.out_dir)
    folder = StageFolder(out, stage="stats", item_column=None, inputs=[cfg.frequencies])
    folder.start()
    result = analyse(cfg)
    tables = outputs.build_tables(result)
    figures = draw(result, tables, out)
    outputs.write_tables(out, tables)
    summary = outputs.build_summary(result)
    inputs = {"frequencies": str(result.frequencies.path), "clinical": str(cfg.clinical),
              "baseline_dir": str(cfg.baseline_dir or "(none)"), "cases analysed": str(len(result.cases))}
    report = write_report(out / "report.html", title="mixture-ray cohort statistics", inputs=inputs,
                          notes=result.notes,
                          sections=sections(tables, figures, texts(result), summary["sentences"]))
    write_json_atomic(out / "summary.json", summary)
    folder.finish(requested=[], failures=[], extra={"n_cases": len(result.cases)})
    return StatsReport(out, summary, tables, figures, report, tuple(result.notes))


def draw(result: Analyses, tables: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    """Every figure as ``<name>.png`` in ``out``; findings drawn in their palette colours.

    Args:
        result: the run's analyses.
        tables: the output tables by name.
        out: the stage folder.

    Returns:
        Plot name -> PNG path.
    """
    cfg, best, km, clinical = result.cfg, result.best, result.km, result.clinical
    figures = {name: out / f"{name}.png" for name in PLOTS}
    versus = result.baseline_comparison
    p_best = versus["p"] if versus else None
    p_boot = versus["bootstrap_p"] if versus and versus["bootstrap_iterations"] else None
    colours = feature_colours(class_order(result.frequencies.path, list(result.frequencies.frame.columns)))
    plots.roc_feature_sets(result.diagnosis.results, figures["roc_feature_sets"], cfg.ci_level,
                           f"{clinical.positive} vs {clinical.negative}")
    plots.roc_best(best, result.best_baseline, p_best, figures["roc_integrated_vs_baseline"], p_boot)
    plots.kaplan_meier(result.survival, float(result.survival.logrank["p"].iloc[0]),
                       figures["km_predicted_class"],
                       f"Out-of-fold predicted class ({km.model.feature_set} {km.model.model}"
                       + (f", score >= {km.threshold:g})" if km.threshold is not None else ")"),
                       plots.time_label(cfg.time_column, cfg.time_unit))
    selection = result.cox.selection.table
    tags = {"reference": "reference", "constant": "constant", "correlation": "collinear", "vif": "high VIF"}
    dropped = {str(r.feature): f"not in multivariable: {tags[str(r.step)]}"
               for r in selection.itertuples() if not r.kept}
    plots.forest(result.cox.univariable, result.cox.multivariable, cfg.hr_per, figures["forest_cox"], dropped,
                 colours)
    importance = tables["feature_importance"]
    plots.importance(importance[importance["feature_set"] == best.feature_set], figures["feature_importance"],
                     f"Random forest importance, feature set {best.feature_set}", colours)
    clin = clinical.frame.loc[result.cases]
    if "subgroup" in clin and (clin["subgroup"] != "").any():
        group = clin["subgroup"][clin["subgroup"] != ""]
    else:
        group = clin["label"].map({1: clinical.positive, 0: clinical.negative})
    paper_plots.score_by_group(km.rf_score.loc[group.index], group, figures["score_by_diagnosis"],
                               f"Out-of-fold random forest score\n({cfg.forest}, feature set "
                               f"{km.model.feature_set})", "random forest score",
                               km.threshold if km.model.model == "random_forest" else None, cfg.seed)
    paper_plots.correlation_heatmap(tables["finding_correlation"].set_index("feature"),
                                    figures["finding_correlation"],
                                    "Correlation of finding frequencies across magnifications", colours)
    return figures
