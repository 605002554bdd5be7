"""Connected-component filters: 2D (per slice, on runs with union-find) and 3D (per case-day volume)."""
from __future__ import annotations

import numpy as np

from kaggle_kit.post.kernels._base import jit, bit_masks, conn, find_root, flat_words, scan_runs

# --------------------------------------------------------------------------------- connected components
@jit
def _label_slice(flat, words, base, h_, w_, b, b64, rs, re, parent, area, row_first, ext):
    """Run-based labelling of bit ``b`` on one slice (``flat[base:base + h_ * w_]``): runs per row in rs/re,
    union-find over runs of adjacent rows in ``parent``, the area of each component at its root in ``area``.
    Returns the number of runs."""
    n = 0
    for y in range(h_):
        row_first[y] = n
        n = scan_runs(flat, words, base + y * w_, base + (y + 1) * w_, b, b64, rs, re, n)
    row_first[h_] = n
    for k in range(n):
        parent[k] = k
    for y in range(1, h_):
        p, a1 = row_first[y - 1], row_first[y]
        for k in range(row_first[y], row_first[y + 1]):
            lo = rs[k] - w_ - ext  # this run in the previous row's coordinates, widened
            hi = re[k] - w_ + ext
            while p < a1 and re[p] <= lo:
                p += 1
            q = p
            while q < a1 and rs[q] < hi:
                ra, rb = find_root(parent, k), find_root(parent, q)
                if ra < rb:
                    parent[rb] = ra
                elif rb < ra:
                    parent[ra] = rb
                q += 1
    for k in range(n):
        area[k] = 0
    for k in range(n):
        area[find_root(parent, k)] += re[k] - rs[k]
    return n


