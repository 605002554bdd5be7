"""Folds (grouped by case, stratified on organ presence), the faulty-case blacklist and slice subsets.

Folds are computed once by ``tools/prepare.py`` and written to ``folds.csv`` (case, fold); every family
reads that file, so all OOF predictions share one split.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import DataError

__all__ = ["FAULTY", "FAULTY_WIDE", "make_folds", "select_subset", "SUBSETS"]

# Case-days with bad labels. FAULTY is the commonly dropped pair; FAULTY_WIDE the host's wider list.
FAULTY: tuple[str, ...] = ("case7_day0", "case81_day30")
FAULTY_WIDE: tuple[str, ...] = FAULTY + (
    "case43_day18", "case43_day26", "case138_day0", "case124_day19", "case144_day15",
)

SUBSETS = ("all", "anno_only", "no_tail", "no_fault", "no_tail_no_fault", "anno_only_no_fault")


def make_folds(index: pd.DataFrame, n_folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """Assign each case to a fold; returns DataFrame(case, fold) sorted by case.

    Grouped: all days of a case share a fold. Stratified: greedy balancing of per-fold totals of slices
    and of positive slices per class (cases placed largest first, ties broken by a seeded shuffle, each
    to the fold where the normalised totals stay most even). Deterministic for a given seed.
    ``index`` needs columns case, has_large_bowel, has_small_bowel, has_stomach.
    """
    pres = [c for c in index.columns if c.startswith("has_")]
    per_case = index.groupby("case")[pres].sum()
    per_case.insert(0, "n_slices", index.groupby("case").size())
    cases = per_case.index.to_numpy()
    if len(cases) < n_folds:
        raise DataError(f"{len(cases)} cases cannot fill {n_folds} folds (need at least one case per fold); "
                        "pass a smaller --folds")
    feats = per_case.to_numpy(np.float64)
    scale = feats.sum(0)
    scale[scale == 0] = 1.0
    feats = feats / scale  # each feature's share of its total
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(cases))
    order = order[np.argsort(-feats[order, 0], kind="stable")]
    totals = np.zeros((n_folds, feats.shape[1]))
    counts = np.zeros(n_folds, int)
    fold_of = np.empty(len(cases), int)
    for i in order:
        # Empty folds first so that every fold gets a case; then the lowest resulting imbalance.
        cand = np.flatnonzero(counts == 0) if (counts == 0).any() else np.arange(n_folds)
        costs = []
        for f in cand:
            t = totals.copy()
            t[f] += feats[i]
            costs.append(((t - t.mean(0)) ** 2).sum())
        f = cand[int(np.argmin(costs))]
        fold_of[i] = f
        totals[f] += feats[i]
        counts[f] += 1
    return pd.DataFrame({"case": cases, "fold": fold_of}).sort_values("case").reset_index(drop=True)


def select_subset(index: pd.DataFrame, subset: str = "all", faulty=FAULTY, tail: int = 5) -> pd.DataFrame:
    """Rows of a slice index kept by a named subset.

    - ``all``: every slice.
    - ``anno_only``: slices inside [first_anno, last_anno] of their case-day (annotated range).
    - ``no_tail``: drop the ``tail`` slices right after the last annotated slice of each case-day
      (organs there are often visible but unlabelled).
    - ``no_fault``: drop the faulty case-days. ``*_no_fault`` combine.
    ``index`` needs case_day, slice, first_anno, last_anno (0 when a case-day has no label).
    """
    if subset not in SUBSETS:
        raise KeyError(f"unknown subset {subset!r}; options: {SUBSETS}")
    keep = np.ones(len(index), bool)
    s = index["slice"].to_numpy()
    lo, hi = index["first_anno"].to_numpy(), index["last_anno"].to_numpy()
    labelled = hi > 0
    if subset.startswith("anno_only"):
        keep &= labelled & (s >= lo) & (s <= hi)
    if subset.startswith("no_tail"):
        keep &= ~(labelled & (s > hi) & (s <= hi + tail))
    if subset.endswith("no_fault"):
        keep &= ~index["case_day"].isin(list(faulty)).to_numpy()
    return index[keep]
