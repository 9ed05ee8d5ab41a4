"""The train/test split of a cohort's cases: drawn once, written as a CSV, read by every stage.

A fold-nested run fits its clusters (``cluster.fit_split``), its non-integrated baseline and its
diagnosis models (``stats.split``) on the training cases only, so no test case shapes what the test
cases are scored with. The file has one row per case::

    case_id,split
    case000,train
    case001,test
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pandas as pd

from mixture_ray.errors import MixtureRayError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

SPLIT_COLUMNS = ("case_id", "split")
TRAIN, TEST = "train", "test"


class SplitError(MixtureRayError):
    """A case split that cannot be drawn, or a split file that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Split:
    """Training and test case ids (the same for every model of a run)."""

    train: tuple[str, ...]
    test: tuple[str, ...]

    def missing(self, case_ids: Iterable[str]) -> list[str]:
        """The ids of ``case_ids`` that are in neither part, sorted."""
        known = {*self.train, *self.test}
        return sorted({str(c) for c in case_ids} - known)

    def restricted(self, case_ids: Iterable[str]) -> Split:
        """This split with only ``case_ids`` kept (each part keeps its order)."""
        keep = {str(c) for c in case_ids}
        return Split(tuple(c for c in self.train if c in keep), tuple(c for c in self.test if c in keep))


def split_cases(labels: pd.Series, test_fraction: float, seed: int) -> Split:
    """Seeded random split stratified on the label.

    Args:
        labels: the binary label of each case, indexed by case id (the order matters for the seed).
        test_fraction: share of the cases in the test part, in (0, 1).
        seed: random seed of the draw.

    Returns:
        The training and test case ids.

    Raises:
        SplitError: fewer than 4 cases of either class.
    """
    from sklearn.model_selection import train_test_split

    counts = labels.value_counts()
    if len(counts) < 2 or counts.min() < 4:
        raise SplitError(f"the diagnosis split needs at least 4 cases of each class "
                         f"(got {counts.to_dict()})")
    train, test = train_test_split(labels.index.to_numpy(), test_size=test_fraction, random_state=seed,
                                   stratify=labels.to_numpy())
    return Split(tuple(map(str, train)), tuple(map(str, test)))


def write_split(path: Path, split: Split) -> None:
    """Write ``split`` as ``case_id,split`` rows (training cases first), replacing ``path`` atomically."""
    frame = pd.DataFrame({"case_id": [*split.train, *split.test],
                          "split": [TRAIN] * len(split.train) + [TEST] * len(split.test)})
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def read_split(path: Path) -> Split:
    """Read a split file written by ``mixture-ray split`` (or by hand, with the same two columns).

    Args:
        path: a CSV with ``case_id`` and ``split`` (``train`` or ``test``) columns.

    Returns:
        The training and test case ids, in file order.

    Raises:
        SplitError: the file is unreadable, lacks a column, repeats a case, has another split value, or
            leaves a part empty; the message names the file and the rows.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise SplitError(f"split file {path}: cannot read it as CSV ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise SplitError(f"split file {path}: columns {missing} are missing (columns present: "
                         f"{list(frame.columns)}); write it with `mixture-ray split`")
    ids, parts = frame["case_id"].str.strip(), frame["split"].str.strip().str.lower()
    bad = [f"data row {i + 1} ({ids.iloc[i]!r}: {frame['split'].iloc[i]!r})"
           for i in range(len(frame)) if parts.iloc[i] not in (TRAIN, TEST)]
    if bad:
        raise SplitError(f"split file {path}: split must be 'train' or 'test': {', '.join(bad[:10])}")
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated or (ids == "").any():
        raise SplitError(f"split file {path}: every row needs its own non-empty case id "
                         f"(repeated: {repeated[:10]})")
    split = Split(tuple(ids[parts == TRAIN]), tuple(ids[parts == TEST]))
    if not split.train or not split.test:
        raise SplitError(f"split file {path}: both parts need cases (train {len(split.train)}, "
                         f"test {len(split.test)})")
    return split