@jit
def _remove_small_2d(flat, words, d_, h_, w_, counts, min_area, conn8, never_empty):
    """Run-based labelling: runs per row, union-find over runs of adjacent rows, areas per root. With
    ``never_empty``, a class whose every component (all slices) is below its minimum first has the minimum
    lowered to its largest component's area (a first pass that stops at the first component that is not)."""
    max_runs = h_ * ((w_ + 1) // 2)
    rs = np.empty(max_runs, np.int64)
    re = np.empty(max_runs, np.int64)
    parent = np.empty(max_runs, np.int64)
    area = np.empty(max_runs, np.int64)
    row_first = np.empty(h_ + 1, np.int64)
    ext = 1 if conn8 else 0  # 8-connectivity: diagonal neighbours, runs touch one pixel further
    limit = min_area.copy()
    if never_empty:
        for c in range(counts.shape[1]):
            if min_area[c] <= 1:
                continue
            b, b64, _ = bit_masks(c)
            largest = 0
            for d in range(d_):
                if counts[d, c] == 0:
                    continue
                n = _label_slice(flat, words, d * h_ * w_, h_, w_, b, b64, rs, re, parent, area, row_first, ext)
                for k in range(n):
                    largest = max(largest, area[k])
                if largest >= min_area[c]:
                    break
            limit[c] = min(min_area[c], largest)
    for d in range(d_):
        base = d * h_ * w_
        for c in range(counts.shape[1]):
            if counts[d, c] == 0 or limit[c] <= 1:
                continue
            b, b64, keep = bit_masks(c)
            n = _label_slice(flat, words, base, h_, w_, b, b64, rs, re, parent, area, row_first, ext)
            for k in range(n):
                if area[find_root(parent, k)] < limit[c]:
                    for i in range(rs[k], re[k]):
                        flat[i] &= keep
                    counts[d, c] -= re[k] - rs[k]


def remove_small_2d(bits, counts, min_area, connectivity: int = 8, never_empty: bool = False) -> None:
    """In place: per slice and class, remove connected components of fewer than ``min_area[c]`` pixels.

    ``never_empty``: the filter never empties a class that has a positive pixel somewhere in the volume;
    when every 2D component of class c (all slices) is below ``min_area[c]``, its largest one is kept (all of
    them on a tie). The metric skips the Hausdorff term of a class absent from the truth, so a kept
    component there costs only the Dice rows of its slices, while deleting a present organ costs a whole
    Hausdorff term (1.0)."""
    d, h, w = bits.shape
    _remove_small_2d(*flat_words(bits), d, h, w, counts, np.asarray(min_area, np.int64), conn(connectivity),
                     bool(never_empty))


def remove_small_2d_numpy(bits, counts, min_area, connectivity: int = 8, never_empty: bool = False) -> None:
    from scipy import ndimage

    struct = ndimage.generate_binary_structure(2, 2 if conn(connectivity) else 1)
    min_area = np.array(min_area, np.int64)
    if never_empty:
        for c in range(counts.shape[1]):
            if min_area[c] > 1:
                largest = max((np.bincount(ndimage.label((plane >> c) & 1, structure=struct)[0].ravel())[1:]
                               .max(initial=0) for plane in bits), default=0)
                min_area[c] = min(min_area[c], largest)
    for d in range(bits.shape[0]):
        for c in range(counts.shape[1]):
            if counts[d, c] == 0 or min_area[c] <= 1:
                continue
            lab, _ = ndimage.label((bits[d] >> c) & 1, structure=struct)
            small = np.bincount(lab.ravel()) < min_area[c]
            small[0] = False
            drop = small[lab]
            bits[d][drop] &= np.uint8(~(1 << c) & 0xFF)
            counts[d, c] -= int(drop.sum())


@jit
def _components_3d(bits, c, total, visited, conn26):
    """The 3D components of class c (26-/6-connected): (order, start, n) with component k's voxels (flat
    indices, BFS order) at ``order[start[k]:start[k + 1]]``. ``visited``: uint8 (D, H, W), bit c clear on
    entry (set on the class's voxels on return); ``total``: the class's positive voxels."""
    d_, h_, w_ = bits.shape
    hw = h_ * w_
    b = np.uint8(1 << c)
    order = np.empty(total, np.int64)
    start = np.empty(total + 1, np.int64)
    # the neighbours' flat offsets, in the order of the bounded loop below (so the BFS order is the same)
    offs = np.empty(26 if conn26 else 6, np.int64)
    m = 0
    for dz in range(-1, 2):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                k = abs(dz) + abs(dy) + abs(dx)
                if k == 0 or (not conn26 and k > 1):
                    continue
                offs[m] = dz * hw + dy * w_ + dx
                m += 1
    bf, vf = bits.reshape(-1), visited.reshape(-1)
    n, tail = 0, 0
    for z0 in range(d_):
        for y0 in range(h_):
            row = bits[z0, y0]
            seen = 0
            for x0 in range(w_):  # most rows are empty: one vectorised read skips them
                seen |= row[x0]
            if not (seen & b):
                continue
            for x0 in range(w_):
                if not (row[x0] & b) or (visited[z0, y0, x0] & b):
                    continue
                visited[z0, y0, x0] |= b
                start[n] = tail
                n += 1
                head = tail
                order[tail] = z0 * hw + y0 * w_ + x0
                tail += 1
                while head < tail:  # the queue is the component's slice of ``order``
                    p = order[head]
                    head += 1
                    z = p // hw
                    y = (p - z * hw) // w_
                    x = p - z * hw - y * w_
                    if 0 < z < d_ - 1 and 0 < y < h_ - 1 and 0 < x < w_ - 1:  # interior: no bounds to check
                        for o in offs:
                            q = p + o
                            if (bf[q] & b) and not (vf[q] & b):
                                vf[q] |= b
                                order[tail] = q
                                tail += 1
                        continue
                    for dz in range(-1, 2):
                        nz = z + dz
                        if nz < 0 or nz >= d_:
                            continue
                        for dy in range(-1, 2):
                            ny = y + dy
                            if ny < 0 or ny >= h_:
                                continue
                            for dx in range(-1, 2):
                                k = abs(dz) + abs(dy) + abs(dx)
                                if k == 0 or (not conn26 and k > 1):
                                    continue
                                nx = x + dx
                                if nx < 0 or nx >= w_:
                                    continue
                                if (bits[nz, ny, nx] & b) and not (visited[nz, ny, nx] & b):
                                    visited[nz, ny, nx] |= b
                                    order[tail] = nz * hw + ny * w_ + nx
                                    tail += 1
    start[n] = tail
    return order, start, n


@jit
def _drop_voxels(bits, counts, c, order, i0, i1):
    hw = bits.shape[1] * bits.shape[2]
    w_ = bits.shape[2]
    keep = np.uint8(~(1 << c) & 0xFF)
    for i in range(i0, i1):
        p = order[i]
        z = p // hw
        y = (p - z * hw) // w_
        bits[z, y, p - z * hw - y * w_] &= keep
        counts[z, c] -= 1


@jit
def _remove_small_3d(bits, counts, min_volume, conn26, never_empty):
    visited = np.zeros(bits.shape, np.uint8)
    for c in range(counts.shape[1]):
        total = counts[:, c].sum()
        if total == 0 or min_volume[c] <= 1:
            continue
        order, start, n = _components_3d(bits, c, total, visited, conn26)
        limit = min_volume[c]
        if never_empty:
            largest = 0
            for k in range(n):
                largest = max(largest, start[k + 1] - start[k])
            limit = min(limit, largest)
        for k in range(n):
            if start[k + 1] - start[k] < limit:
                _drop_voxels(bits, counts, c, order, start[k], start[k + 1])


def remove_small_3d(bits, counts, min_volume, connectivity: int = 8, never_empty: bool = False) -> None:
    """In place: per class, remove 3D components (26-/6-connected for 8/4) of fewer than ``min_volume[c]``.
    ``never_empty``: when every component of class c is below the minimum, its largest is kept (all of them on
    a tie), as in :func:`remove_small_2d`."""
    _remove_small_3d(bits, counts, np.asarray(min_volume, np.int64), conn(connectivity), bool(never_empty))


def remove_small_3d_numpy(bits, counts, min_volume, connectivity: int = 8, never_empty: bool = False) -> None:
    from scipy import ndimage

    struct = ndimage.generate_binary_structure(3, 3 if conn(connectivity) else 1)
    for c in range(counts.shape[1]):
        if counts[:, c].sum() == 0 or min_volume[c] <= 1:
            continue
        lab, _ = ndimage.label((bits >> c) & 1, structure=struct)
        sizes = np.bincount(lab.ravel())
        limit = min(min_volume[c], sizes[1:].max()) if never_empty else min_volume[c]
        small = sizes < limit
        small[0] = False
        drop = small[lab]
        bits[drop] &= np.uint8(~(1 << c) & 0xFF)
        counts[:, c] -= drop.reshape(len(drop), -1).sum(1)


@jit
def _remove_relative_3d(bits, counts, fraction, conn26):
    visited = np.zeros(bits.shape, np.uint8)
    for c in range(counts.shape[1]):
        total = counts[:, c].sum()
        if total == 0 or fraction[c] <= 0:
            continue
        order, start, n = _components_3d(bits, c, total, visited, conn26)
        largest = 0
        for k in range(n):
            largest = max(largest, start[k + 1] - start[k])
        limit = fraction[c] * largest  # float64: the twin compares the same way
        for k in range(n):
            if start[k + 1] - start[k] < limit:
                _drop_voxels(bits, counts, c, order, start[k], start[k + 1])


def remove_relative_3d(bits, counts, fraction, connectivity: int = 8) -> None:
    """In place: per class, remove 3D components (26-/6-connected for 8/4) with fewer voxels than
    ``fraction[c]`` (float, in [0, 1]) times the class's largest component in the volume. 0 keeps all;
    1 keeps the largest (all of them on a tie). Stray blobs cost the Hausdorff term most."""
    _remove_relative_3d(bits, counts, np.asarray(fraction, np.float64), conn(connectivity))


def remove_relative_3d_numpy(bits, counts, fraction, connectivity: int = 8) -> None:
    from scipy import ndimage

    fraction = np.asarray(fraction, np.float64)
    struct = ndimage.generate_binary_structure(3, 3 if conn(connectivity) else 1)
    for c in range(counts.shape[1]):
        if counts[:, c].sum() == 0 or fraction[c] <= 0:
            continue
        lab, _ = ndimage.label((bits >> c) & 1, structure=struct)
        sizes = np.bincount(lab.ravel())
        small = sizes < fraction[c] * sizes[1:].max()
        small[0] = False
        drop = small[lab]
        bits[drop] &= np.uint8(~(1 << c) & 0xFF)
        counts[:, c] -= drop.reshape(len(drop), -1).sum(1)
