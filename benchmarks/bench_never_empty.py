"""What the ``never_empty`` guard costs the 2D size filter: ``remove_small_2d`` with the guard on vs off.

    python benchmarks/bench_never_empty.py [--slices 144 --size 266 --repeats 20]

Two full-size case-days (D x size x size, 3 classes, bit flags), each filtered with ``min_area_2d`` 50:

- organs: every class has one large blob on its slices plus specks (the usual case). The guard's first pass
  labels slices only until it meets a component of at least the minimum, then the filter runs as without it;
- specks: every class is specks only (all under the minimum), so the guard binds: a whole labelling pass
  before the filter, which then keeps the largest speck(s) instead of emptying the class.

Both versions run alternately on fresh copies of the same mask (one core; numba compiled before timing) and
the ratio guard / no guard is printed per case, with the output checked against the numpy twin.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from kaggle_kit.post import kernels as K


def make_mask(rng, d, h, w, blobs: bool) -> np.ndarray:
    bits = np.zeros((d, h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for c in range(3):
        for z in range(d // 4, 3 * d // 4):
            if blobs:
                cy, cx, r = h * (0.3 + 0.2 * c), w * 0.5, h * 0.08
                bits[z][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] |= np.uint8(1 << c)
            ys, xs = rng.integers(0, h - 3, 20), rng.integers(0, w - 3, 20)
            for y, x in zip(ys, xs):  # 20 specks of 1-6 pixels per slice
                bits[z, y:y + rng.integers(1, 3), x:x + rng.integers(1, 4)] |= np.uint8(1 << c)
    return bits


def timed(bits, guard: bool, min_area) -> tuple[float, np.ndarray]:
    b, c = bits.copy(), K.plane_counts(bits, 3)
    t = time.perf_counter()
    K.remove_small_2d(b, c, min_area, 8, guard)
    return time.perf_counter() - t, b


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=144)
    ap.add_argument("--size", type=int, default=266)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    min_area = np.full(3, 50, np.int64)
    for name, blobs in (("organs", True), ("specks", False)):
        bits = make_mask(rng, a.slices, a.size, a.size, blobs)
        for guard in (False, True):  # compile, and check against the twin
            _, got = timed(bits, guard, min_area)
            want, wc = bits.copy(), K.plane_counts(bits, 3)
            K.remove_small_2d_numpy(want, wc, min_area, 8, guard)
            assert np.array_equal(got, want), f"{name}: numba and numpy differ (guard {guard})"
        times = {False: [], True: []}
        for _ in range(a.repeats):
            for guard in (False, True):
                times[guard].append(timed(bits, guard, min_area)[0])
        off, on = (float(np.median(times[g])) for g in (False, True))
        kept = [int(K.plane_counts(timed(bits, g, min_area)[1], 3).sum()) for g in (False, True)]
        print(f"{name:<7} no guard {off * 1e3:7.2f} ms  guard {on * 1e3:7.2f} ms  ratio {on / off:5.2f}x  "
              f"positive pixels left {kept[0]} -> {kept[1]}")


if __name__ == "__main__":
    main()
