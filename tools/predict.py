"""Write a family's probability maps (raw geometry) into the store.

    python tools/predict.py CONFIG --split oof  [--folds 0,1,2] [key=value ...]   # each fold on its held-out cases
    python tools/predict.py CONFIG --split test [--folds all | 0,1,2,3,4]         # mean over fold models
    python tools/predict.py CONFIG --split oof,test                                # both, in one process

One JSON summary line per split, in the order given.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    from kaggle_kit.config import ConfigError, load_config
    from kaggle_kit.registry import resolve

    try:
        cfg = load_config(a.config, a.overrides)
        fam = resolve("family", cfg["family"])
    except (ConfigError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    splits = list(dict.fromkeys(t.strip() for t in a.split.split(",")))
    if not splits or any(t not in ("oof", "test") for t in splits):
        ap.error(f"--split {a.split!r}: expected oof, test or oof,test")
    folds = None
    if a.folds:
        try:
            folds = "all" if a.folds == "all" else [int(f) for f in a.folds.split(",")]
        except ValueError:
            ap.error(f"--folds {a.folds!r}: expected e.g. 0,1,2 or all")
    exp = cfg.get("exp") or Path(a.config).stem
    for split in splits:  # several splits in one process: start-up paid once
        try:
            summary = fam.predict(cfg, exp, split, folds=folds)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
