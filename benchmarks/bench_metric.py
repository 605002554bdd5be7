"""Benchmark of the competition metric on full-size volumes: kaggle_kit vs the public-notebook approach.

    python benchmarks/bench_metric.py [--reps 2] [--seed 0]

For each geometry (144x266x266 and 144x310x360) it builds organ-shaped truth masks (a stomach, a thick
large-bowel tube, thin small-bowel loops) and a slightly wrong prediction (boundary moved by a smooth noise
field, an end slice missed, a small false-positive blob), then times, per volume (3 classes):

- ``kaggle_kit``: ``Scorer.add`` (per-slice Dice, tp/fp/fn, exact 3D Hausdorff per class);
- ``scipy``: what most public notebooks did: per-slice Dice in numpy and, per class,
  ``scipy.spatial.distance.directed_hausdorff`` both ways on ``np.argwhere`` coordinates.

It prints the time per volume of each (kaggle_kit: median of ``--repeat`` runs; scipy: one run, it is
slow), their ratio, and the largest absolute difference of the per-class normalised Hausdorff distances and
of the per-class Dice values between the two. Numba compilation (or cache loading) is done before timing.

A second table does the same for the ``mlebench`` variant (MLE-bench's grader) on the same volumes:
``Scorer("mlebench").add`` against the grader's own approach (per-row Dice in numpy; the three classes
ORed, the column-major view, ``np.argwhere`` coordinates divided by (D, H, W) and ``directed_hausdorff``
both ways, the 10x / empty / identical rules), with the difference of the case-day Hausdorff terms and of
the Dice means. ``--variants`` picks the tables (default: both).

``--whole-tool`` times whole programs instead, one full-size case-day per ``--shapes`` geometry: it writes
the minimal competition folder the scorer reads (``train.csv`` as the truth file and, as geometry, the
slice file names ``train/caseN/caseN_dayM/scans/slice_SSSS_W_H_1.50_1.50.png``: empty files, the scorer
reads only their names) and a submission CSV, then runs, each as its own process, side by side:

- ``kaggle_kit``: ``python -m kaggle_kit score --truth train.csv --pred sub.csv --data-root ROOT``
  (``--metric mlebench`` for the second variant);
- ``scipy``: a standalone script (written next to the data) that does what public notebooks and MLE-bench's
  grader do: start, read both CSVs with pandas, decode every RLE in numpy, Dice per row, and per class (the
  classes ORed, column-major, coordinates in the unit cube for mlebench) ``directed_hausdorff`` both ways on
  ``np.argwhere`` coordinates. It imports numpy, pandas and scipy, nothing of kaggle_kit.

Numba's cache lives in fresh folders (``NUMBA_CACHE_DIR``): ``cold`` is kk's first run on an empty cache
(the kernels it calls compiled: truly cold); ``warmup`` its first run on a cache filled by ``kk score
--warmup`` (what ``make install`` runs: the first run after install); ``warm`` the median of ``--repeat``
later runs, kk and scipy alternating. Times are wall and CPU (user + system of the child) of the whole
process, with the scores of both programs and their difference, and the in-process ``Scorer.add`` time
of the same volumes (what the kernels cost). Last, the start-up floor: the wall time of an interpreter
doing nothing, importing numpy, pandas, the scipy script's imports, and numba's start (its import and the
first cached kernel call), which bound what any whole process can reach.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from kaggle_kit.data.synthetic import write_scoring_folder
from kaggle_kit.metric.mlebench import column_major_view, hausdorff_reference
from kaggle_kit.metric.scorer import MetricConfig, Scorer

SHAPES = ((144, 266, 266), (144, 310, 360))


def _tube(shape, pts, radius, z_aspect=2.0):
    """Boolean mask of a tube: balls of ``radius`` pixels (radius / z_aspect slices) along ``pts``."""
    d, h, w = shape
    out = np.zeros(shape, bool)
    rz = max(1, int(np.ceil(radius / z_aspect)))
    r = int(np.ceil(radius))
    zz, yy, xx = np.mgrid[-rz:rz + 1, -r:r + 1, -r:r + 1]
    ball = (zz * z_aspect) ** 2 + yy ** 2 + xx ** 2 <= radius ** 2
    for z, y, x in np.round(pts).astype(int):
        z0, y0, x0 = z - rz, y - r, x - r
        sz = slice(max(z0, 0), min(z + rz + 1, d))
        sy = slice(max(y0, 0), min(y + r + 1, h))
        sx = slice(max(x0, 0), min(x + r + 1, w))
        if sz.start >= sz.stop or sy.start >= sy.stop or sx.start >= sx.stop:
            continue
        out[sz, sy, sx] |= ball[sz.start - z0:sz.stop - z0, sy.start - y0:sy.stop - y0,
                                sx.start - x0:sx.stop - x0]
    return out


def _path(knots, n=400):
    knots = np.asarray(knots, float)
    t = np.linspace(0, 1, len(knots))
    s = np.linspace(0, 1, n)
    return np.stack([np.interp(s, t, knots[:, i]) for i in range(3)], 1)


def organ_truth(shape, rng) -> np.ndarray:
    """uint8 (D, H, W) bit flags: bit 0 large bowel, bit 1 small bowel, bit 2 stomach."""
    d, h, w = shape
    zc, yc, xc = d / 2, h / 2, w / 2
    j = lambda s: rng.normal(0, s)
    # large bowel: ascending (patient right = image left), transverse, descending, sigmoid
    lb = _path([(zc - 35, yc + 0.1 * h, xc - 0.28 * w), (zc + 5 + j(3), yc + 0.05 * h, xc - 0.3 * w),
                (zc + 25, yc - 0.1 * h, xc - 0.1 * w), (zc + 25 + j(3), yc - 0.08 * h, xc + 0.15 * w),
                (zc + 10, yc + 0.05 * h, xc + 0.3 * w), (zc - 30, yc + 0.1 * h, xc + 0.28 * w),
                (zc - 45, yc + 0.15 * h, xc + 0.05 * w)], 600)
    large = _tube(shape, lb, radius=0.04 * w + 2)
    # small bowel: random-walk loops in the lower centre
    small = np.zeros(shape, bool)
    for _ in range(4):
        p = np.array([zc - 20 + j(8), yc + 0.1 * h + j(0.05 * h), xc + j(0.1 * w)])
        pts = [p.copy()]
        step = np.array([0.0, 2.0, 0.0])
        for _ in range(150):
            step = 0.8 * step + rng.normal(0, [0.6, 1.5, 1.5])
            p = p + step
            p = np.clip(p, [zc - 40, yc - 0.05 * h, xc - 0.2 * w], [zc + 5, yc + 0.3 * h, xc + 0.2 * w])
            pts.append(p.copy())
        small |= _tube(shape, _path(pts, 1200), radius=0.018 * w + 1)
    small &= ~large
    # stomach: a deformed ellipsoid high on the patient's left (image right)
    zz, yy, xx = np.ogrid[:d, :h, :w]
    cz, cy, cx = zc + 30, yc - 0.15 * h, xc + 0.15 * w
    rz, ry, rx = 18, 0.12 * h, 0.1 * w
    warp = 0.15 * np.sin(yy / 9.0 + j(1)) * np.cos(xx / 11.0)
    stomach = ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1 + warp
    stomach &= ~large
    return (large.astype(np.uint8) | (small.astype(np.uint8) << 1) | (stomach.astype(np.uint8) << 2))


def slightly_wrong(truth: np.ndarray, rng) -> np.ndarray:
    """A plausible prediction: boundaries moved by a smooth +-2 px field, one end slice of each organ
    missed and one small false-positive blob per organ a little away from it."""
    d, h, w = truth.shape
    pred = np.zeros_like(truth)
    noise = ndimage.zoom(rng.normal(0, 1, (d // 8 + 2, h // 16 + 2, w // 16 + 2)),
                         (d / (d // 8 + 2) + 1e-9, h / (h // 16 + 2) + 1e-9, w / (w // 16 + 2) + 1e-9),
                         order=1)[:d, :h, :w]
    noise *= 2.0 / max(noise.std(), 1e-6)
    for c in range(3):
        t = ((truth >> c) & 1).astype(bool)
        if not t.any():
            continue
        zs = np.flatnonzero(t.any((1, 2)))
        lo, hi = zs.min(), zs.max() + 1
        zs_box = slice(max(lo - 4, 0), min(hi + 4, d))
        tb = t[zs_box]
        sdf = ndimage.distance_transform_edt(~tb) - ndimage.distance_transform_edt(tb)
        p = np.zeros_like(t)
        p[zs_box] = sdf + noise[zs_box] < 0.5
        p[hi - 1] = False
        pts = np.argwhere(t)
        cz, cy, cx = pts[rng.integers(len(pts))]
        cy = int(np.clip(cy + rng.integers(10, 25), 3, h - 4))
        p[max(cz - 1, 0):cz + 2, cy - 3:cy + 4, cx - 3:cx + 4] = True
        pred |= p.astype(np.uint8) << c
    return pred


def scipy_reference(pred: np.ndarray, truth: np.ndarray):
    """The public-notebook metric of one case-day: per-class Dice over slices and normalised symmetric HD."""
    from scipy.spatial.distance import directed_hausdorff

    d, h, w = truth.shape
    norm = np.sqrt(d * d + h * h + w * w)
    dice, hd = [], []
    for c in range(3):
        p = ((pred >> c) & 1).astype(bool)
        t = ((truth >> c) & 1).astype(bool)
        inter = (p & t).sum((1, 2))
        den = p.sum((1, 2)) + t.sum((1, 2))
        rows = den > 0
        dice.append((2 * inter[rows] / den[rows]).tolist())
        pa, ta = np.argwhere(p), np.argwhere(t)
        if not len(ta):
            hd.append(np.nan)
        elif not len(pa):
            hd.append(1.0)
        else:
            hd.append(max(directed_hausdorff(pa, ta)[0], directed_hausdorff(ta, pa)[0]) / norm)
    return dice, hd


def mlebench_reference(pred: np.ndarray, truth: np.ndarray):
    """MLE-bench's grader on one case-day, as it computes it: (per-row Dice list, Hausdorff term)."""
    dice = []
    for c in range(3):
        p = ((pred >> c) & 1).astype(bool)
        t = ((truth >> c) & 1).astype(bool)
        inter = (p & t).sum((1, 2))
        den = p.sum((1, 2)) + t.sum((1, 2))
        dice += (2 * inter[den > 0] / den[den > 0]).tolist()
    p_or = column_major_view((pred & 7) != 0)
    t_or = column_major_view((truth & 7) != 0)
    return dice, hausdorff_reference(p_or, t_or)


