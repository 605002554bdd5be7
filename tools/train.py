"""Train one fold of a family from its config.

    python tools/train.py CONFIG --fold K [--resume] [key=value ...]
    python tools/train.py CONFIG --fold all          # one model on every case (no validation)
    torchrun --nproc_per_node 2 tools/train.py CONFIG --fold 0   # DDP (gloo on CPU, nccl on CUDA)

Outputs go to <work_root>/<family>/<exp>/fold<K>/: resolved config, training checkpoints (for --resume),
logs (TensorBoard, JSON, metrics.csv) and the self-describing inference checkpoints best.pth / last.pth.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kaggle_kit.env import setup_offline


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--fold", required=True, help="fold index, or 'all'")
    ap.add_argument("--resume", action="store_true", help="continue from the fold's last training checkpoint")
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.epochs=3")
    a = ap.parse_intermixed_args(argv)  # overrides may follow options
    setup_offline()
    from kaggle_kit.config import ConfigError, dump_config, load_config
    from kaggle_kit.paths import work_dir
    from kaggle_kit.registry import resolve
    from kaggle_kit.utils import atomic_write_text

    try:
        cfg = load_config(a.config, a.overrides)
        fam = resolve("family", cfg["family"])
    except (ConfigError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fold = "all" if a.fold == "all" else int(a.fold)
    exp = cfg.get("exp") or Path(a.config).stem
    wd = work_dir(cfg["work_root"], cfg["family"], exp, fold)
    wd.mkdir(parents=True, exist_ok=True)
    atomic_write_text(wd / "config.yaml", dump_config(cfg))
    fam.train(cfg, fold, exp, resume=a.resume)
    print(f"done: {wd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
