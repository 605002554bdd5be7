"""The main job end to end: synthetic data (or a given competition folder) -> cache -> ... -> submission.

    python tools/run_all.py --work demo_out [--data-root ROOT] [--preset tiny|gpu]

Stages run so far: generate synthetic data (unless --data-root), prepare the cache. Later stages
(train every family, OOF, tune, ensemble, notebook) are added as the families land.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kaggle_kit.env import setup_offline


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="demo_out", help="output folder for everything this run writes")
    ap.add_argument("--data-root", default=None, help="competition folder; default: generate synthetic data")
    ap.add_argument("--preset", choices=["tiny", "gpu"], default="tiny")
    ap.add_argument("--train-cases", type=int, default=10)
    ap.add_argument("--test-cases", type=int, default=3)
    ap.add_argument("--size-scale", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    work = Path(a.work)
    setup_offline(work / "home")
    t0 = time.time()
    from kaggle_kit.data.cache import prepare_cache
    from kaggle_kit.data.synthetic import make_synthetic

    if a.data_root is None:
        root = work / "data"
        if not (root / "train.csv").is_file():
            print(f"[run_all] generating synthetic data in {root}")
            make_synthetic(root, a.train_cases, a.test_cases, a.seed, a.size_scale, overwrite=True)
    else:
        root = Path(a.data_root)
    cache = work / "cache"
    print(f"[run_all] preparing cache in {cache}")
    summary = prepare_cache(root, cache)
    print(f"[run_all] cache: {json.dumps(summary)} ({time.time() - t0:.0f} s)")
    result = {"data_root": str(root), "cache": str(cache), "cache_summary": summary}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
