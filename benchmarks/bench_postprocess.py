"""Post-processing at competition scale: the fused numba pipeline vs a public-notebook numpy/pandas one.

    python benchmarks/bench_postprocess.py [--case-days 150 --slices 144 --members 5 --size 266]
                                           [--baseline-case-days N] [--pool 2]

Both pipelines take the same uint8 member maps (M, D, C, H, W) already in memory (disk reads are not timed;
see kaggle_kit/io/probmaps.py for read speeds) and produce the same submission rows:

- fused: :func:`kaggle_kit.post.postprocess.postprocess` (fusion + per-class threshold in one pass, minimum
  pixel gate, small-component removal, z smoothing) + :func:`kernels.rle_encode_planes` + rows as strings;
- baseline, written the way public notebooks do it: per-member float averaging of ``m / 255``, ``probs >
  thr``, per (slice, class) ``cv2.connectedComponentsWithStats`` small-component removal and the
  ``np.where`` ``mask2rle``, rows collected into a pandas DataFrame written with ``to_csv``.

One core: numba runs single-threaded, cv2 is set to one thread. Also reported: the throughput of a plain
copy of the same member bytes (``np.copyto``), a memory-bandwidth bound for any pass over the maps.
Member maps come from a pool of ``--pool`` generated case-days reused in turn (generation is not timed).

Measured with the defaults (150 case-days x 144 slices x 266x266 x 3 classes, 5 members = 153 MB of maps
per case-day) on the 2-core development VM, shared with other jobs (load average about 3): fused 30 ms
per case-day (5.1 GB/s of member maps, 68 % of a plain copy's 7.4 GB/s), baseline 1.24 s per case-day,
41x faster, 100 % identical rows.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.post import kernels as K
from kaggle_kit.post.postprocess import PostParams, postprocess

PARAMS = PostParams(threshold=(0.5, 0.45, 0.5), gate_min_pixels=(10, 10, 10), min_area_2d=(25, 25, 25),
                    connectivity=8, z_smoothing=False)


def make_members(rng, m, d, c, h, w) -> np.ndarray:
    """uint8 (M, D, C, H, W): soft organ blobs shared by all members, each member with its own noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    logit = np.full((d, c, h, w), -12.0, np.float32)
    span = {0: (0.05, 0.75), 1: (0.2, 0.7), 2: (0.5, 0.9)}
    for k in range(c):
        lo, hi = span[k % 3]
        nb = (4, 7, 1)[k % 3]
        cen = rng.uniform([0.25 * h, 0.25 * w], [0.75 * h, 0.75 * w], size=(nb, 2))
        rad = rng.uniform(6, 20 if k % 3 < 2 else 35, size=nb) * h / 266
        for z in range(d):
            t = z / d
            if not lo <= t <= hi:
                continue
            s = np.sin(np.pi * (t - lo) / (hi - lo))
            for (cy, cx), r in zip(cen + rng.normal(0, 1.0, (nb, 2)), rad * s):
                dist = np.sqrt((yy - cy) ** 2 + ((xx - cx) * 0.8) ** 2) - r
                np.maximum(logit[z, k], -dist / 2.0, out=logit[z, k])
    out = np.empty((m, d, c, h, w), np.uint8)
    for i in range(m):
        x = logit + rng.normal(rng.normal(0, 0.3), 0.6, logit.shape).astype(np.float32)
        out[i] = np.rint(255 / (1 + np.exp(-x)))
    return out


# ------------------------------------------------------------------------------------------ baseline
def mask2rle(img):
    pixels = img.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def baseline_case_day(members, weights, ids, params: PostParams):
    import cv2

    probs = np.zeros(members.shape[1:], np.float32)
    for m in range(len(members)):
        probs += weights[m][None, :, None, None] * (members[m].astype(np.float32) / 255.0)
    rows = []
    for z, id_ in enumerate(ids):
        for c, name in enumerate(CLASSES):
            mask = (probs[z, c] > params.threshold[c]).astype(np.uint8)
            if mask.sum() < params.gate_min_pixels[c]:
                mask[:] = 0
            n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=params.connectivity)
            if n > 1:
                keep = stats[:, cv2.CC_STAT_AREA] >= params.min_area_2d[c]
                keep[0] = False
                mask = keep[lab].astype(np.uint8)
            rows.append({"id": id_, "class": name, "predicted": mask2rle(mask) if mask.any() else ""})
    return rows


