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
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

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
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
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


if __name__ == "__main__":
    raise SystemExit(main())
