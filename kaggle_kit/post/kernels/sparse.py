"""Fusion and thresholding on the active voxels of one class's crop: the tuner's compact form of OOF maps.

A crop of one class (a box ``(dz, dy, dx)`` of a case-day) keeps only its *active* voxels, those where some
member reaches ``lo`` (the smallest uint8 value that can pass the lowest threshold searched): their flat
indices into the box (``idx``, sorted, int32/int64) and the members' values there (``vals`` uint8 (M, n)).
A voxel outside them has a fused value below every candidate threshold (the fused value is at most the
largest member value times 1 + 1e-6), so it is never positive, and a plane's peak fused value read on a
plane with a positive voxel is attained at an active voxel. So, bit for bit:

- ``threshold_sparse(fuse_sparse(vals, w), idx, t, shape)`` equals ``fuse_threshold`` on the dense crop for
  any threshold ``t`` the floor was computed for;
- ``plane_max_sparse`` equals ``fuse_plane_max`` on every plane where that threshold leaves a positive voxel.

The fused value of a voxel is the same float32 sum, member by member in member order, skipping zero
weights, as :func:`kaggle_kit.post.kernels.fuse._fuse_row`.
"""
from __future__ import annotations

import numpy as np

from kaggle_kit.post.kernels._base import jit

__all__ = ["active_box", "active_box_numpy", "active_voxels", "active_voxels_numpy", "fuse_sparse", "fuse_sparse_numpy", "fuse_threshold_sparse",
           "plane_max_sparse", "plane_max_sparse_numpy", "threshold_sparse", "threshold_sparse_numpy"]


@jit
def _gather_active(pix, c, lo, z0, z1, y0, y1, x0, x1, idx, vals):
    """Fill idx / vals (room for the whole box) with the active voxels in raster order; returns how many."""
    dy, dx = y1 - y0, x1 - x0
    top = np.empty(dx, np.uint8)
    n = 0
    for z in range(z0, z1):
        for y in range(y0, y1):
            top[:] = 0
            for m in range(pix.shape[0]):  # the members' maximum along the row: vectorises
                row = pix[m, z, c, y, x0:x1]
                for x in range(dx):
                    top[x] = max(top[x], row[x])
            base = ((z - z0) * dy + (y - y0)) * dx
            for x in range(dx):
                if top[x] >= lo:
                    idx[n] = base + x
                    for m in range(pix.shape[0]):
                        vals[m, n] = pix[m, z, c, y, x0 + x]
                    n += 1
    return n


def _index_dtype(size: int):
    return np.int32 if size < 2**31 else np.int64


def active_voxels(pix: np.ndarray, c: int, lo: int, box) -> tuple[np.ndarray, np.ndarray]:
    """The active voxels of class ``c`` in ``box`` = (z0, z1, y0, y1, x0, x1) of a uint8 stack (M, D, C, H, W):
    flat indices into the box (sorted) and the members' values (M, n)."""
    z0, z1, y0, y1, x0, x1 = (int(b) for b in box)
    size = (z1 - z0) * (y1 - y0) * (x1 - x0)
    idx = np.empty(size, _index_dtype(size))
    vals = np.empty((pix.shape[0], size), np.uint8)
    n = _gather_active(pix, c, lo, z0, z1, y0, y1, x0, x1, idx, vals)
    return idx[:n].copy(), vals[:, :n].copy()


def active_voxels_numpy(pix, c, lo, box):
    z0, z1, y0, y1, x0, x1 = (int(b) for b in box)
    sub = pix[:, z0:z1, c, y0:y1, x0:x1].reshape(pix.shape[0], -1)
    idx = np.flatnonzero((sub >= lo).any(0))
    return idx.astype(_index_dtype(sub.shape[1])), np.ascontiguousarray(sub[:, idx])


@jit
def _fuse_sparse(vals, w, out):
    out[:] = 0
    for m in range(vals.shape[0]):
        wm = w[m]
        if wm == 0:
            continue
        src = vals[m]
        for i in range(out.shape[0]):
            out[i] += wm * np.float32(src[i])


