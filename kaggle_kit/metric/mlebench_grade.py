"""MLE-bench's CSV grader of this competition: a submission table against its answers table.

The behaviour is listed in :mod:`kaggle_kit.metric.mlebench` (rows paired by position, each decoded with its
answer row's size, column-major decoding, runs past the image end cut, invalid RLEs rejecting the whole
file); the Hausdorff term of each case-day is :func:`kaggle_kit.metric.mlebench.hausdorff_mlebench`. Our own
code, written from the behaviour read in openai/mle-bench's ``grade.py`` and ``competitions/utils.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import DataError
from kaggle_kit.metric.mlebench import column_major_view, hausdorff_mlebench

__all__ = ["GradeResult", "InvalidSubmission", "grade_frames", "parse_rle_lenient"]


class InvalidSubmission(DataError):
    """The grader would reject the submission; the message names the row."""


def parse_rle_lenient(rle, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse an RLE as the grader does: 0-based run (starts, ends), int64, cut at ``n_pixels``.

    Empty / whitespace / None / NaN -> no runs. Raises ValueError (the grader rejects the submission) for a
    non-integer token, unsorted starts, a start or length < 1, or runs overlapping inside the image.
    With an odd token count the last start is checked but not used; runs past the end are cut or dropped.
    """
    if rle is None or (isinstance(rle, float) and math.isnan(rle)) or not str(rle).strip():
        z = np.zeros(0, np.int64)
        return z, z
    try:
        vals = [int(tok) for tok in str(rle).split()]
    except ValueError:
        raise ValueError(f"RLE {str(rle)[:40]!r} has a non-integer token") from None
    big = 1 << 62
    vals = np.array([min(max(v, -big), big) for v in vals], np.int64)
    starts, lengths = vals[0::2], vals[1::2]
    if (np.diff(starts) < 0).any():
        raise ValueError("RLE starts are not sorted")
    if (starts < 1).any() or (lengths < 1).any():
        raise ValueError("RLE starts and lengths must be positive integers")
    k = len(lengths)
    lo = starts[:k] - 1
    hi = np.minimum(lo + lengths, big)
    if k > 1:
        reach = np.maximum.accumulate(hi)[:-1]  # furthest end of the runs before each
        bad = np.flatnonzero((lo[1:] < n_pixels) & (lo[1:] < reach))
        if bad.size:
            raise ValueError(f"RLE runs overlap (pair {int(bad[0]) + 1} starts at {int(lo[bad[0] + 1]) + 1})")
    keep = lo < n_pixels
    return lo[keep], np.minimum(hi[keep], n_pixels)


def _covered_before(lo, hi, x):
    """Pixels of the sorted disjoint runs [lo, hi) below each x (int64 array)."""
    cum = np.concatenate([[0], np.cumsum(hi - lo)])
    j = np.searchsorted(lo, x, side="left")  # runs starting below x; all but the last end below it
    p = np.maximum(j - 1, 0)
    return np.where(j > 0, cum[p] + np.minimum(x, hi[p]) - lo[p], 0)


def _intersection(a, b) -> int:
    (alo, ahi), (blo, bhi) = a, b
    if not len(alo) or not len(blo):
        return 0
    return int((_covered_before(alo, ahi, bhi) - _covered_before(alo, ahi, blo)).sum())


@dataclass
class GradeResult:
    """What :func:`grade_frames` returns. score, dice, hausdorff: the grader's numbers (NaN where it
    would give NaN). dice_rows: float (N,) per answer row (NaN both empty); hd_case_days: list of
    (answer case-day, hd or NaN) in the grader's order; mismatched_rows: positions whose (id, class)
    differs from the answer row's (the grader pairs them anyway)."""

    score: float
    dice: float
    hausdorff: float
    dice_rows: np.ndarray
    classes: np.ndarray
    hd_case_days: list = field(default_factory=list)
    mismatched_rows: list = field(default_factory=list)

    @property
    def n_dice_rows(self) -> int:
        return int(np.isfinite(self.dice_rows).sum())

    @property
    def n_hd_terms(self) -> int:
        return sum(1 for _, v in self.hd_case_days if not math.isnan(v))