def _timed(fn, *args):
    """(result, wall seconds, CPU seconds of this process): CPU time is the steadier number on a shared
    machine (both implementations are single-threaded)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2, help="volumes per geometry")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="kaggle_kit runs per volume (median reported)")
    ap.add_argument("--variants", nargs="+", choices=["3d", "mlebench"], default=["3d", "mlebench"])
    ap.add_argument("--whole-tool", action="store_true",
                    help="time whole processes (kk score against a standalone scipy script) on one case-day")
    ap.add_argument("--shapes", nargs="+", default=["144x266x266"],
                    help="--whole-tool: case-day geometries DxHxW (e.g. 144x266x266 144x310x360)")
    ap.add_argument("--keep", default=None, help="--whole-tool: write the data here and keep it")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    if a.whole_tool:
        return whole_tool(a, rng)
    for name in ("3d", "mlebench"):
        warm = Scorer(MetricConfig.from_name(name))
        t = organ_truth((16, 32, 40), rng)
        warm.add("warmup", slightly_wrong(t, rng), t)  # numba compilation (or cache load) is not timed
    vols = [(shape, r, organ_truth(shape, rng)) for shape in SHAPES for r in range(a.reps)]
    vols = [(shape, r, truth, slightly_wrong(truth, rng)) for shape, r, truth in vols]
    if "3d" in a.variants:
        _table_default(vols, a.repeat)
    if "mlebench" in a.variants:
        _table_mlebench(vols, a.repeat)
    return 0


def _table_default(vols, repeat) -> None:
    print("variant 3d (default): Scorer vs per-class argwhere + directed_hausdorff")
    print(f"{'shape':>12} {'vol':>3} {'fg voxels':>9} | {'wall ms: ours':>13} {'scipy':>8} {'ratio':>6} | "
          f"{'cpu ms: ours':>12} {'scipy':>8} {'ratio':>6} | {'max|dHD|':>8} {'max|dDice|':>10}")
    tot = np.zeros(4)  # wall ours, wall scipy, cpu ours, cpu scipy
    worst = 0.0
    for shape, r, truth, pred in vols:
        runs = []
        for _ in range(repeat):  # a fresh Scorer each time: nothing carried over but numba's code
            scorer = Scorer(MetricConfig())
            rec, wall, cpu = _timed(scorer.add, f"vol{r}", pred, truth)
            runs.append((wall, cpu))
        w_ours, c_ours = np.median(runs, axis=0)
        (dice_ref, hd_ref), w_ref, c_ref = _timed(scipy_reference, pred, truth)
        dhd = max(abs(rec["hd"][c] - hd_ref[c]) for c in range(3) if not np.isnan(hd_ref[c]))
        ddice = max(
            abs(scorer.result()["per_class"][cls]["dice"] - (np.mean(dice_ref[c]) if dice_ref[c] else 1.0))
            for c, cls in enumerate(scorer.classes)
        )
        worst = max(worst, dhd, ddice)
        tot += (w_ours, w_ref, c_ours, c_ref)
        fg = int((truth > 0).sum())
        print(f"{'x'.join(map(str, shape)):>12} {r:>3} {fg:>9} | {w_ours * 1e3:>13.1f} {w_ref * 1e3:>8.1f} "
              f"{w_ref / w_ours:>6.1f} | {c_ours * 1e3:>12.1f} {c_ref * 1e3:>8.1f} {c_ref / c_ours:>6.1f} | "
              f"{dhd:>8.1e} {ddice:>10.1e}")
    n = len(vols)
    print(f"overall per volume: wall {tot[0] * 1e3 / n:.1f} ms vs scipy {tot[1] * 1e3 / n:.1f} ms "
          f"({tot[1] / tot[0]:.1f}x); cpu {tot[2] * 1e3 / n:.1f} ms vs {tot[3] * 1e3 / n:.1f} ms "
          f"({tot[3] / tot[2]:.1f}x); max abs difference {worst:.2e}")


def _table_mlebench(vols, repeat) -> None:
    print("variant mlebench: Scorer('mlebench') vs the grader's approach (classes ORed, column-major view, "
          "argwhere / (D, H, W) + directed_hausdorff)")
    print(f"{'shape':>12} {'vol':>3} {'fg voxels':>9} | {'wall ms: ours':>13} {'scipy':>8} {'ratio':>6} | "
          f"{'cpu ms: ours':>12} {'scipy':>8} {'ratio':>6} | {'|dHD|':>8} {'|dDice|':>8}")
    tot = np.zeros(4)
    worst = 0.0
    for shape, r, truth, pred in vols:
        runs = []
        for _ in range(repeat):
            scorer = Scorer("mlebench")
            rec, wall, cpu = _timed(scorer.add, f"vol{r}", pred, truth)
            runs.append((wall, cpu))
        w_ours, c_ours = np.median(runs, axis=0)
        (dice_ref, hd_ref), w_ref, c_ref = _timed(mlebench_reference, pred, truth)
        res = scorer.result()
        dhd = abs(res["hausdorff"] - hd_ref)
        ddice = abs(res["dice"] - (np.mean(dice_ref) if dice_ref else 1.0))
        worst = max(worst, dhd, ddice)
        tot += (w_ours, w_ref, c_ours, c_ref)
        fg = int((truth > 0).sum())
        print(f"{'x'.join(map(str, shape)):>12} {r:>3} {fg:>9} | {w_ours * 1e3:>13.1f} {w_ref * 1e3:>8.1f} "
              f"{w_ref / w_ours:>6.1f} | {c_ours * 1e3:>12.1f} {c_ref * 1e3:>8.1f} {c_ref / c_ours:>6.1f} | "
              f"{dhd:>8.1e} {ddice:>8.1e}")
    n = len(vols)
    print(f"overall per volume (mlebench): wall {tot[0] * 1e3 / n:.1f} ms vs scipy {tot[1] * 1e3 / n:.1f} ms "
          f"({tot[1] / tot[0]:.1f}x); cpu {tot[2] * 1e3 / n:.1f} ms vs {tot[3] * 1e3 / n:.1f} ms "
          f"({tot[3] / tot[2]:.1f}x); max abs difference {worst:.2e}")


# The scipy approach as a whole program: what public notebooks and MLE-bench's grader do, from the CSVs
# to the score. Standalone (numpy, pandas, scipy; nothing of kaggle_kit), written next to the data.
SCIPY_TOOL = r'''
import json, math, sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.distance import directed_hausdorff


def decode(rle, h, w, order):
    m = np.zeros(h * w, np.uint8)
    if rle:
        s = np.asarray(rle.split(), dtype=np.int64)
        for lo, n in zip(s[0::2] - 1, s[1::2]):
            m[lo:lo + n] = 1
    return m.reshape((h, w), order=order)


def main():
    truth_csv, pred_csv, split_dir, metric = sys.argv[1:5]
    truth = pd.read_csv(truth_csv, keep_default_na=False)
    pred = pd.read_csv(pred_csv, keep_default_na=False)
    hw = {}  # id -> (height, width) from slice_SSSS_W_H_PW_PH.png
    for f in Path(split_dir).glob("case*/case*_day*/scans/slice_*.png"):
        parts = f.name.split("_")
        hw[f"{f.parent.parent.name}_slice_{parts[1]}"] = (int(parts[3]), int(parts[2]))
    if metric == "mlebench":  # rows paired by position, column-major decoding, classes ORed per case-day
        dice, slices = [], {}
        for id_, t_rle, p_rle in zip(truth["id"], truth["segmentation"], pred["predicted"]):
            h, w = hw[id_]
            t, p = decode(t_rle, h, w, "F"), decode(p_rle, h, w, "F")
            den = int(t.sum()) + int(p.sum())
            dice.append(2.0 * int((t & p).sum()) / den if den else np.nan)
            pt = slices.setdefault(id_, [np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)])
            pt[0] |= p
            pt[1] |= t
        hds = []
        for cd in dict.fromkeys(i.split("_slice_")[0] for i in sorted(slices)):
            ids = sorted(i for i in slices if i.startswith(cd + "_slice_"))
            P = np.stack([slices[i][0] for i in ids]).astype(bool)
            T = np.stack([slices[i][1] for i in ids]).astype(bool)
            n_p, n_t = int(P.sum()), int(T.sum())
            if n_p == 0 and n_t == 0:
                continue
            if np.array_equal(P, T):
                hds.append(0.0)
            elif n_p == 0 or n_t == 0 or n_p > 10 * n_t:
                hds.append(1.0)
            else:
                pc = np.argwhere(P) / np.array(T.shape, float)
                tc = np.argwhere(T) / np.array(T.shape, float)
                hds.append(max(directed_hausdorff(tc, pc)[0], directed_hausdorff(pc, tc)[0]) / math.sqrt(3))
        d, hd = float(np.nanmean(dice)), float(np.mean(hds))
    else:  # the default metric: Dice per (slice, class) row, 3D Hausdorff per (case-day, class)
        rows = truth.merge(pred, on=["id", "class"], how="left")
        dice, vols = [], {}
        for id_, cls, t_rle, p_rle in zip(rows["id"], rows["class"], rows["segmentation"], rows["predicted"]):
            h, w = hw[id_]
            t, p = decode(t_rle, h, w, "C"), decode(p_rle, h, w, "C")
            den = int(t.sum()) + int(p.sum())
            if den:
                dice.append(2.0 * int((t & p).sum()) / den)
            cd, sl = id_.split("_slice_")
            vols.setdefault((cd, cls), []).append((int(sl), p, t))
        hds = []
        for items in vols.values():
            items.sort(key=lambda r: r[0])
            P = np.stack([r[1] for r in items]).astype(bool)
            T = np.stack([r[2] for r in items]).astype(bool)
            if not T.any():
                continue
            if not P.any():
                hds.append(1.0)
                continue
            pa, ta = np.argwhere(P), np.argwhere(T)
            hd_ = max(directed_hausdorff(pa, ta)[0], directed_hausdorff(ta, pa)[0])
            hds.append(hd_ / math.sqrt(sum(n * n for n in T.shape)))
        d = float(np.mean(dice)) if dice else 1.0
        hd = float(np.mean(hds)) if hds else 0.0
    print(json.dumps({"score": 0.4 * d + 0.6 * (1.0 - hd), "dice": d, "hausdorff": hd}))


main()
'''




def _run(cmd, env) -> tuple[float, float, dict]:
    """Run one whole program: (wall s, CPU s of the child: user + system, its last stdout line as JSON)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, json.loads(out.stdout.strip().splitlines()[-1])


