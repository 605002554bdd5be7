"""Train one fold of a family from its config.

    kk train CONFIG --fold K [--resume] [--cache C --work-root W --pred-root P] [key=value ...]
    kk train CONFIG --fold 0,1,2        # several folds, one after the other, in one process
    kk train CONFIG --fold all          # one model on every case (no validation)
    torchrun --nproc_per_node 2 tools/train.py CONFIG --fold 0   # DDP (gloo on CPU, nccl on CUDA)

Outputs go to <work_root>/<family>/<exp>/fold<K>/: resolved config, training checkpoints (for --resume),
logs (TensorBoard, JSON, metrics.csv) and the self-describing inference checkpoints best.pth / last.pth;
``done.json`` is written last, when the fold's training returned (``kk run`` skips only such folds).
A fold that the cache's folds.csv lacks, or a config that does not validate, exits 2 with one ``error:`` line.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser, add_config_path_flags, config_arg, config_path_overrides, emit, spelled
from kaggle_kit.env import setup_offline


def parse_folds(text: str) -> list:
    """``all`` | ``K`` | ``K1,K2,...`` -> the folds to train, in order."""
    if text == "all":
        return ["all"]
    try:
        folds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--fold must be 'all', an index or a comma-separated list of indices, got {text!r}") from None
    if not folds or any(k < 0 for k in folds) or len(set(folds)) != len(folds):
        raise ValueError(f"--fold must list distinct non-negative fold indices, got {text!r}")
    return folds


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("config", type=config_arg, help="family config: a path, or a shipped config by name (seg25d/tiny_cpu; kk cfg --list)")
    ap.flag("--fold", "--folds", required=True, help="fold index, comma-separated indices, or 'all'")
    ap.add_argument("--resume", action="store_true", help="continue from the fold's last training checkpoint (read as "
                    "plain data with weights_only=True; one holding pickled objects is refused, naming it)")
    add_config_path_flags(ap)
    ap.summary_json()
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.epochs=3")
    a = ap.parse_intermixed_args(argv)  # overrides may follow options
    a.overrides = config_path_overrides(ap, a, a.overrides)
    setup_offline()
    from kaggle_kit.config import dump_config, load_config
    from kaggle_kit.data.cache import check_folds
    from kaggle_kit.paths import fold_done_marker, work_dir
    from kaggle_kit.registry import resolve
    from kaggle_kit.utils import atomic_write_json, atomic_write_text

    try:
        folds = parse_folds(a.fold)
    except ValueError as e:
        ap.error(str(e))
    cfg = load_config(a.config, a.overrides)
    fam = resolve("family", cfg["family"])
    check_folds(cfg["cache"], folds, spelled(a, "fold", "--fold"))  # before any fold folder is made
    exp = cfg.get("exp") or Path(a.config).stem
    seconds = {}
    for fold in folds:  # several folds in one process: the imports and start-up are paid once
        wd = work_dir(cfg["work_root"], cfg["family"], exp, fold)
        wd.mkdir(parents=True, exist_ok=True)
        done = fold_done_marker(cfg["work_root"], cfg["family"], exp, fold)
        done.unlink(missing_ok=True)  # a fold being (re)trained is not finished until it returns
        atomic_write_text(wd / "config.yaml", dump_config(cfg))
        t0 = time.time()
        fam.train(cfg, fold, exp, resume=a.resume)
        seconds[str(fold)] = round(time.time() - t0, 1)
        if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one marker, by the first rank
            atomic_write_json(done, {"fold": fold, "exp": exp, "family": cfg["family"], "config": str(a.config),
                                     "seconds": seconds[str(fold)],
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        print(f"done: {wd}", flush=True)
    if int(os.environ.get("RANK", "0")) == 0:
        emit(a, {"family": cfg["family"], "exp": exp, "folds": folds, "seconds": seconds,
                 "work_root": str(cfg["work_root"])})
    return 0



if __name__ == "__main__":
    run(main)