def _volumes(ids, runs, heights, widths, who):
    """Case-day volumes as the grader builds them: rows sorted by id (stable), one OR-ed slice per unique
    id, case-days in order of first appearance. Returns [(case_day, uint8 (D, H, W) in the grader's
    column-major geometry)]."""
    order = sorted(range(len(ids)), key=ids.__getitem__)
    groups: dict = {}
    for i in order:
        cd = ids[i].split("_slice_")[0]
        slices = groups.setdefault(cd, {})
        slices.setdefault(ids[i], []).append(i)
    out = []
    for cd, slices in groups.items():
        hw = {(int(heights[i]), int(widths[i])) for rows in slices.values() for i in rows}
        if len(hw) > 1:
            raise InvalidSubmission(f"{who}: case-day {cd} has rows decoded at different sizes {sorted(hw)}; "
                                    "the grader cannot stack them")
        h, w = hw.pop()
        vol = np.zeros((len(slices), h * w), np.uint8)
        for z, rows in enumerate(slices.values()):
            for i in rows:
                lo, hi = runs[i]
                for a, b in zip(lo.tolist(), hi.tolist()):
                    vol[z, a:b] = 1
        out.append((cd, column_major_view(vol.reshape(len(slices), h, w))))
    return out


def grade_frames(sub: pd.DataFrame, answers: pd.DataFrame, who: str = "submission") -> GradeResult:
    """MLE-bench's grade of ``sub`` (id, class, predicted) against ``answers`` (id, class, predicted or
    segmentation, image_height, image_width), rows paired by position. Raises InvalidSubmission naming
    the row where the grader would reject the file. who: the submission's name for messages."""
    missing = {"id", "class", "predicted"} - set(sub.columns)
    if missing:
        raise InvalidSubmission(f"{who}: columns {list(sub.columns)}; the grader needs id, class, predicted")
    ans_col = "predicted" if "predicted" in answers.columns else "segmentation"
    for col in ("id", ans_col, "image_height", "image_width"):
        if col not in answers.columns:
            raise DataError(f"answers: column {col!r} missing (have {list(answers.columns)})")
    if len(sub) != len(answers):
        raise InvalidSubmission(f"{who}: {len(sub)} rows, the answers have {len(answers)} (the grader pairs "
                                "rows by position)")
    heights = answers["image_height"].astype(int).to_numpy()
    widths = answers["image_width"].astype(int).to_numpy()
    sub_ids = sub["id"].astype(str).tolist()
    ans_ids = answers["id"].astype(str).tolist()
    sub_rle = sub["predicted"].tolist()
    ans_rle = answers[ans_col].tolist()
    sub_runs, ans_runs = [], []
    for i in range(len(sub)):
        n = int(heights[i] * widths[i])
        for rle, runs, name in ((sub_rle[i], sub_runs, who), (ans_rle[i], ans_runs, "answers")):
            try:
                runs.append(parse_rle_lenient(rle, n))
            except ValueError as e:
                raise InvalidSubmission(f"{name}: line {i + 2} ({ans_ids[i] if name == 'answers' else sub_ids[i]}"
                                        f"): {e}") from None
    dice = np.full(len(sub), np.nan)
    for i in range(len(sub)):
        (plo, phi), (tlo, thi) = sub_runs[i], ans_runs[i]
        den = int((phi - plo).sum() + (thi - tlo).sum())
        if den:
            dice[i] = 2.0 * _intersection(sub_runs[i], ans_runs[i]) / den
    sub_cls = sub["class"].astype(str).to_numpy()
    ans_cls = answers["class"].astype(str).to_numpy() if "class" in answers.columns else sub_cls
    mismatched = np.flatnonzero((np.asarray(sub_ids) != np.asarray(ans_ids)) | (sub_cls != ans_cls)).tolist()
    sub_vols = _volumes(sub_ids, sub_runs, heights, widths, who)
    ans_vols = _volumes(ans_ids, ans_runs, heights, widths, "answers")
    work: dict = {}
    hd = [(cd, hausdorff_mlebench(p, t, work)) for (_, p), (cd, t) in zip(sub_vols, ans_vols)]
    with np.errstate(invalid="ignore"):
        d = float(np.nanmean(dice)) if np.isfinite(dice).any() else float("nan")
        hv = np.array([v for _, v in hd], float)
        h = float(np.nanmean(hv)) if np.isfinite(hv).any() else float("nan")
    return GradeResult(0.4 * d + 0.6 * (1.0 - h), d, h, dice, ans_cls, hd, mismatched)
