"""Fusion of member maps and thresholding: weighted sum of uint8 maps in float32, member by member."""
from __future__ import annotations

import numpy as np

from kaggle_kit.post.kernels._base import jit, check_stack

# ----------------------------------------------------------------------------------------------- fusion
@jit
def _fuse_row(stack, w, d, c, y, row):
    """row[:] = sum over members of w[m, c] * stack[m, d, c, y], accumulated in float32 in member order (the one
    summation every fusion kernel shares, so they agree bit for bit with each other and with fuse_numpy)."""
    row[:] = 0
    for m in range(stack.shape[0]):
        wm = w[m, c]
        if wm == 0:
            continue
        src = stack[m, d, c, y]
        for x in range(row.shape[0]):
            row[x] += wm * np.float32(src[x])


@jit
def _fuse(stack, w, out):
    m_, d_, c_, h_, w_ = stack.shape
    for d in range(d_):
        for c in range(c_):
            for y in range(h_):
                _fuse_row(stack, w, d, c, y, out[d, c, y])


def fuse(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted fusion: uint8 (M, D, C, H, W), float32 (M, C) -> float32 (D, C, H, W) on the 0..255 scale."""
    stack, weights = check_stack(stack, weights)
    out = np.empty(stack.shape[1:], np.float32)
    _fuse(stack, weights, out)
    return out


def fuse_numpy(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    stack, weights = check_stack(stack, weights)
    acc = np.zeros(stack.shape[1:], np.float32)
    for m in range(stack.shape[0]):
        acc += weights[m][None, :, None, None] * stack[m].astype(np.float32)  # w == 0 adds +0: same as skipping
    return acc


@jit
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


@jit
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
                _fuse_row(stack, w, d, c, y, row)
                out = bits[d, y]
                for x in range(w_):  # branch-free: vectorises
                    v = np.uint8(row[x] > t)
                    out[x] |= v * b
                    n += v
            counts[d, c] = n


def fuse_threshold(stack: np.ndarray, weights: np.ndarray, thr255: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fusion and thresholding in one pass (no float map in memory): equals ``threshold(fuse(...))``."""
    stack, weights = check_stack(stack, weights)
    _, d, c, h, w = stack.shape
    bits, counts = np.empty((d, h, w), np.uint8), np.empty((d, c), np.int64)
    _fuse_threshold(stack, weights, np.asarray(thr255, np.float64), bits, counts)
    return bits, counts


def fuse_threshold_numpy(stack, weights, thr255):
    return threshold_numpy(fuse_numpy(stack, weights), thr255)


@jit
def _fuse_plane_max(stack, w, out):
    m_, d_, c_, h_, w_ = stack.shape
    row = np.empty(w_, np.float32)
    for d in range(d_):
        for c in range(c_):
            best = np.float32(0.0)  # fused values are >= 0 (weights and maps are)
            for y in range(h_):
                _fuse_row(stack, w, d, c, y, row)
                for x in range(w_):
                    if row[x] > best:
                        best = row[x]
            out[d, c] = best


def fuse_plane_max(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The highest fused value of every plane, with no float map in memory: uint8 (M, D, C, H, W), float32
    (M, C) -> float32 (D, C) on the 0..255 scale, equal to ``fuse(...).max((2, 3))`` bit for bit (0 for an
    empty plane)."""
    stack, weights = check_stack(stack, weights)
    out = np.empty(stack.shape[1:3], np.float32)
    _fuse_plane_max(stack, weights, out)
    return out


def fuse_plane_max_numpy(stack, weights):
    return np.max(fuse_numpy(stack, weights), axis=(2, 3), initial=np.float32(0.0))
