"""Write a family's probability maps (raw geometry) into the store.

    python tools/predict.py CONFIG --split oof  [--folds 0,1,2] [key=value ...]   # each fold on its held-out cases
    python tools/predict.py CONFIG --split test [--folds all | 0,1,2,3,4]         # mean over fold models
    python tools/predict.py CONFIG --split oof,test                                # both, in one process

One JSON summary line per split, in the order given. A fold that the cache's folds.csv lacks, a config
that does not validate or a checkpoint that does not load exits 2 with one ``error:`` line.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.env import setup_offline


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--split", required=True, help="oof | test | oof,test")
    ap.add_argument("--folds", default=None, help="comma-separated fold indices (default: every fold), or 'all' "
                    "(test only: the model trained on every case)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args(argv)  # overrides may follow options
    setup_offline()
    from kaggle_kit.config import load_config
    from kaggle_kit.data.cache import check_folds
    from kaggle_kit.registry import resolve

    cfg = load_config(a.config, a.overrides)
    fam = resolve("family", cfg["family"])
    splits = list(dict.fromkeys(t.strip() for t in a.split.split(",")))
    if not splits or any(t not in ("oof", "test") for t in splits):
        ap.error(f"--split {a.split!r}: expected oof, test or oof,test")
    folds = None
    if a.folds:
        try:
            folds = "all" if a.folds == "all" else [int(f) for f in a.folds.split(",")]
        except ValueError:
            ap.error(f"--folds {a.folds!r}: expected e.g. 0,1,2 or all")
        if folds == "all" and "oof" in splits:
            ap.error("--folds all has no held-out cases: use it with --split test only")
        if folds != "all":
            check_folds(cfg["cache"], folds, "--folds")
    exp = cfg.get("exp") or Path(a.config).stem
    for split in splits:  # several splits in one process: start-up paid once
        summary = fam.predict(cfg, exp, split, folds=folds)
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    run(main)
