"""Shared pieces of the post-processing kernels: the jit decorator, weight normalisation, plane counts,
the flat/word views of a bit-flag volume and the run scanner (see the package docstring for conventions)."""
from __future__ import annotations

import numba as nb
import numpy as np

jit = nb.njit(cache=True, nogil=True)


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


def flat_words(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat uint8 view of a C-contiguous bit-flag volume and a uint64 view of its first 8*floor(n/8) bytes.

    The kernels test 8 pixels at once on the word view to skip background quickly; both are views, so an
    in-place kernel writes straight into ``bits``.
    """
    if bits.dtype != np.uint8 or not bits.flags.c_contiguous:
        raise ValueError(f"bits must be a C-contiguous uint8 (D, H, W) array, got {bits.dtype}")
    flat = bits.reshape(-1)
    return flat, flat[: flat.size // 8 * 8].view(np.uint64)


def check_stack(stack, weights):
    if stack.dtype != np.uint8 or stack.ndim != 5:
        raise ValueError(f"stack must be uint8 (M, D, C, H, W), got {stack.dtype} {stack.shape}")
    m, _, c = stack.shape[:3]
    if weights.shape != (m, c):
        raise ValueError(f"weights shape {weights.shape} does not match (members, classes) = {(m, c)}")
    return np.ascontiguousarray(stack), np.ascontiguousarray(weights, np.float32)


@jit
def scan_runs(flat, words, start, end, b, b64, rs, re, n):
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


@jit
def bit_masks(c):
    return np.uint8(1 << c), np.uint64(0x0101010101010101) * np.uint64(1 << c), np.uint8(~(1 << c) & 0xFF)


@jit
def find_root(parent, k):
    while parent[k] != k:
        parent[k] = parent[parent[k]]  # path halving
        k = parent[k]
    return k




@jit
def clear_plane(bits, d, c):
    keep = np.uint8(~(1 << c) & 0xFF)
    plane = bits[d]
    for y in range(plane.shape[0]):
        for x in range(plane.shape[1]):
            plane[y, x] &= keep



def drop_planes_numpy(bits, counts, drop):
    for c in range(counts.shape[1]):
        dz = drop[:, c] & (counts[:, c] > 0)
        bits[dz] &= np.uint8(~(1 << c) & 0xFF)
        counts[dz, c] = 0



def conn(connectivity) -> bool:
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    return connectivity == 8


