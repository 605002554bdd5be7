"""Numba kernels of the competition metric, each with a numpy twin (``*_np``) that the tests compare it to.

Volumes are uint8 (D, H, W) bit flags (bit i = class i). One pass, :func:`scan`, reads a (pred, truth)
pair once, skipping 8 voxels at a time where nothing changes, and yields everything else works from: per
(slice, class) pixel counts, per-slice boxes, and every class's foreground as runs per row.

Hausdorff: the directed term ``max_{p in P} min_{g in G} |p - g|`` (squared, with integer per-axis weights,
so every distance is an exact integer) is needed only at the voxels of P outside G. Two exact methods:

- ``runs`` (fast path): for a voxel of P outside G the rows of G are searched outwards (slices, then rows,
  pruned by the slice's box of G) until no row can hold a nearer voxel. Most voxels need no search: a
  voxel's distance is at most a neighbour's bound plus the step to it (triangle inequality), and a voxel
  whose bound cannot raise the running maximum is skipped (which keeps the maximum exact). A first pass
  over a sparse sample raises that maximum early. Cost ~ |P \\ G| for a prediction close to the truth; it
  grows with the square of the distance for a large far-away false positive.
- ``edt``: a separable squared Euclidean distance transform of G (Felzenszwalb-Huttenlocher lower envelope
  with integer breakpoints) in the bounding box of P and G, its last pass evaluated only at P \\ G. Cost ~
  box size whatever the shapes.

``auto`` runs ``runs`` under a budget of row visits proportional to the box and finishes with ``edt`` when
it is exceeded, so the cost stays bounded by the EDT's.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = [
    "INF",
    "MAX_CLASSES",
    "METHODS",
    "Scan",
    "directed_from_scan",
    "directed_max_sq",
    "directed_max_sq_np",
    "scan",
    "scan_np",
    "slice_stats",
    "slice_stats_np",
    "slices_directed_max_sq",
    "slices_directed_max_sq_np",
    "slices_from_scan",
]

INF = np.int64(1) << np.int64(62)  # "no voxel in reach"; INF + any weighted distance stays < 2**63
METHODS = ("auto", "runs", "edt")
MAX_CLASSES = 4  # the (pred byte, truth byte) histogram has 4**n_classes bins per slice
_LSB = np.uint64(0x0101010101010101)  # bit 0 of each byte of a little-endian word


class Scan(NamedTuple):
    """What :func:`scan` reads from a (pred, truth) pair of bit-flag volumes (D, H, W), C classes.

    counts: int64 (D, C, 3) = (|P|, |T|, |P & T|) per slice and class.
    pbox, tbox: int64 (D, C, 4) per-slice (y_min, y_max, x_min, x_max); (H, -1, W, -1) where empty.
    row_ptr: int64 (2C, D*H + 1); list k < C is pred class k, list C + k truth class k. The runs of list k
    on row r = z*H + y are ``begin[j], end[j]`` (x, half-open) for j in row_ptr[k, r]:row_ptr[k, r + 1].
    """

    counts: np.ndarray
    pbox: np.ndarray
    tbox: np.ndarray
    row_ptr: np.ndarray
    begin: np.ndarray
    end: np.ndarray


# ----------------------------------------------------------------------------------------------------------
# one pass over a (pred, truth) pair


@njit(cache=True, nogil=True)
def _scan(p8, t8, p64, t64, d, h, w, n_classes, cap):
    """Histogram of (pred byte, truth byte) per slice and the runs of every list, sorted by (list, row).

    Runs are collected in arrays of ``cap`` entries (fixed: growing them inside the loop slows it down
    several times); with more runs than that, the run arrays come back empty and ``n_runs`` says how many
    to make room for.

    One long numba function on purpose: a single pass over the volume's bytes is what makes the metric fast;
    split into calls, numba would re-read the volume per part.
    """
    n = n_classes
    nb = 1 << n
    lmask = np.uint8(nb - 1)
    hist = np.zeros((d, nb, nb), np.int64)
    keys = np.empty(cap, np.int64)
    rows = np.empty(cap, np.int64)
    xs = np.empty(cap, np.int64)
    n_runs = 0
    opened = np.zeros(2 * n, np.int64)  # x where the open run of each list began
    n64 = p64.shape[0] * 8
    wmask = _LSB * np.uint64(nb - 1)
    for z in range(d):
        hz = hist[z]  # the (0, 0) bin is left out here and filled in at the end
        for y in range(h):
            r = z * h + y
            base = r * w
            # a row empty in both volumes (most rows): one read of the words that cover it, nothing to do
            seen = np.uint64(0)
            wp = p64[base >> 3:min((base + w + 7) >> 3, n64 >> 3)]  # slices indexed from 0 vectorise
            wt = t64[base >> 3:min((base + w + 7) >> 3, n64 >> 3)]
            for j in range(wp.shape[0]):
                seen |= wp[j] | wt[j]
            for x in range(max(base, n64), base + w):  # the bytes after the last whole word
                seen |= np.uint64(p8[x] | t8[x])
            if (seen & wmask) == 0:
                continue
            i = base
            end = min(base + w, n64)  # the whole words of the row's span; bytes after n64 below
            prev = 0  # lists (bits) open before voxel i: pred bits, then truth bits << n
            prev_p = np.uint64(0)  # prev's pred and truth bits replicated in every byte of a word
            prev_t = np.uint64(0)
            while True:
                # whole words where all 8 voxels equal the previous one in both volumes: nothing opens or
                # closes (the common case: background, or inside an organ)
                while (i & 7) == 0 and i + 8 <= end:
                    if (p64[i >> 3] & wmask) != prev_p or (t64[i >> 3] & wmask) != prev_t:
                        break
                    if prev:
                        hz[prev & (nb - 1), prev >> n] += 8
                    i += 8
                if i >= base + w:
                    break
                a = p8[i] & lmask
                b = t8[i] & lmask
                cur = np.int64(a) | (np.int64(b) << n)
                if cur:
                    hz[a, b] += 1
                ch = cur ^ prev
                if ch:
                    x = i - base
                    for k in range(2 * n):
                        if (ch >> k) & 1:
                            if (cur >> k) & 1:
                                opened[k] = x
                            else:
                                if n_runs < cap:
                                    keys[n_runs] = k
                                    rows[n_runs] = r
                                    xs[n_runs] = (opened[k] << 32) | x
                                n_runs += 1
                    prev = cur
                    prev_p = np.uint64(a) * _LSB
                    prev_t = np.uint64(b) * _LSB
                i += 1
            if prev:
                for k in range(2 * n):
                    if (prev >> k) & 1:
                        if n_runs < cap:
                            keys[n_runs] = k
                            rows[n_runs] = r
                            xs[n_runs] = (opened[k] << 32) | w
                        n_runs += 1
        hz[0, 0] = h * w - hz.sum()
    n_rows = d * h
    if n_runs > cap:
        e = np.empty(0, np.int64)
        return hist, np.empty((0, 0), np.int64), e, e, np.empty((0, 0, 0), np.int64), n_runs
    # counting sort of the runs by (list, row); scan order already sorts each row's runs by x
    row_ptr = np.zeros((2 * n, n_rows + 1), np.int64)
    flat = row_ptr.reshape(-1)
    for j in range(n_runs):
        flat[keys[j] * (n_rows + 1) + rows[j] + 1] += 1
    total = 0
    for k in range(2 * n):
        row_ptr[k, 0] = total
        for r in range(n_rows):
            total += row_ptr[k, r + 1]
            row_ptr[k, r + 1] = total
    fill = np.empty((2 * n, n_rows), np.int64)
    for k in range(2 * n):
        for r in range(n_rows):
            fill[k, r] = row_ptr[k, r]
    rb = np.empty(n_runs, np.int64)
    re = np.empty(n_runs, np.int64)
    for j in range(n_runs):
        pos = fill[keys[j], rows[j]]
        fill[keys[j], rows[j]] += 1
        rb[pos] = xs[j] >> 32
        re[pos] = xs[j] & 0xFFFFFFFF
    # per-slice boxes from the runs
    boxes = np.empty((2 * n, d, 4), np.int64)
    for k in range(2 * n):
        for z in range(d):
            ya, yb, xa, xb = h, -1, w, -1
            for y in range(h):
                lo = row_ptr[k, z * h + y]
                hi = row_ptr[k, z * h + y + 1]
                if lo == hi:
                    continue
                if ya == h:
                    ya = y
                yb = y
                xa = min(xa, rb[lo])
                xb = max(xb, re[hi - 1] - 1)
            boxes[k, z, 0] = ya
            boxes[k, z, 1] = yb
            boxes[k, z, 2] = xa
            boxes[k, z, 3] = xb
    return hist, row_ptr, rb, re, boxes, n_runs


def _flat(vol):
    """(flat uint8 view, uint64 view of its whole words) of a C-contiguous uint8 volume."""
    v8 = vol.reshape(-1)
    return v8, v8[:(v8.size // 8) * 8].view(np.uint64)


def _counts_from_hist(hist: np.ndarray, n_classes: int) -> np.ndarray:
    """(D, 2**C, 2**C) histogram of (pred byte, truth byte) -> (D, C, 3) counts (|P|, |T|, |P & T|)."""
    bits = (np.arange(1 << n_classes)[:, None] >> np.arange(n_classes)[None, :]) & 1  # (2**C, C)
    return np.stack([hist.sum(2) @ bits, hist.sum(1) @ bits, np.einsum("dab,ac,bc->dc", hist, bits, bits)], -1)


def _check_pair(pred, truth, n_classes):
    if not 1 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be in 1..{MAX_CLASSES}, got {n_classes}")
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} must be (D, H, W) of the same shape")
    return (np.ascontiguousarray(pred, dtype=np.uint8), np.ascontiguousarray(truth, dtype=np.uint8))


def scan(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> Scan:
    """Read a (pred, truth) pair of uint8 (D, H, W) bit-flag volumes once; see :class:`Scan`.

    Bits at and above ``n_classes`` are ignored. n_classes <= MAX_CLASSES.
    """
    pred, truth = _check_pair(pred, truth, n_classes)
    d, h, w = pred.shape
    (p8, p64), (t8, t64) = _flat(pred), _flat(truth)
    cap = max(1 << 16, 4 * d * h)
    hist, row_ptr, rb, re, boxes, n_runs = _scan(p8, t8, p64, t64, d, h, w, n_classes, cap)
    if n_runs > cap:  # rare (very fragmented masks): scan again with room for all the runs
        hist, row_ptr, rb, re, boxes, n_runs = _scan(p8, t8, p64, t64, d, h, w, n_classes, n_runs)
    return Scan(_counts_from_hist(hist, n_classes), np.ascontiguousarray(boxes[:n_classes].transpose(1, 0, 2)),
                np.ascontiguousarray(boxes[n_classes:].transpose(1, 0, 2)), row_ptr, rb, re)


def _runs_np(mask: np.ndarray):
    """Numpy runs of a bool (D, H, W) mask: CSR row_ptr (D*H + 1,), begins, ends."""
    d, h, w = mask.shape
    m = mask.reshape(d * h, w).astype(np.int8)
    edges = np.diff(np.pad(m, ((0, 0), (1, 1))), axis=1)
    r_b, x_b = np.nonzero(edges == 1)
    _, x_e = np.nonzero(edges == -1)
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(r_b, minlength=d * h))]).astype(np.int64)
    return row_ptr, x_b.astype(np.int64), x_e.astype(np.int64)


def slice_stats_np(pred: np.ndarray, truth: np.ndarray, n_classes: int):
    """Numpy twin of the counts and boxes of :func:`scan`: (counts, pbox, tbox)."""
    d, h, w = pred.shape
    counts = np.zeros((d, n_classes, 3), np.int64)
    pbox = np.tile(np.array([h, -1, w, -1], np.int64), (d, n_classes, 1))
    tbox = pbox.copy()
    for c in range(n_classes):
        p = ((pred >> c) & 1).astype(bool)
        t = ((truth >> c) & 1).astype(bool)
        counts[:, c, 0] = p.sum((1, 2))
        counts[:, c, 1] = t.sum((1, 2))
        counts[:, c, 2] = (p & t).sum((1, 2))
        for m, box in ((p, pbox), (t, tbox)):
            rows, cols = m.any(2), m.any(1)  # (D, H), (D, W)
            has = rows.any(1)
            box[has, c, 0] = rows[has].argmax(1)
            box[has, c, 1] = h - 1 - rows[has, ::-1].argmax(1)
            box[has, c, 2] = cols[has].argmax(1)
            box[has, c, 3] = w - 1 - cols[has, ::-1].argmax(1)
    return counts, pbox, tbox


def scan_np(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> Scan:
    """Numpy twin of :func:`scan`."""
    pred, truth = _check_pair(pred, truth, n_classes)
    counts, pbox, tbox = slice_stats_np(pred, truth, n_classes)
    ptrs, begins, ends = [], [], []
    offset = 0
    for vol in (pred, truth):
        for c in range(n_classes):
            row_ptr, b, e = _runs_np(((vol >> c) & 1).astype(bool))
            ptrs.append(row_ptr + offset)
            begins.append(b)
            ends.append(e)
            offset += b.size
    return Scan(counts, pbox, tbox, np.stack(ptrs), np.concatenate(begins), np.concatenate(ends))


def slice_stats(pred: np.ndarray, truth: np.ndarray, n_classes: int):
    """(counts, pbox, tbox) of :func:`scan`."""
    s = scan(pred, truth, n_classes)
    return s.counts, s.pbox, s.tbox


# ----------------------------------------------------------------------------------------------------------
# exact directed Hausdorff (squared, integer-weighted): EDT method


@njit(cache=True, nogil=True)
def _envelope_1d(g, n, w2, inf, v, starts, gv, out):
    """out[x] = min_q w2 * (x - q)**2 + g[q] over sites q with g[q] < inf (out = inf where there are none).

    Felzenszwalb-Huttenlocher with integer breakpoints: ``starts[k]`` is the first integer x at which
    parabola ``v[k]`` is minimal (ceil of the real intersection), so every comparison is exact. g and out
    may be the same array. Returns False when g has no site.
    """
    k = -1
    for q in range(n):
        gq = np.int64(g[q])
        if gq >= inf:
            continue
        xq = 0
        while k >= 0:
            p = v[k]
            num = w2 * (q * q - p * p) + gq - np.int64(g[p])
            den = 2 * w2 * (q - p)
            # first integer x at which parabola q <= parabola p: ceil(num / den), through a float
            # division (an integer one costs several times more) corrected to the exact integer
            xq = np.int64(np.ceil(num / den))
            while (xq - 1) * den >= num:
                xq -= 1
            while xq * den < num:
                xq += 1
            if xq <= starts[k]:
                k -= 1  # p is nowhere strictly better than q where p was minimal
            else:
                break
        if k < 0:
            k = 0
            v[0] = q
            starts[0] = 0
        elif xq < n:
            k += 1
            v[k] = q
            starts[k] = xq
    if k < 0:
        return False
    top = k
    # sites' values are read before they are overwritten: site v[k] <= x is only read while k is current
    for i in range(top + 1):
        gv[i] = g[v[i]]
    k = 0
    for x in range(n):
        while k < top and starts[k + 1] <= x:
            k += 1
        dx = x - v[k]
        out[x] = w2 * dx * dx + gv[k]
    return True


@njit(cache=True, nogil=True)
def _directed_edt(src, src_bit, dst, dst_bit, z0, z1, y0, y1, x0, x1, wz2, wy2, wx2, f, inf):
    """EDT-based exact directed max squared distance inside the box [z0, z1) x [y0, y1) x [x0, x1), which
    must hold both sets; f: int32/int64 (nz, ny, nx) work array; inf: its "no voxel" value (2**30 / INF).

    Pass 1 (along y, all x at once so rows stay contiguous) and pass 2 (along x, lazily, only on the rows
    pass 3 reads) build the in-slice squared EDT of dst; pass 3 (along z) runs only at src voxels outside
    dst, scanning slices outwards with the same exact early break as the run-based method.

    One numba function on purpose: the three passes share the work array and the box bounds in registers.
    """
    nz = z1 - z0
    ny = y1 - y0
    nx = x1 - x0
    sb = np.uint8(1 << src_bit)
    db = np.uint8(1 << dst_bit)
    has = np.zeros(nz, np.bool_)
    last = np.empty(nx, np.int64)
    colhas = np.empty(nx, np.bool_)
    n = max(nx, nz)
    v = np.empty(n, np.int64)
    starts = np.empty(n, np.int64)
    gv = np.empty(n, np.int64)
    for z in range(nz):
        # pass 1, along y for all x at once (rows stay contiguous): distance to the nearest dst voxel of
        # the column; -1 marks "none above" in the downward sweep
        fz = f[z]
        dz_ = dst[z0 + z]
        any_z = False
        for x in range(nx):
            last[x] = -1
            colhas[x] = False
        for y in range(ny):
            row = fz[y]
            drow = dz_[y0 + y]
            for x in range(nx):
                if drow[x0 + x] & db:
                    last[x] = y
                    colhas[x] = True
                    any_z = True
                row[x] = y - last[x] if last[x] >= 0 else -1
        if not any_z:
            continue
        has[z] = True
        for x in range(nx):
            last[x] = -1
        for y in range(ny - 1, -1, -1):
            row = fz[y]
            for x in range(nx):
                dl = row[x]
                if dl == 0:
                    last[x] = y
                    continue
                if not colhas[x]:
                    row[x] = inf
                    continue
                dr = last[x] - y if last[x] >= 0 else -1
                if dl < 0 or (0 <= dr < dl):
                    dl = dr
                row[x] = wy2 * dl * dl
    # pass 2 (along x, on contiguous rows) runs lazily, on the rows pass 3 reads; pass 3 (along z) is
    # evaluated only at src voxels outside dst, scanning slices outwards, with an exact early break
    done = np.zeros((nz, ny), np.bool_)
    best_all = np.int64(0)
    found = False
    for z in range(nz):
        for y in range(ny):
            srow = src[z0 + z, y0 + y]
            drow = dst[z0 + z, y0 + y]
            for x in range(nx):
                if not (srow[x0 + x] & sb) or (drow[x0 + x] & db):
                    continue
                found = True
                best = inf
                if has[z]:
                    if not done[z, y]:
                        _envelope_1d(f[z, y], nx, wx2, inf, v, starts, gv, f[z, y])
                        done[z, y] = True
                    best = np.int64(f[z, y, x])
                if best <= best_all:
                    continue  # this voxel cannot raise the maximum
                dz = 1
                while True:
                    step = wz2 * dz * dz
                    if step >= best or (z - dz < 0 and z + dz >= nz):
                        break
                    for zz in (z - dz, z + dz):
                        if zz < 0 or zz >= nz or not has[zz]:
                            continue
                        if not done[zz, y]:
                            _envelope_1d(f[zz, y], nx, wx2, inf, v, starts, gv, f[zz, y])
                            done[zz, y] = True
                        cand = f[zz, y, x] + step
                        best = min(best, cand)
                    if best <= best_all:
                        break
                    dz += 1
                best_all = max(best_all, best)
    if found and best_all >= inf:
        return INF
    return best_all


# ----------------------------------------------------------------------------------------------------------
# exact directed Hausdorff: run-based method


@njit(cache=True, nogil=True, inline="always")
def _row_dx(rb, re, lo, hi, x):
    """Distance along x from x to the nearest voxel of the sorted runs rb/re[lo:hi] (non-empty) of a row."""
    while hi - lo > 4:  # binary search down to a few runs
        mid = (lo + hi) >> 1
        if re[mid - 1] <= x:
            lo = mid - 1  # run mid - 1 ends left of x: it stays, as the nearest run on the left
        else:
            hi = mid
    best = np.int64(1) << np.int64(40)
    for k in range(lo, hi):
        if x < rb[k]:
            d = rb[k] - x
            return min(best, d)
        if x < re[k]:
            return np.int64(0)
        best = x - re[k] + 1
    return best


@njit(cache=True, nogil=True)
def _nearest_sq(z, y, x, z0, z1, h, dbox, dp, rb, re, wz2, wy2, wx2, best, stop):
    """Weighted squared distance from (z, y, x) to the nearest dst voxel (runs ``dp``/rb/re), searching rows
    outwards from ``best`` (an upper bound or INF); stops early once it is known to be <= ``stop`` (it is
    then an upper bound <= stop). Returns (distance, rows visited)."""
    visits = 0
    d = 0
    while best > stop:  # slices at |dz| = d
        stepz = wz2 * d * d
        if stepz >= best or (z - d < z0 and z + d >= z1):
            break
        for side in range(2):
            if best <= stop or (d == 0 and side == 1):
                break
            zz = z - d if side == 0 else z + d
            if zz < z0 or zz >= z1 or dbox[zz, 1] < 0:
                continue
            gya, gyb, gxa, gxb = dbox[zz, 0], dbox[zz, 1], dbox[zz, 2], dbox[zz, 3]
            ey = gya - y if y < gya else (y - gyb if y > gyb else 0)
            ex = gxa - x if x < gxa else (x - gxb if x > gxb else 0)
            if stepz + wy2 * ey * ey + wx2 * ex * ex >= best:
                continue  # the slice's box of dst is already too far
            base = zz * h
            e = ey
            while best > stop:  # rows at |dy| = e
                stepzy = stepz + wy2 * e * e
                if stepzy >= best or (y - e < gya and y + e > gyb):
                    break
                for side2 in range(2):
                    if e == 0 and side2 == 1:
                        break
                    yy = y - e if side2 == 0 else y + e
                    if yy < gya or yy > gyb:
                        continue
                    lo = dp[base + yy]
                    hi = dp[base + yy + 1]
                    if lo == hi:
                        continue
                    visits += 1
                    dx = _row_dx(rb, re, lo, hi, x)
                    cand = stepzy + wx2 * dx * dx
                    best = min(best, cand)
                e += 1
        d += 1
    return best, visits


@njit(cache=True, nogil=True, inline="always")
def _can_skip(bound_sq, best_all):
    """True when a voxel whose distance is at most sqrt(bound_sq) cannot raise best_all; the margin covers
    float rounding, so no voxel that could raise it is ever skipped."""
    return bound_sq <= best_all * (1.0 - 1e-9) - 1e-6


@njit(cache=True, nogil=True)
def _directed_runs(sp, dp, rb, re, d8, dst_bit, h, w, sbox, dbox, z0, z1, wz2, wy2, wx2, budget, inf):
    """Run-based exact directed max squared distance from the src runs (row_ptr ``sp``) outside dst to dst
    (row_ptr ``dp``; d8 is dst's flat volume). -1 when more than ``budget`` row visits were needed."""
    sx = np.sqrt(np.float64(wx2))
    sy = np.sqrt(np.float64(wy2))
    best_all = np.int64(0)
    found = False
    visits = 0
    # bound (of the distance, not squared) of the last voxel handled at x, and the row it is from
    bound = np.empty(w, np.float64)
    bound_row = np.full(w, -2, np.int64)
    for phase in range(2):
        count = 0
        for z in range(z0, z1):
            if phase == 0 and z % 2:
                continue
            for y in range(sbox[z, 0], sbox[z, 1] + 1):
                if phase == 0 and y % 3:
                    continue
                r = z * h + y
                j = dp[r]
                jend = dp[r + 1]
                last_x = -1
                last_b = np.inf
                for s in range(sp[r], sp[r + 1]):
                    x = rb[s]
                    xe = re[s]
                    while x < xe:
                        while j < jend and re[j] <= x:
                            j += 1
                        if j < jend and rb[j] <= x:
                            x = re[j]  # inside a dst run
                            continue
                        seg_end = xe if j >= jend or rb[j] >= xe else rb[j]
                        for xx in range(x, seg_end):  # voxels of src outside dst
                            found = True
                            if phase == 0:
                                count += 1
                                if count % 13:
                                    continue
                            else:
                                b = last_b + (xx - last_x) * sx if last_x >= 0 else np.inf
                                if y > 0 and bound_row[xx] == r - 1 and bound[xx] + sy < b:
                                    b = bound[xx] + sy
                                i = r * w + xx
                                if (xx > 0 and (d8[i - 1] >> dst_bit) & 1) or (
                                        xx + 1 < w and (d8[i + 1] >> dst_bit) & 1):
                                    b = min(b, sx)
                                if (y > 0 and (d8[i - w] >> dst_bit) & 1) or (
                                        y + 1 < h and (d8[i + w] >> dst_bit) & 1):
                                    b = min(b, sy)
                                if _can_skip(b * b, best_all):
                                    bound[xx] = b
                                    bound_row[xx] = r
                                    continue
                            best, v = _nearest_sq(z, y, xx, z0, z1, h, dbox, dp, rb, re, wz2, wy2, wx2, inf,
                                                  best_all)
                            visits += v
                            best_all = max(best_all, best)
                            if phase == 1:
                                last_x = xx
                                last_b = np.sqrt(np.float64(best)) * (1.0 + 1e-12)
                                bound[xx] = last_b
                                bound_row[xx] = r
                        x = seg_end
                if visits > budget:
                    return np.int64(-1)
    if found and best_all >= inf:
        return INF
    return best_all


# ----------------------------------------------------------------------------------------------------------
# entry points


def _box_of(sc: Scan, k: int) -> np.ndarray:
    n = sc.counts.shape[1]
    return sc.pbox[:, k] if k < n else sc.tbox[:, k - n]


def _union_box(sbox, dbox):
    """(z0, z1, y0, y1, x0, x1) half-open box around two sets given their per-slice (D, 4) boxes."""
    zs = np.flatnonzero((sbox[:, 1] >= 0) | (dbox[:, 1] >= 0))
    return (int(zs[0]), int(zs[-1]) + 1, int(min(sbox[:, 0].min(), dbox[:, 0].min())),
            int(max(sbox[:, 1].max(), dbox[:, 1].max())) + 1, int(min(sbox[:, 2].min(), dbox[:, 2].min())),
            int(max(sbox[:, 3].max(), dbox[:, 3].max())) + 1)


def _edt_buffer(work, size, max_sq):
    dtype = np.int32 if max_sq < 2 ** 29 else np.int64
    key = np.dtype(dtype).name
    buf = work.get(key)
    if buf is None or buf.size < size:
        buf = work[key] = np.empty(size, dtype)
    return buf, (2 ** 30 if dtype == np.int32 else int(INF))


def directed_from_scan(sc: Scan, pred, truth, src: int, dst: int, weights=(1, 1, 1), method="auto",
                       work: dict | None = None) -> int:
    """Exact weighted squared directed Hausdorff term between two lists of a :class:`Scan`.

    src, dst: list indices (k < C: pred class k; C + k: truth class k). pred, truth: the scanned uint8
    (D, H, W) volumes. Returns max over voxels v of src not in dst of min over dst voxels u of
    wz2*dz**2 + wy2*dy**2 + wx2*dx**2 (a Python int): 0 when src is empty or inside dst, INF when dst is
    empty and src is not. weights: integer squared per-axis weights (wz2, wy2, wx2). method: one of METHODS;
    all give the same value. work: optional dict kept across calls, caching the EDT work buffer.
    """
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; options: {list(METHODS)}")
    n = sc.counts.shape[1]
    sbox, dbox = _box_of(sc, src), _box_of(sc, dst)
    if not (sbox[:, 1] >= 0).any():
        return 0
    if not (dbox[:, 1] >= 0).any():
        return int(INF)
    src_vol, src_bit = (pred, src) if src < n else (truth, src - n)
    dst_vol, dst_bit = (pred, dst) if dst < n else (truth, dst - n)
    z0, z1, y0, y1, x0, x1 = _union_box(sbox, dbox)
    _, h, w = pred.shape
    wz2, wy2, wx2 = (int(v) for v in weights)
    size = (z1 - z0) * (y1 - y0) * (x1 - x0)
    max_sq = wz2 * (z1 - z0) ** 2 + wy2 * (y1 - y0) ** 2 + wx2 * (x1 - x0) ** 2
    if max_sq >= 2 ** 52:
        raise ValueError(f"shape {pred.shape} with weights {weights} overflows exact integer distances")
    if method != "edt":
        budget = size // 4 + 4096 if method == "auto" else np.iinfo(np.int64).max
        r = int(_directed_runs(sc.row_ptr[src], sc.row_ptr[dst], sc.begin, sc.end, dst_vol.reshape(-1),
                               np.int64(dst_bit), h, w, sbox, dbox, z0, z1, np.int64(wz2), np.int64(wy2),
                               np.int64(wx2), np.int64(budget), INF))
        if r >= 0:
            return r
    buf, inf = _edt_buffer({} if work is None else work, size, max_sq)
    f = buf[:size].reshape(z1 - z0, y1 - y0, x1 - x0)
    return int(_directed_edt(src_vol, np.int64(src_bit), dst_vol, np.int64(dst_bit), z0, z1, y0, y1, x0, x1,
                             np.int64(wz2), np.int64(wy2), np.int64(wx2), f, np.int64(inf)))


def _pair_scan(src, src_bit, dst, dst_bit):
    n = max(src_bit, dst_bit) + 1
    src = np.ascontiguousarray(src, dtype=np.uint8)
    dst = np.ascontiguousarray(dst, dtype=np.uint8)
    return scan(src, dst, n), src, dst, n


def directed_max_sq(src, src_bit, dst, dst_bit, weights=(1, 1, 1), method="auto") -> int:
    """:func:`directed_from_scan` from bit ``src_bit`` of volume ``src`` to bit ``dst_bit`` of ``dst``
    (uint8 (D, H, W) bit flags)."""
    sc, src, dst, n = _pair_scan(src, src_bit, dst, dst_bit)
    return directed_from_scan(sc, src, dst, src_bit, n + dst_bit, weights, method)


def directed_max_sq_np(src, src_bit, dst, dst_bit, wz2=1, wy2=1, wx2=1) -> int:
    """Numpy/scipy twin of :func:`directed_max_sq`: scipy's exact EDT gives the nearest dst voxel of every
    voxel (its indices); the distances are then recomputed in exact integer arithmetic."""
    from scipy import ndimage

    s = ((src >> src_bit) & 1).astype(bool)
    t = ((dst >> dst_bit) & 1).astype(bool)
    a = s & ~t
    if not a.any():
        return 0
    if not t.any():
        return int(INF)
    w = np.array([wz2, wy2, wx2], np.float64)
    idx = ndimage.distance_transform_edt(~t, sampling=np.sqrt(w), return_distances=False, return_indices=True)
    pts = np.argwhere(a)
    near = idx[:, pts[:, 0], pts[:, 1], pts[:, 2]].T
    diff = (pts - near).astype(np.int64)
    d2 = (diff * diff * np.array([wz2, wy2, wx2], np.int64)).sum(1)
    return int(d2.max())


@njit(cache=True, nogil=True)
def _slices_directed(sp, dp, rb, re, src_vol, src_bit, dst_vol, dst_bit, sbox, dbox, wy2, wx2, use_runs, work,
                     inf, out):
    _, h, w = src_vol.shape
    d8 = dst_vol.reshape(-1)
    for z in range(src_vol.shape[0]):
        if dbox[z, 1] < 0:
            out[z] = -1
            continue
        if sbox[z, 1] < 0:
            out[z] = 0
            continue
        y0 = min(sbox[z, 0], dbox[z, 0])
        y1 = max(sbox[z, 1], dbox[z, 1]) + 1
        x0 = min(sbox[z, 2], dbox[z, 2])
        x1 = max(sbox[z, 3], dbox[z, 3]) + 1
        r = np.int64(-1)
        if use_runs:
            r = _directed_runs(sp, dp, rb, re, d8, dst_bit, h, w, sbox, dbox, z, z + 1, np.int64(1), wy2, wx2,
                               ((y1 - y0) * (x1 - x0)) // 4 + 256, INF)
        if r < 0:
            f = work[:(y1 - y0) * (x1 - x0)].reshape(1, y1 - y0, x1 - x0)
            r = _directed_edt(src_vol, src_bit, dst_vol, dst_bit, z, z + 1, y0, y1, x0, x1, np.int64(1), wy2, wx2,
                              f, inf)
        out[z] = r


def slices_from_scan(sc: Scan, pred, truth, src: int, dst: int, weights=(1, 1), method="auto") -> np.ndarray:
    """Per slice z, the 2D :func:`directed_from_scan`: int64 (D,), -1 where dst is empty in the slice, 0
    where src is (or lies inside dst), INF where only dst is empty. weights: (wy2, wx2)."""
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; options: {list(METHODS)}")
    n = sc.counts.shape[1]
    d, h, w = pred.shape
    wy2, wx2 = (int(v) for v in weights)
    max_sq = wy2 * h * h + wx2 * w * w
    if max_sq >= 2 ** 52:
        raise ValueError(f"shape {pred.shape} with weights {weights} overflows exact integer distances")
    src_vol, src_bit = (pred, src) if src < n else (truth, src - n)
    dst_vol, dst_bit = (pred, dst) if dst < n else (truth, dst - n)
    buf, inf = _edt_buffer({}, h * w, max_sq)
    out = np.empty(d, np.int64)
    _slices_directed(sc.row_ptr[src], sc.row_ptr[dst], sc.begin, sc.end, src_vol, np.int64(src_bit), dst_vol,
                     np.int64(dst_bit), np.ascontiguousarray(_box_of(sc, src)), np.ascontiguousarray(_box_of(sc, dst)),
                     np.int64(wy2), np.int64(wx2), method != "edt", buf, np.int64(inf), out)
    return out


def slices_directed_max_sq(src, src_bit, dst, dst_bit, weights=(1, 1), method="auto") -> np.ndarray:
    """:func:`slices_from_scan` from bit ``src_bit`` of ``src`` to bit ``dst_bit`` of ``dst``."""
    sc, src, dst, n = _pair_scan(src, src_bit, dst, dst_bit)
    return slices_from_scan(sc, src, dst, src_bit, n + dst_bit, weights, method)


def slices_directed_max_sq_np(src, src_bit, dst, dst_bit, wy2=1, wx2=1) -> np.ndarray:
    """Numpy twin of :func:`slices_directed_max_sq`."""
    out = np.empty(src.shape[0], np.int64)
    for z in range(src.shape[0]):
        if not ((dst[z] >> dst_bit) & 1).any():
            out[z] = -1
        else:
            out[z] = directed_max_sq_np(src[z:z + 1], src_bit, dst[z:z + 1], dst_bit, 1, wy2, wx2)
    return out
