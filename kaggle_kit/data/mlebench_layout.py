"""MLE-bench's layout of this competition: how to recognise it, and the placeholder sample submission.

MLE-bench (openai/mle-bench) turns the competition into a CSV one built from train only: ``train/``,
``test/`` (10 % of cases whole plus every day after a case's 4th), ``train.csv``, ``test.csv`` with the
columns id,class (the rows to predict) and ``sample_submission.csv`` whose ``predicted`` column holds the
same placeholder RLE ``1 1 5 2`` on every row. Its grader is ``kaggle_kit.metric.mlebench``.

The toolkit reads that layout as it is (test rows from the sample submission, placeholder ignored); these
helpers only let the tools say which layout they are on and warn about an untouched placeholder file.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["MLEBENCH_PLACEHOLDER", "detect_mlebench_layout", "placeholder_rle"]

MLEBENCH_PLACEHOLDER = "1 1 5 2"


def placeholder_rle(values) -> str | None:
    """The RLE when every value (two or more) is one identical non-empty RLE string (an untouched
    placeholder submission), else None. values: an iterable of str (empty cells as "" or NaN)."""
    s = pd.Series(list(values), dtype=object).fillna("").astype(str).str.strip()
    if len(s) < 2 or s.iloc[0] == "" or not (s == s.iloc[0]).all():
        return None
    return s.iloc[0]


def detect_mlebench_layout(root) -> dict | None:
    """An MLE-bench folder: ``test.csv`` with columns id,class and no labels, and a ``sample_submission.csv``
    whose ``predicted`` column is one identical non-empty RLE on every row. Returns {test_csv,
    sample_submission, placeholder, n_rows, n_case_days, same_rows} (same_rows: the two files list the
    same (id, class) rows in the same order) or None for any other folder. Reads only those two files.
    """
    root = Path(root)
    test_csv, sample = root / "test.csv", root / "sample_submission.csv"
    if not (test_csv.is_file() and sample.is_file()):
        return None
    try:
        test = pd.read_csv(test_csv, dtype=str, keep_default_na=False)
        sub = pd.read_csv(sample, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    if not {"id", "class"} <= set(test.columns) or {"segmentation", "predicted"} & set(test.columns):
        return None
    if "predicted" not in sub.columns or not {"id", "class"} <= set(sub.columns):
        return None
    ph = placeholder_rle(sub["predicted"])
    if ph is None:
        return None
    same = len(test) == len(sub) and bool(((test["id"].to_numpy() == sub["id"].to_numpy())
                                           & (test["class"].to_numpy() == sub["class"].to_numpy())).all())
    return {"test_csv": str(test_csv), "sample_submission": str(sample), "placeholder": ph,
            "n_rows": len(sub), "n_case_days": int(sub["id"].str.split("_slice_").str[0].nunique()),
            "same_rows": same}
