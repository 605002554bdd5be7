"""Numba post-processing kernels, each with a numpy twin (``*_numpy``) that the tests compare it against.

Conventions (shared by both implementations):

- member maps: uint8 ``stack (M, D, C, H, W)`` (probability * 255), raw geometry and slice order;
- weights: float32 ``(M, C)``, already normalised to sum 1 per class (:func:`normalise_weights`);
- fused maps: float32 ``(D, C, H, W)``, ``sum_m w[m, c] * stack[m]`` accumulated member by member in
  float32, in member order (so numba and numpy agree bit for bit);
- thresholds: float64 ``(C,)`` on the 0..255 scale; a pixel is positive iff ``fused > thr255``
  (so one member with weight 1 and threshold t gives exactly ``member > t * 255``);
- masks: uint8 bit flags ``bits (D, H, W)`` (bit c = class c) plus ``counts (D, C)`` int64 positive pixels
  per plane; every in-place kernel keeps ``counts`` exact, so later steps skip empty planes for free.

Connectivity: ``8`` (default; the 2D neighbourhood of the 3x3 square) or ``4``; for 3D components the
same switch means 26- or 6-connectivity. 2D components are labelled on runs (runs per row, union-find
between overlapping runs of adjacent rows); scans of bit planes skip background 8 pixels at a time.
All kernels are single-threaded (``parallel`` is not used): the notebook runs other work beside them.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "fuse",
    "fuse_numpy",
    "fuse_threshold",
    "fuse_threshold_numpy",
    "gate",
    "gate_numpy",
    "keep_range",
    "normalise_weights",
    "plane_counts",
    "remove_relative_3d",
    "remove_relative_3d_numpy",
    "remove_small_2d",
    "remove_small_2d_numpy",
    "remove_small_3d",
    "remove_small_3d_numpy",
    "rle_encode_planes",
    "rle_encode_planes_numpy",
    "threshold",
    "threshold_numpy",
    "truncate",
    "truncate_numpy",
    "z_smooth",
    "z_smooth_numpy",
]

_jit = nb.njit(cache=True, nogil=True)


def normalise_weights(weights) -> np.ndarray:
    """(M, C) non-negative weights -> float32 (M, C) summing to 1 per class; ValueError otherwise."""
    w = np.asarray(weights, np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be (members, classes), got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    s = w.sum(0)
    if (s <= 0).any():
        raise ValueError(f"class(es) {np.flatnonzero(s <= 0).tolist()} have zero total weight over the members")
    return (w / s).astype(np.float32)


def plane_counts(bits: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 (D, C) positive pixels per (slice, class) of a bit-flag mask (numpy)."""
    d = bits.shape[0]
    flat = bits.reshape(d, -1)
    return np.stack([np.count_nonzero(flat & np.uint8(1 << c), axis=1) for c in range(n_classes)], 1).astype(np.int64)


