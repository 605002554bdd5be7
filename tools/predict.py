"""Write a family's probability maps (raw geometry) into the store.

    python tools/predict.py CONFIG --split oof  [--folds 0,1,2] [key=value ...]   # each fold on its held-out cases
    python tools/predict.py CONFIG --split test [--folds all | 0,1,2,3,4]         # mean over fold models
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
    ap.add_argument("--split", choices=["oof", "test"], required=True)
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
    folds = None
    if a.folds:
        try:
            folds = "all" if a.folds == "all" else [int(f) for f in a.folds.split(",")]
        except ValueError:
            ap.error(f"--folds {a.folds!r}: expected e.g. 0,1,2 or all")
    exp = cfg.get("exp") or Path(a.config).stem
    try:
        summary = fam.predict(cfg, exp, a.split, folds=folds)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
