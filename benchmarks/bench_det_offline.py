"""Proof that the crop detector trains and predicts with no network at all, and what it costs.

Runs, each under ``unshare -n`` (a new network namespace: no interface but loopback, no DNS):
tools/make_synthetic.py + tools/prepare.py (unless --cache is given), then for every fold
``tools/train.py configs/det_yolo/<config> --fold K``, then ``tools/predict.py ... --split oof`` (prints the
box recall of organ pixels) and ``--split test``. A fresh ``KAGGLE_KIT_HOME`` is used, so nothing
downloaded earlier (fonts, weights, settings) can help. Prints wall times per step, the epoch times from
ultralytics' results.csv, and the OOF box recall.

    python benchmarks/bench_det_offline.py [--cache CACHE] [--folds 0 1 2] [--config tiny_cpu.yaml] [key=value ...]
    python benchmarks/bench_det_offline.py --cache CACHE --work W --skip-train   # predict again with W's models

Needs root (or user namespaces) for ``unshare -n``; ``--no-unshare`` runs the same steps with the network.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list, env: dict, unshare: bool) -> tuple[subprocess.CompletedProcess, float]:
    full = (["unshare", "-n"] if unshare else []) + [str(c) for c in cmd]
    t = time.time()
    p = subprocess.run(full, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
    dt = time.time() - t
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(full)}")
    return p, dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=None, help="prepared cache (default: build a small synthetic one)")
    ap.add_argument("--work", default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--config", default="tiny_cpu.yaml", help="file under configs/det_yolo/")
    ap.add_argument("--folds", nargs="+", default=None, help="folds to train (default: all in folds.csv)")
    ap.add_argument("--train-cases", type=int, default=6)
    ap.add_argument("--size-scale", type=float, default=0.25)
    ap.add_argument("--no-unshare", action="store_true")
    ap.add_argument("--skip-train", action="store_true", help="reuse the folds already trained in --work")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=1")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    a = ap.parse_args(argv)
    unshare = not a.no_unshare
    if unshare:
        if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"], check=False).returncode != 0:
            raise SystemExit("`unshare -n` is not available here (needs root or user namespaces); use --no-unshare")
        # inside the namespace no name resolves: show it
        code = ("import socket\ntry:\n socket.getaddrinfo('pypi.org', 443); print('ONLINE')\n"
                "except OSError as e:\n print('offline:', e)")
        probe = subprocess.run(["unshare", "-n", sys.executable, "-c", code], check=False, capture_output=True,
                               text=True)
        print(f"network inside `unshare -n`: {probe.stdout.strip()}")
    tmp = a.work is None
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_det_offline_"))
    try:
        return _bench(a, work, unshare)
    finally:
        if tmp and not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def _bench(a, work, unshare) -> int:
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, KAGGLE_KIT_HOME=str(work / "home"), KAGGLE_KIT_NO_PROGRESS="1")
    py = sys.executable
    times = {}
    cache = Path(a.cache) if a.cache else work / "cache"
    if not a.cache:
        _, times["make_synthetic"] = run([py, "tools/make_synthetic.py", work / "synth", "--train-cases", a.train_cases,
                                          "--test-cases", 1, "--size-scale", a.size_scale, "--overwrite"], env, unshare)
        _, times["prepare"] = run([py, "tools/prepare.py", "--data-root", work / "synth", "--cache", cache, "--folds", 3],
                                  env, unshare)
    import pandas as pd

    folds = a.folds or sorted(str(f) for f in pd.read_csv(cache / "folds.csv")["fold"].unique())
    cfg = ROOT / "configs/det_yolo" / a.config
    ov = [f"cache={cache}", f"work_root={work / 'work'}", f"pred_root={work / 'preds'}", *a.overrides]
    epoch_times = {}
    for f in folds:
        if not a.skip_train:
            _, times[f"train fold {f}"] = run([py, "tools/train.py", cfg, *ov, "--fold", f], env, unshare)
        from kaggle_kit.config import load_config

        exp = load_config(cfg, ov).get("exp") or cfg.stem
        res = pd.read_csv(work / "work" / "det_yolo" / exp / f"fold{f}" / "yolo" / "results.csv")
        res.columns = [c.strip() for c in res.columns]
        if "time" in res:  # cumulative seconds at the end of each epoch
            epoch_times[f] = [round(float(x), 1) for x in res["time"].diff().fillna(res["time"])]
    fl = ",".join(folds)
    p, times["predict oof"] = run([py, "tools/predict.py", cfg, *ov, "--split", "oof", "--folds", fl], env, unshare)
    oof = json.loads(p.stdout.strip().splitlines()[-1])
    if (cache / "test_index.csv").is_file() and len(pd.read_csv(cache / "test_index.csv")):
        _, times["predict test"] = run([py, "tools/predict.py", cfg, *ov, "--split", "test", "--folds", fl], env,
                                       unshare)
    print(f"offline (unshare -n): {unshare}; work: {work}")
    for k, v in times.items():
        print(f"  {k:<16} {v:7.1f} s")
    for f, ts in epoch_times.items():
        print(f"  fold {f} epoch seconds (ultralytics results.csv): {ts}")
    print(f"  OOF box recall of organ pixels: {oof['box_recall']:.5f}; mean box area {oof['box_area_fraction']:.3f} "
          f"of the image ({oof['box_area_fraction_organ_slices']:.3f} on organ slices); detected on "
          f"{oof['detected_share']:.3f} of slices")
    print(json.dumps({"offline": unshare, "times_s": times, "epoch_s": epoch_times, "oof": oof}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
