"""Validate a submission: exact ids/classes/order against the expected rows, every RLE valid for its slice.

    python tools/validate_submission.py SUB.csv --data-root ROOT [--split test]

Exit 0 and a JSON summary when valid; exit 1 and a message naming the first bad row otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys

from kaggle_kit.data.raw import DataError
from kaggle_kit.io.submission import SubmissionError, validate_submission


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("submission")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", choices=["test", "train", "oof"], default="test",
                    help="rows of sample_submission/test.csv/test images, or (train, oof) train.csv/train images")
    a = ap.parse_args(argv)
    try:
        summary = validate_submission(a.submission, a.data_root, "train" if a.split == "oof" else a.split)
    except (SubmissionError, DataError) as e:
        print(f"invalid submission: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"valid": True, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
