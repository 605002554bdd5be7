"""Build the cache (memory-mappable per case-day volumes, slice index, folds) from a competition folder.

    kk prepare --data-root ROOT --cache CACHE [--n-folds 5 --seed 42 --splits train test]

Re-running skips complete case-days (a case-day whose images or labels changed is re-cached; their names,
sizes and modification times are compared, and with --hash-content their bytes); a crash leaves no
half-written file that a later run would trust, and the next run removes its temp files. Bad input exits 2
with one ``error:`` line naming the file (a missing data root, a split folder that does not exist, a
--n-folds that differs from the existing cache's).
"""
from __future__ import annotations

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser, emit, spelled
from kaggle_kit.data.cache import prepare_cache
from kaggle_kit.data.folds import FAULTY, FAULTY_WIDE


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("--data-root", required=True, help="competition folder (train/, test/, the CSVs)")
    ap.add_argument("--cache", required=True, help="cache folder to write (or update)")
    ap.add_argument("--splits", nargs="+", default=["train", "test"],
                    help="split folders under the data root (train, test, or another existing folder)")
    ap.flag("--n-folds", "--folds", type=int, default=None,
            help="number of folds of a new folds.csv (default 5); must match an existing one")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--faulty", choices=["default", "wide"], default="default",
                    help="blacklist of faulty case-days flagged in the index")
    ap.add_argument("--refold", action="store_true", help="rebuild folds.csv even if it exists")
    ap.add_argument("--hash-content", action="store_true",
                    help="fingerprint the images' bytes too (reads every PNG on each run)")
    ap.summary_json()
    a = ap.parse_args(argv)
    if a.n_folds is not None and a.n_folds < 1:
        ap.error(f"{spelled(a, 'n_folds', '--n-folds')} must be at least 1, got {a.n_folds}")
    summary = prepare_cache(a.data_root, a.cache, a.splits, n_folds=a.n_folds, seed=a.seed,
                            faulty=FAULTY_WIDE if a.faulty == "wide" else FAULTY, refold=a.refold,
                            content_hash=a.hash_content)
    emit(a, summary)
    return 0



if __name__ == "__main__":
    run(main)
