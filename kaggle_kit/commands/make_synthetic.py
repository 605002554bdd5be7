"""Write a synthetic competition folder (exact UW-Madison layout) for tests and demos.

    kk synth OUT --train-cases 8 --test-cases 2 --seed 0 [--size-scale 0.5]     (or --out OUT)
"""
from __future__ import annotations

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser, emit
from kaggle_kit.data.synthetic import make_synthetic


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("folder", nargs="?", metavar="OUT", help="output folder (competition layout)")
    ap.add_argument("--out", default=None, help="the same as OUT")
    ap.add_argument("--train-cases", type=int, default=8)
    ap.add_argument("--test-cases", type=int, default=2, help="0 writes an empty test/ (public-notebook situation)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size-scale", type=float, default=1.0, help="shrink W, H and slice count (e.g. 0.25 for tests)")
    ap.add_argument("--max-days", type=int, default=3, help="days per case are drawn from 1..max-days")
    ap.add_argument("--overwrite", action="store_true")
    ap.summary_json()
    a = ap.parse_args(argv)
    if (a.folder is None) == (a.out is None):
        ap.error("give the output folder once: OUT or --out OUT")
    a.out = a.out or a.folder
    if a.size_scale <= 0 or a.size_scale > 1:
        ap.error("--size-scale must be in (0, 1]")
    summary = make_synthetic(a.out, a.train_cases, a.test_cases, a.seed, a.size_scale, a.max_days, a.overwrite)
    emit(a, summary)
    return 0



if __name__ == "__main__":
    run(main)