def fused_case_day(members, weights, ids, params: PostParams):
    bits, counts = postprocess(members, weights, params)
    rles = K.rle_encode_planes(bits, len(CLASSES), counts)
    c = len(CLASSES)
    return [f"{id_},{name},{rles[z * c + k]}" for z, id_ in enumerate(ids) for k, name in enumerate(CLASSES)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case-days", type=int, default=150)
    ap.add_argument("--baseline-case-days", type=int, default=None, help="default: all (--case-days)")
    ap.add_argument("--slices", type=int, default=144)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--size", type=int, default=266)
    ap.add_argument("--pool", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    rng = np.random.default_rng(a.seed)
    c = len(CLASSES)
    pool = [make_members(rng, a.members, a.slices, c, a.size, a.size) for _ in range(a.pool)]
    weights = K.normalise_weights(rng.uniform(0.5, 1.5, (a.members, c)))
    ids = [f"case1_day{k}_slice_{z + 1:04d}" for k in range(a.case_days) for z in range(a.slices)]
    per_cd = [ids[k * a.slices:(k + 1) * a.slices] for k in range(a.case_days)]
    nbytes = pool[0].nbytes

    fused_case_day(pool[0][:, :2], weights, per_cd[0][:2], PARAMS)  # compile / load the numba cache
    t0 = time.perf_counter()
    lines = ["id,class,predicted"]
    for k in range(a.case_days):
        lines += fused_case_day(pool[k % a.pool], weights, per_cd[k], PARAMS)
    text = "\n".join(lines) + "\n"
    t_fused = time.perf_counter() - t0

    nb = a.case_days if a.baseline_case_days is None else min(a.baseline_case_days, a.case_days)
    t0 = time.perf_counter()
    rows = []
    for k in range(nb):
        rows += baseline_case_day(pool[k % a.pool], weights, per_cd[k], PARAMS)
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    t_base = time.perf_counter() - t0

    fused_rows = text.splitlines()[1:1 + nb * a.slices * c]
    base_rows = buf.getvalue().splitlines()[1:]
    agree = float(np.mean([x == y for x, y in zip(fused_rows, base_rows)])) if base_rows else float("nan")

    dst = np.empty_like(pool[0])
    t0 = time.perf_counter()
    for k in range(a.case_days):
        np.copyto(dst, pool[k % a.pool])
    t_copy = time.perf_counter() - t0

    per_fused, per_base = t_fused / a.case_days, t_base / nb
    gb = nbytes / 1e9
    print(json.dumps({
        "case_days": a.case_days, "baseline_case_days": nb, "slices": a.slices, "members": a.members,
        "size": a.size, "member_bytes_per_case_day_MB": round(nbytes / 1e6, 1),
        "fused_s_per_case_day": round(per_fused, 4), "baseline_s_per_case_day": round(per_base, 4),
        "fused_total_s": round(t_fused, 2), "baseline_total_s": round(t_base, 2),
        "baseline_total_s_for_all_case_days_est": round(per_base * a.case_days, 1),
        "speedup": round(per_base / per_fused, 1),
        "fused_GBps": round(gb / per_fused, 2), "baseline_GBps": round(gb / per_base, 3),
        "copy_GBps": round(gb * a.case_days / t_copy, 2),
        "fused_fraction_of_copy_bandwidth": round((gb / per_fused) / (gb * a.case_days / t_copy), 3),
        "rows_identical_to_baseline": round(agree, 5),
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
