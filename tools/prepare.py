"""Build the cache (memory-mappable per case-day volumes, slice index, folds) from a competition folder.

    python tools/prepare.py --data-root ROOT --cache CACHE [--folds 5 --seed 42 --splits train test]

Re-running skips complete case-days; a crash leaves no half-written file that a later run would trust.
"""
from __future__ import annotations

import argparse
import json
import sys

from kaggle_kit.data.cache import prepare_cache
from kaggle_kit.data.folds import FAULTY, FAULTY_WIDE
from kaggle_kit.data.raw import DataError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--faulty", choices=["default", "wide"], default="default",
                    help="blacklist of faulty case-days flagged in the index")
    ap.add_argument("--refold", action="store_true", help="rebuild folds.csv even if it exists")
    a = ap.parse_args(argv)
    try:
        summary = prepare_cache(a.data_root, a.cache, a.splits, n_folds=a.folds, seed=a.seed,
                                faulty=FAULTY_WIDE if a.faulty == "wide" else FAULTY, refold=a.refold)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