def _flat_words(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat uint8 view of a C-contiguous bit-flag volume and a uint64 view of its first 8*floor(n/8) bytes.

    The kernels test 8 pixels at once on the word view to skip background quickly; both are views, so an
    in-place kernel writes straight into ``bits``.
    """
    if bits.dtype != np.uint8 or not bits.flags.c_contiguous:
        raise ValueError(f"bits must be a C-contiguous uint8 (D, H, W) array, got {bits.dtype}")
    flat = bits.reshape(-1)
    return flat, flat[: flat.size // 8 * 8].view(np.uint64)


def _check_stack(stack, weights):
    if stack.dtype != np.uint8 or stack.ndim != 5:
        raise ValueError(f"stack must be uint8 (M, D, C, H, W), got {stack.dtype} {stack.shape}")
    m, _, c = stack.shape[:3]
    if weights.shape != (m, c):
        raise ValueError(f"weights shape {weights.shape} does not match (members, classes) = {(m, c)}")
    return np.ascontiguousarray(stack), np.ascontiguousarray(weights, np.float32)


# ----------------------------------------------------------------------------------------------- fusion
@_jit
def _fuse(stack, w, out):
    m_, d_, c_, h_, w_ = stack.shape
    for d in range(d_):
        for c in range(c_):
            for y in range(h_):
                row = out[d, c, y]
                row[:] = 0
                for m in range(m_):
                    wm = w[m, c]
                    if wm == 0:
                        continue
                    src = stack[m, d, c, y]
                    for x in range(w_):
                        row[x] += wm * np.float32(src[x])


def fuse(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted fusion: uint8 (M, D, C, H, W), float32 (M, C) -> float32 (D, C, H, W) on the 0..255 scale."""
    stack, weights = _check_stack(stack, weights)
    out = np.empty(stack.shape[1:], np.float32)
    _fuse(stack, weights, out)
    return out


def fuse_numpy(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    stack, weights = _check_stack(stack, weights)
    acc = np.zeros(stack.shape[1:], np.float32)
    for m in range(stack.shape[0]):
        acc += weights[m][None, :, None, None] * stack[m].astype(np.float32)  # w == 0 adds +0: same as skipping
    return acc


@_jit
def _threshold(fused, thr, bits, counts):
    d_, c_, h_, w_ = fused.shape
    bits[:] = 0
    for d in range(d_):
        for c in range(c_):
            t = thr[c]
            b = np.uint8(1 << c)
            n = 0
            for y in range(h_):
                for x in range(w_):
                    if fused[d, c, y, x] > t:
                        bits[d, y, x] |= b
                        n += 1
            counts[d, c] = n


def threshold(fused: np.ndarray, thr255: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class thresholds: float (D, C, H, W), float64 (C,) -> bits uint8 (D, H, W), counts int64 (D, C)."""
    fused = np.ascontiguousarray(fused)
    d, c, h, w = fused.shape
    bits, counts = np.empty((d, h, w), np.uint8), np.empty((d, c), np.int64)
    _threshold(fused, np.asarray(thr255, np.float64), bits, counts)
    return bits, counts


def threshold_numpy(fused: np.ndarray, thr255: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = fused > np.asarray(thr255, np.float64)[None, :, None, None]
    bits = np.zeros((fused.shape[0],) + fused.shape[2:], np.uint8)
    for c in range(fused.shape[1]):
        bits |= pos[:, c].astype(np.uint8) << c
    return bits, pos.reshape(pos.shape[0], pos.shape[1], -1).sum(2).astype(np.int64)


@_jit
def _fuse_threshold(stack, w, thr, bits, counts):
    m_, d_, c_, h_, w_ = stack.shape
    row = np.empty(w_, np.float32)
    bits[:] = 0
    for d in range(d_):
        for c in range(c_):
            t = thr[c]
            b = np.uint8(1 << c)
            n = 0
            for y in range(h_):
                row[:] = 0
                for m in range(m_):
                    wm = w[m, c]
                    if wm == 0:
                        continue
                    src = stack[m, d, c, y]
                    for x in range(w_):
                        row[x] += wm * np.float32(src[x])
                out = bits[d, y]
                for x in range(w_):  # branch-free: vectorises
                    v = np.uint8(row[x] > t)
                    out[x] |= v * b
                    n += v
            counts[d, c] = n


def fuse_threshold(stack: np.ndarray, weights: np.ndarray, thr255: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fusion and thresholding in one pass (no float map in memory): equals ``threshold(fuse(...))``."""
    stack, weights = _check_stack(stack, weights)
    _, d, c, h, w = stack.shape
    bits, counts = np.empty((d, h, w), np.uint8), np.empty((d, c), np.int64)
    _fuse_threshold(stack, weights, np.asarray(thr255, np.float64), bits, counts)
    return bits, counts


def fuse_threshold_numpy(stack, weights, thr255):
    return threshold_numpy(fuse_numpy(stack, weights), thr255)


# ------------------------------------------------------------------------------------- plane-level steps
@_jit
def _clear_plane(bits, d, c):
    keep = np.uint8(~(1 << c) & 0xFF)
    plane = bits[d]
    for y in range(plane.shape[0]):
        for x in range(plane.shape[1]):
            plane[y, x] &= keep


@_jit
def _gate(bits, counts, cls, cls_thr, min_pixels):
    use_cls = cls.shape[0] > 0
    for d in range(counts.shape[0]):
        for c in range(counts.shape[1]):
            n = counts[d, c]
            if n == 0:
                continue
            if n < min_pixels[c] or (use_cls and cls[d, c] < cls_thr[c]):
                _clear_plane(bits, d, c)
                counts[d, c] = 0


def _gate_args(counts, cls, cls_thr255, min_pixels):
    d, c = counts.shape
    cls = np.zeros((0, c), np.float32) if cls is None else np.ascontiguousarray(cls, np.float32)
    if cls.shape[0] and cls.shape != (d, c):
        raise ValueError(f"classifier probabilities {cls.shape} do not match (D, C) = {(d, c)}")
    cls_thr = np.full(c, -np.inf) if cls_thr255 is None else np.asarray(cls_thr255, np.float64)
    mp = np.zeros(c, np.int64) if min_pixels is None else np.asarray(min_pixels, np.int64)
    return cls, cls_thr, mp


def gate(bits, counts, cls=None, cls_thr255=None, min_pixels=None) -> None:
    """In place: zero class c on slices where ``cls[d, c] < cls_thr255[c]`` (float (D, C), 0..255 scale)
    or where its positive-pixel count is below ``min_pixels[c]``. ``None`` disables either test."""
    _gate(bits, counts, *_gate_args(counts, cls, cls_thr255, min_pixels))


def gate_numpy(bits, counts, cls=None, cls_thr255=None, min_pixels=None) -> None:
    cls, cls_thr, mp = _gate_args(counts, cls, cls_thr255, min_pixels)
    drop = counts < mp[None]
    if cls.shape[0]:
        drop |= cls < cls_thr[None]
    _drop_planes_numpy(bits, counts, drop)


def _drop_planes_numpy(bits, counts, drop):
    for c in range(counts.shape[1]):
        dz = drop[:, c] & (counts[:, c] > 0)
        bits[dz] &= np.uint8(~(1 << c) & 0xFF)
        counts[dz, c] = 0


def keep_range(depth: int, first_k, last_k, cls=None, tail_thr255=None, tail_margin=None):
    """Per-class plausible slice range [lo, hi] (int64 (C,) each, inclusive) for :func:`truncate`.

    Drops the first ``first_k[c]`` and last ``last_k[c]`` slices; with ``tail_margin`` (needs ``cls``
    (D, C) and ``tail_thr255``) also every slice more than ``tail_margin`` slices after the last slice whose
    classifier probability is >= ``tail_thr255[c]``; a class the classifier never calls drops everywhere.
    """
    first_k, last_k = np.asarray(first_k, np.int64), np.asarray(last_k, np.int64)
    lo, hi = first_k.copy(), depth - 1 - last_k
    if tail_margin is not None:
        if cls is None or tail_thr255 is None:
            raise ValueError("tail truncation needs classifier probabilities and a tail threshold")
        pos = np.asarray(cls) >= np.asarray(tail_thr255, np.float64)[None]
        for c in range(len(hi)):
            z = np.flatnonzero(pos[:, c])
            hi[c] = min(hi[c], z[-1] + int(tail_margin)) if z.size else -1
    return lo, hi


@_jit
def _truncate(bits, counts, lo, hi):
    for d in range(counts.shape[0]):
        for c in range(counts.shape[1]):
            if counts[d, c] > 0 and (d < lo[c] or d > hi[c]):
                _clear_plane(bits, d, c)
                counts[d, c] = 0


def truncate(bits, counts, lo, hi) -> None:
    """In place: zero class c on slices outside ``[lo[c], hi[c]]`` (from :func:`keep_range`)."""
    _truncate(bits, counts, np.asarray(lo, np.int64), np.asarray(hi, np.int64))


def truncate_numpy(bits, counts, lo, hi) -> None:
    z = np.arange(counts.shape[0])[:, None]
    _drop_planes_numpy(bits, counts, (z < np.asarray(lo)[None]) | (z > np.asarray(hi)[None]))


# ----------------------------------------------------------------------------------------- runs scanner
@_jit
def _scan_runs(flat, words, start, end, b, b64, rs, re, n):
    """Append the runs of bit ``b`` in ``flat[start:end]`` as absolute [rs, re) to rs/re from index n.

    Background is skipped 8 pixels at a time on aligned words (``b64`` = ``b`` in every byte)."""
    i = start
    while i < end:
        if (i & 7) == 0 and i + 8 <= end and (words[i >> 3] & b64) == 0:
            i += 8
            continue
        if flat[i] & b:
            j = i + 1
            while j < end and (flat[j] & b):
                j += 1
            rs[n] = i
            re[n] = j
            n += 1
            i = j
        else:
            i += 1
    return n


@_jit
def _bit_masks(c):
    return np.uint8(1 << c), np.uint64(0x0101010101010101) * np.uint64(1 << c), np.uint8(~(1 << c) & 0xFF)


@_jit
def _find(parent, k):
    while parent[k] != k:
        parent[k] = parent[parent[k]]  # path halving
        k = parent[k]
    return k


# --------------------------------------------------------------------------------- connected components
@_jit
def _label_slice(flat, words, base, h_, w_, b, b64, rs, re, parent, area, row_first, ext):
    """Run-based labelling of bit ``b`` on one slice (``flat[base:base + h_ * w_]``): runs per row in rs/re,
    union-find over runs of adjacent rows in ``parent``, the area of each component at its root in ``area``.
    Returns the number of runs."""
    n = 0
    for y in range(h_):
        row_first[y] = n
        n = _scan_runs(flat, words, base + y * w_, base + (y + 1) * w_, b, b64, rs, re, n)
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
                ra, rb = _find(parent, k), _find(parent, q)
                if ra < rb:
                    parent[rb] = ra
                elif rb < ra:
                    parent[ra] = rb
                q += 1
    for k in range(n):
        area[k] = 0
    for k in range(n):
        area[_find(parent, k)] += re[k] - rs[k]
    return n


@_jit
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
            b, b64, _ = _bit_masks(c)
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
            b, b64, keep = _bit_masks(c)
            n = _label_slice(flat, words, base, h_, w_, b, b64, rs, re, parent, area, row_first, ext)
            for k in range(n):
                if area[_find(parent, k)] < limit[c]:
                    for i in range(rs[k], re[k]):
                        flat[i] &= keep
                    counts[d, c] -= re[k] - rs[k]


def _conn(connectivity) -> bool:
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    return connectivity == 8


def remove_small_2d(bits, counts, min_area, connectivity: int = 8, never_empty: bool = False) -> None:
    """In place: per slice and class, remove connected components of fewer than ``min_area[c]`` pixels.

    ``never_empty``: the filter never empties a class that has a positive pixel somewhere in the volume;
    when every 2D component of class c (all slices) is below ``min_area[c]``, its largest one is kept (all of
    them on a tie). The metric skips the Hausdorff term of a class absent from the truth, so a kept
    component there costs only the Dice rows of its slices, while deleting a present organ costs a whole
    Hausdorff term (1.0)."""
    d, h, w = bits.shape
    _remove_small_2d(*_flat_words(bits), d, h, w, counts, np.asarray(min_area, np.int64), _conn(connectivity),
                     bool(never_empty))


def remove_small_2d_numpy(bits, counts, min_area, connectivity: int = 8, never_empty: bool = False) -> None:
    from scipy import ndimage

    struct = ndimage.generate_binary_structure(2, 2 if _conn(connectivity) else 1)
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


@_jit
def _components_3d(bits, c, total, visited, conn26):
    """The 3D components of class c (26-/6-connected): (order, start, n) with component k's voxels (flat
    indices, BFS order) at ``order[start[k]:start[k + 1]]``. ``visited``: uint8 (D, H, W), bit c clear on
    entry (set on the class's voxels on return); ``total``: the class's positive voxels."""
    d_, h_, w_ = bits.shape
    hw = h_ * w_
    b = np.uint8(1 << c)
    order = np.empty(total, np.int64)
    start = np.empty(total + 1, np.int64)
    n, tail = 0, 0
    for z0 in range(d_):
        for y0 in range(h_):
            for x0 in range(w_):
                if not (bits[z0, y0, x0] & b) or (visited[z0, y0, x0] & b):
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


@_jit
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


@_jit
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
    _remove_small_3d(bits, counts, np.asarray(min_volume, np.int64), _conn(connectivity), bool(never_empty))


def remove_small_3d_numpy(bits, counts, min_volume, connectivity: int = 8, never_empty: bool = False) -> None:
    from scipy import ndimage

    struct = ndimage.generate_binary_structure(3, 3 if _conn(connectivity) else 1)
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


@_jit
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
    _remove_relative_3d(bits, counts, np.asarray(fraction, np.float64), _conn(connectivity))


def remove_relative_3d_numpy(bits, counts, fraction, connectivity: int = 8) -> None:
    from scipy import ndimage

    fraction = np.asarray(fraction, np.float64)
    struct = ndimage.generate_binary_structure(3, 3 if _conn(connectivity) else 1)
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


# ------------------------------------------------------------------------------------------- z smoothing
@_jit
def _z_smooth(bits, counts):
    d_, h_, w_ = bits.shape
    present = counts > 0  # decisions from the presence before any flip: order-independent
    for c in range(counts.shape[1]):
        b = np.uint8(1 << c)
        for d in range(1, d_ - 1):  # fill isolated negatives first: reads only unmodified positive planes
            if not present[d, c] and present[d - 1, c] and present[d + 1, c]:
                n = 0
                for y in range(h_):
                    for x in range(w_):
                        if bits[d - 1, y, x] & bits[d + 1, y, x] & b:
                            bits[d, y, x] |= b
                            n += 1
                counts[d, c] = n
        for d in range(1, d_ - 1):
            if present[d, c] and not present[d - 1, c] and not present[d + 1, c]:
                _clear_plane(bits, d, c)
                counts[d, c] = 0


def z_smooth(bits, counts) -> None:
    """In place, per class along z (interior slices only, decided on the presence before smoothing):
    an isolated positive slice (both neighbours empty) is cleared; an isolated empty slice (both neighbours
    positive) gets the intersection of its neighbours' masks."""
    _z_smooth(bits, counts)


def z_smooth_numpy(bits, counts) -> None:
    present = counts > 0
    orig = bits.copy()
    for c in range(counts.shape[1]):
        b = np.uint8(1 << c)
        p = present[:, c]
        for d in range(1, len(p) - 1):
            if not p[d] and p[d - 1] and p[d + 1]:
                fill = orig[d - 1] & orig[d + 1] & b
                bits[d] |= fill
                counts[d, c] = int(np.count_nonzero(fill))
            elif p[d] and not p[d - 1] and not p[d + 1]:
                bits[d] &= np.uint8(~b & 0xFF)
                counts[d, c] = 0


# --------------------------------------------------------------------------------------------------- RLE
@_jit
def _n_digits(v):
    n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


@_jit
def _put_int(buf, pos, v):
    n = _n_digits(v)
    for i in range(n - 1, -1, -1):
        buf[pos + i] = 48 + v % 10
        v //= 10
    return pos + n


@_jit
def _rle_planes(flat, words, d_, n_, counts):
    """flat: uint8 bit flags (D*N,); words: uint64 view of its first 8*floor(D*N/8) bytes.
    Returns (ASCII bytes, offsets (D*C + 1,)); the RLE of plane (d, c) is row k = d * C + c."""
    c_ = counts.shape[1]
    rs = np.empty(counts.sum(), np.int64)  # a run has >= 1 pixel: the positive count bounds the runs
    re = np.empty(counts.sum(), np.int64)
    run_off = np.zeros(d_ * c_ + 1, np.int64)
    n = 0
    for d in range(d_):
        for c in range(c_):
            if counts[d, c] > 0:
                b, b64, _ = _bit_masks(c)
                n = _scan_runs(flat, words, d * n_, (d + 1) * n_, b, b64, rs, re, n)
            run_off[d * c_ + c + 1] = n
    size = 0
    for k in range(d_ * c_):
        base = (k // c_) * n_
        for r in range(run_off[k], run_off[k + 1]):
            size += _n_digits(rs[r] - base + 1) + _n_digits(re[r] - rs[r]) + 2
        if run_off[k + 1] > run_off[k]:
            size -= 1  # no separator before a plane's first pair
    buf = np.empty(size, np.uint8)
    offsets = np.zeros(d_ * c_ + 1, np.int64)
    pos = 0
    for k in range(d_ * c_):
        base = (k // c_) * n_
        for r in range(run_off[k], run_off[k + 1]):
            if r > run_off[k]:
                buf[pos] = 32
                pos += 1
            pos = _put_int(buf, pos, rs[r] - base + 1)
            buf[pos] = 32
            pos = _put_int(buf, pos + 1, re[r] - rs[r])
        offsets[k + 1] = pos
    return buf, offsets


def rle_encode_planes(bits: np.ndarray, n_classes: int, counts: np.ndarray | None = None) -> list[str]:
    """RLE strings straight from the bit-flag mask: ``D * C`` strings, row ``d * C + c`` (slice-major).

    ``counts`` (D, C) lets empty planes be skipped without a scan; computed when omitted.
    """
    bits = np.ascontiguousarray(bits, np.uint8)
    d = bits.shape[0]
    n = int(np.prod(bits.shape[1:]))
    counts = plane_counts(bits, n_classes) if counts is None else np.ascontiguousarray(counts, np.int64)
    buf, off = _rle_planes(*_flat_words(bits), d, n, counts)
    text = buf.tobytes().decode("ascii")
    off = off.tolist()
    return [text[off[k]:off[k + 1]] for k in range(d * n_classes)]


def rle_encode_planes_numpy(bits: np.ndarray, n_classes: int, counts=None) -> list[str]:
    from kaggle_kit.data.rle import rle_encode

    return [rle_encode((bits[d] >> c) & 1) for d in range(bits.shape[0]) for c in range(n_classes)]