def whole_tool(a, rng) -> int:
    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_metric_whole_"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        script = base / "scipy_score.py"
        script.write_text(SCIPY_TOOL)
        warmed = base / "numba_cache_warmed"  # kk score --warmup once; each row starts from a copy
        warmed.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kaggle_kit", "score", "--warmup"], check=True, capture_output=True,
                       env=dict(os.environ, NUMBA_CACHE_DIR=str(warmed)))
        print(f"kk score --warmup (what make install runs) on an empty cache: {time.perf_counter() - t0:.1f} s")
        print(f"whole tool: one case-day per geometry, each program a fresh process; warm = median of "
              f"{a.repeat} runs (kk and scipy alternating); cpu = user + system of the child; kernels = "
              "Scorer.add of the same volumes in this process (median of 3)")
        print(f"{'shape':>12} {'metric':>8} {'run':>6} | {'wall s: kk':>10} {'scipy':>7} {'ratio':>6} | "
              f"{'cpu s: kk':>9} {'scipy':>7} {'ratio':>6} | {'score kk':>10} {'|dscore|':>8} | {'kernels s':>9}")
        for spec in a.shapes:
            shape = tuple(int(x) for x in spec.lower().split("x"))
            truth = organ_truth(shape, rng)
            pred = slightly_wrong(truth, rng)
            root = base / spec
            truth_csv, pred_csv = write_scoring_folder(root, [(101, 20, truth, pred)])
            for metric in a.variants:
                Scorer(metric).add("warm", pred, truth)  # this process's compilation is not timed
                kern = float(np.median([_timed(Scorer(metric).add, "x", pred, truth)[1] for _ in range(3)]))
                _whole_rows(spec, metric, root, truth_csv, pred_csv, script, base, warmed, a.repeat, kern)
        _floor(script, a.repeat)
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def _whole_rows(spec, metric, root, truth_csv, pred_csv, script, base, warmed, repeat, kern) -> None:
    kk = [sys.executable, "-m", "kaggle_kit", "score", "--truth", str(truth_csv), "--pred", str(pred_csv),
          "--data-root", str(root)] + (["--metric", "mlebench"] if metric == "mlebench" else [])
    sp = [sys.executable, str(script), str(truth_csv), str(pred_csv), str(root / "train"), metric]
    env = dict(os.environ, KAGGLE_KIT_NO_PROGRESS="1")

    def fresh_cache(tag):
        d = base / f"numba_cache_{spec}_{metric}_{tag}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        return dict(env, NUMBA_CACHE_DIR=str(d))

    rows = []
    cold_env = fresh_cache("cold")
    rows.append(("cold", _run(kk, cold_env), _run(sp, cold_env)))  # scipy: its first run
    warm_dir = base / f"numba_cache_{spec}_{metric}_warmup"
    shutil.rmtree(warm_dir, ignore_errors=True)
    shutil.copytree(warmed, warm_dir)
    warm_env = dict(env, NUMBA_CACHE_DIR=str(warm_dir))
    rows.append(("warmup", _run(kk, warm_env), _run(sp, warm_env)))
    runs = [(_run(kk, cold_env), _run(sp, cold_env)) for _ in range(repeat)]  # alternating, same load
    med = lambda xs: float(np.median(xs))  # noqa: E731
    k_w, k_c = med([r[0][0] for r in runs]), med([r[0][1] for r in runs])
    s_w, s_c = med([r[1][0] for r in runs]), med([r[1][1] for r in runs])
    rows.append(("warm", (k_w, k_c, runs[-1][0][2]), (s_w, s_c, runs[-1][1][2])))
    for tag, (kw, kc, kj), (sw, sc, sj) in rows:
        ds = abs(kj["score"] - sj["score"])
        print(f"{spec:>12} {metric:>8} {tag:>6} | {kw:>10.3f} {sw:>7.3f} {sw / kw:>6.1f} | "
              f"{kc:>9.3f} {sc:>7.3f} {sc / kc:>6.1f} | {kj['score']:>10.6f} {ds:>8.1e} | {kern:>9.4f}")


def _floor(script, repeat) -> None:
    """What any process pays before scoring: interpreter, imports, numba's start (median wall of runs)."""
    steps = [
        ("python -c pass", "pass"),
        ("import numpy", "import numpy"),
        ("import numpy, pandas", "import numpy, pandas"),
        ("the scipy script's imports", "import numpy, pandas; from scipy.spatial.distance import directed_hausdorff"),
        ("import kaggle_kit.metric.scorer (numba)", "import kaggle_kit.metric.scorer"),
        ("... + one cached kernel call (numba's start)",
         "import numpy as np; from kaggle_kit.metric import kernels as k; "
         "k.scan(np.zeros((2, 3, 4), np.uint8), np.ones((2, 3, 4), np.uint8), 3)"),
    ]
    print("start-up floor (wall s, median of runs):")
    for label, code in steps:
        walls = []
        for _ in range(max(repeat, 3)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            walls.append(time.perf_counter() - t0)
        print(f"  {label:<48} {np.median(walls):.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
