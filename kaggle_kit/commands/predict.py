"""Write a family's probability maps (raw geometry) into the store.

    kk predict CONFIG --split oof  [--fold 0,1,2] [key=value ...]   # each fold on its held-out cases
    kk predict CONFIG --split test [--fold all | 0,1,2,3,4]         # mean over fold models
    kk predict CONFIG --split oof,test [--cache C --work-root W --pred-root P]   # both, in one process

One JSON summary line per split, in the order given; ``--summary-json`` writes {split: summary}. A fold that
the cache's folds.csv lacks, a config that does not validate or a checkpoint that does not load exits 2 with
one ``error:`` line.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser, add_config_path_flags, config_arg, config_path_overrides, spelled
from kaggle_kit.env import setup_offline


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("config", type=config_arg, help="family config: a path, or a shipped config by name (seg25d/tiny_cpu; kk cfg --list)")
    ap.add_argument("--split", required=True, help="oof | test | oof,test")
    ap.flag("--fold", "--folds", default=None, help="comma-separated fold indices (default: every fold), or "
            "'all' (test only: the model trained on every case)")
    add_config_path_flags(ap)
    ap.summary_json()
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. predict.tta=hflip")
    a = ap.parse_intermixed_args(argv)  # overrides may follow options
    a.overrides = config_path_overrides(ap, a, a.overrides)
    setup_offline()
    from kaggle_kit.config import load_config
    from kaggle_kit.data.cache import check_folds
    from kaggle_kit.registry import resolve
    from kaggle_kit.utils import atomic_write_json

    cfg = load_config(a.config, a.overrides)
    fam = resolve("family", cfg["family"])
    splits = list(dict.fromkeys(t.strip() for t in a.split.split(",")))
    if not splits or any(t not in ("oof", "test") for t in splits):
        ap.error(f"--split {a.split!r}: expected oof, test or oof,test")
    folds = None
    flag = spelled(a, "fold", "--fold")
    if a.fold:
        try:
            folds = "all" if a.fold == "all" else [int(f) for f in a.fold.split(",")]
        except ValueError:
            ap.error(f"{flag} {a.fold!r}: expected e.g. 0,1,2 or all")
        if folds == "all" and "oof" in splits:
            ap.error(f"{flag} all has no held-out cases: use it with --split test only")
        if folds != "all":
            check_folds(cfg["cache"], folds, flag)
    exp = cfg.get("exp") or Path(a.config).stem
    out = {}
    for split in splits:  # several splits in one process: start-up paid once
        t0 = time.perf_counter()
        out[split] = fam.predict(cfg, exp, split, folds=folds)
        out[split]["seconds"] = round(time.perf_counter() - t0, 3)  # the maps alone, models loaded: no start-up
        print(json.dumps(out[split]), flush=True)
    if a.summary_json:
        atomic_write_json(a.summary_json, out)
    return 0



if __name__ == "__main__":
    run(main)
