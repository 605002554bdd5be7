"""Validate a submission: exact ids/classes/order against the expected rows, every RLE valid for its slice.

    kk validate SUB.csv --data-root ROOT [--split test] [--summary-json PATH]

Exit 0 and a JSON summary when valid; exit 1 and a message naming the first bad row otherwise. A valid
file whose every row holds one identical non-empty RLE (an untouched placeholder such as MLE-bench's
``1 1 5 2`` sample submission) gets a WARNING on stderr and ``"placeholder": RLE`` in the summary.
"""
from __future__ import annotations

import sys

import pandas as pd

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser, emit
from kaggle_kit.data.mlebench_layout import placeholder_rle
from kaggle_kit.io.submission import SubmissionError, validate_submission


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("submission", help="submission CSV (id,class,predicted)")
    ap.add_argument("--data-root", required=True, help="competition folder (the expected rows and image sizes)")
    ap.add_argument("--split", choices=["test", "train", "oof"], default="test",
                    help="rows of sample_submission/test.csv/test images, or (train, oof) train.csv/train images")
    ap.summary_json()
    a = ap.parse_args(argv)
    try:
        summary = validate_submission(a.submission, a.data_root, "train" if a.split == "oof" else a.split)
    except SubmissionError as e:  # the file is the problem: exit 1; bad data (DataError) is an error: exit 2
        print(f"invalid submission: {e}", file=sys.stderr)
        return 1
    ph = placeholder_rle(pd.read_csv(a.submission, dtype=str, keep_default_na=False)["predicted"])
    if ph is not None:
        summary["placeholder"] = ph
        print(f"WARNING: {a.submission}: every row holds the same RLE {ph!r}; this looks like an untouched "
              "placeholder (sample) submission, not predictions", file=sys.stderr)
    emit(a, {"valid": True, **summary})
    return 0



if __name__ == "__main__":
    run(main)
