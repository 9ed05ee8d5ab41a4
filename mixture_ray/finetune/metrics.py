"""Honest per-class metrics: precision, recall (TPR), specificity (TNR), NPV, confusion matrix.

One-vs-rest per class from the confusion matrix; a ratio with a zero denominator is NaN (written
as null in JSON). Balanced accuracy is the mean recall over the classes that occur in ``y_true``
(scikit-learn's definition).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixture_ray.store.folder import write_json_atomic

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class ClassificationMetrics:
    """Confusion matrix (rows = truth, columns = prediction) and the metrics derived from it."""

    classes: tuple[str, ...]
    confusion: np.ndarray
    per_class: pd.DataFrame
    balanced_accuracy: float
    accuracy: float

    @property
    def summary(self) -> pd.DataFrame:
        """Tidy per-class table (class, support, precision, recall, specificity, npv)."""
        return self.per_class

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        rows = [{k: _clean(v) for k, v in r.items()} for r in self.per_class.to_dict("records")]
        return {
            "classes": list(self.classes),
            "balanced_accuracy": _clean(self.balanced_accuracy),
            "accuracy": _clean(self.accuracy),
            "per_class": rows,
            "confusion": self.confusion.tolist(),
        }

    def write(self, folder: Path, prefix: str = "metrics") -> None:
        """``prefix``.json, ``prefix``_per_class.csv and ``prefix``_confusion.csv in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / f"{prefix}.json", self.to_dict())
        self.per_class.to_csv(folder / f"{prefix}_per_class.csv", index=False)
        confusion = pd.DataFrame(self.confusion, index=list(self.classes), columns=list(self.classes))
        confusion.index.name = "truth \\ predicted"
        confusion.to_csv(folder / f"{prefix}_confusion.csv")


def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, classes: Sequence[str]
) -> ClassificationMetrics:
    """Metrics of integer predictions ``y_pred`` against ``y_true`` (indices into ``classes``)."""
    t, p = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length (got {t.shape}, {p.shape})")
    n = len(classes)
    if len(t) and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n):
        raise ValueError(f"labels must be in 0..{n - 1}")
    confusion = np.bincount(t * n + p, minlength=n * n).reshape(n, n)
    tp = np.diag(confusion).astype(np.float64)
    fn = confusion.sum(axis=1) - tp
    fp = confusion.sum(axis=0) - tp
    tn = confusion.sum() - tp - fn - fp
    recall = _ratio(tp, tp + fn)
    per_class = pd.DataFrame(
        {
            "class": list(classes),
            "support": (tp + fn).astype(np.int64),
            "predicted": (tp + fp).astype(np.int64),
            "precision": _ratio(tp, tp + fp),
            "recall_tpr": recall,
            "specificity_tnr": _ratio(tn, tn + fp),
            "npv": _ratio(tn, tn + fn),
        }
    )
    present = (tp + fn) > 0
    balanced = float(recall[present].mean()) if present.any() else float("nan")
    accuracy = float(tp.sum() / len(t)) if len(t) else float("nan")
    return ClassificationMetrics(tuple(classes), confusion, per_class, balanced, accuracy)


def read_metrics(path: Path) -> dict[str, Any]:
    """A metrics JSON written by :meth:`ClassificationMetrics.write`."""
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data