def fuse_sparse(vals: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """uint8 (M, n), normalised float32 (M,) -> float32 (n,) on the 0..255 scale."""
    out = np.empty(vals.shape[1], np.float32)
    _fuse_sparse(vals, np.ascontiguousarray(weights, np.float32).reshape(-1), out)
    return out


def fuse_sparse_numpy(vals, weights):
    w = np.asarray(weights, np.float32).reshape(-1)
    acc = np.zeros(vals.shape[1], np.float32)
    for m in range(vals.shape[0]):
        acc += w[m] * vals[m].astype(np.float32)
    return acc


@jit
def _threshold_sparse(fused, idx, thr, plane, bits, counts):
    flat = bits.reshape(-1)
    z, nxt = 0, plane  # idx is sorted: the plane of each voxel advances, no division
    for i in range(fused.shape[0]):
        if fused[i] > thr:
            j = idx[i]
            while j >= nxt:
                z += 1
                nxt += plane
            flat[j] = 1
            counts[z, 0] += 1


def _empty_mask(shape):
    dz, dy, dx = shape
    return np.zeros((dz, dy, dx), np.uint8), np.zeros((dz, 1), np.int64)


def threshold_sparse(fused: np.ndarray, idx: np.ndarray, thr255: float, shape) -> tuple[np.ndarray, np.ndarray]:
    """float32 (n,) fused values at ``idx`` of a box ``shape`` (dz, dy, dx) -> bits uint8 (dz, dy, dx) (bit 0 where
    ``fused > thr255``), counts int64 (dz, 1)."""
    bits, counts = _empty_mask(shape)
    _threshold_sparse(fused, idx, float(thr255), int(shape[1]) * int(shape[2]), bits, counts)
    return bits, counts


def threshold_sparse_numpy(fused, idx, thr255, shape):
    bits, counts = _empty_mask(shape)
    on = idx[fused > np.float64(thr255)]
    bits.reshape(-1)[on] = 1
    np.add.at(counts[:, 0], on // (int(shape[1]) * int(shape[2])), 1)
    return bits, counts


@jit
def _fuse_threshold_sparse(vals, w, idx, thr, plane, bits, counts):
    fused = np.empty(vals.shape[1], np.float32)
    _fuse_sparse(vals, w, fused)
    _threshold_sparse(fused, idx, thr, plane, bits, counts)


def fuse_threshold_sparse(vals, weights, idx, thr255: float, shape) -> tuple[np.ndarray, np.ndarray]:
    """``threshold_sparse(fuse_sparse(vals, weights), idx, thr255, shape)`` in one pass."""
    bits, counts = _empty_mask(shape)
    _fuse_threshold_sparse(vals, np.ascontiguousarray(weights, np.float32).reshape(-1), idx, float(thr255),
                           int(shape[1]) * int(shape[2]), bits, counts)
    return bits, counts


@jit
def _plane_max_sparse(fused, idx, plane, out):
    out[:] = 0
    for i in range(fused.shape[0]):
        z = idx[i] // plane
        if fused[i] > out[z, 0]:
            out[z, 0] = fused[i]


def plane_max_sparse(fused: np.ndarray, idx: np.ndarray, shape) -> np.ndarray:
    """float32 (dz, 1): the highest fused value over the active voxels of each plane (0 where none)."""
    out = np.empty((int(shape[0]), 1), np.float32)
    _plane_max_sparse(fused, idx, int(shape[1]) * int(shape[2]), out)
    return out


def plane_max_sparse_numpy(fused, idx, shape):
    out = np.zeros((int(shape[0]), 1), np.float32)
    np.maximum.at(out[:, 0], idx // (int(shape[1]) * int(shape[2])), fused)
    return out


@jit
def _row_span(row, lo, x0, x1):
    """(first, last) x with row[x] >= lo, widened by the span (x0, x1) found so far; (x0, x1) if none."""
    top = np.uint8(0)
    for x in range(row.shape[0]):  # a max reduction: vectorises, and most rows are background
        top = max(top, row[x])
    if top < lo:
        return x0, x1
    a = 0
    while row[a] < lo:
        a += 1
    e = row.shape[0] - 1
    while row[e] < lo:
        e -= 1
    return min(x0, a), max(x1, e)


@jit
def _active_box(pix, c, lo, truth):
    m_, d_, _, h_, w_ = pix.shape
    b = np.uint8(1 << c)
    z0, z1, y0, y1, x0, x1 = d_, -1, h_, -1, w_, -1
    for z in range(d_):
        for y in range(h_):
            ra, rb = w_, -1
            for m in range(m_):
                ra, rb = _row_span(pix[m, z, c, y], lo, ra, rb)
            trow = truth[z, y]
            any_t = np.uint8(0)
            for x in range(w_):
                any_t |= trow[x] & b
            if any_t:
                a = 0
                while not trow[a] & b:
                    a += 1
                e = w_ - 1
                while not trow[e] & b:
                    e -= 1
                ra, rb = min(ra, a), max(rb, e)
            if rb >= 0:
                z0, z1 = min(z0, z), max(z1, z)
                y0, y1 = min(y0, y), max(y1, y)
                x0, x1 = min(x0, ra), max(x1, rb)
    return z0, z1 + 1, y0, y1 + 1, x0, x1 + 1


def active_box(pix: np.ndarray, c: int, lo: int, truth: np.ndarray):
    """The box (z0, z1, y0, y1, x0, x1) of the voxels where some member of a uint8 stack (M, D, C, H, W)
    reaches ``lo`` in class ``c`` or the truth bit flags (D, H, W) hold class ``c``; None when there are none."""
    z0, z1, y0, y1, x0, x1 = _active_box(pix, c, lo, truth)
    return None if z1 <= z0 else (int(z0), int(z1), int(y0), int(y1), int(x0), int(x1))


def active_box_numpy(pix, c, lo, truth):
    on = (pix[:, :, c] >= lo).any(0) | ((truth >> c) & 1).astype(bool)
    zs = np.flatnonzero(on.any((1, 2)))
    if not zs.size:
        return None
    ys, xs = np.flatnonzero(on.any((0, 2))), np.flatnonzero(on.any((0, 1)))
    return int(zs[0]), int(zs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
