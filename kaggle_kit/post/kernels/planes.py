"""Plane-level steps: classifier gate, truncated-slice range, z smoothing (a plane is one (slice, class))."""
from __future__ import annotations

import numpy as np

from kaggle_kit.post.kernels._base import jit, clear_plane, drop_planes_numpy


@jit
def _gate(bits, counts, cls, cls_thr, min_pixels):
    use_cls = cls.shape[0] > 0
    for d in range(counts.shape[0]):
        for c in range(counts.shape[1]):
            n = counts[d, c]
            if n == 0:
                continue
            if n < min_pixels[c] or (use_cls and cls[d, c] < cls_thr[c]):
                clear_plane(bits, d, c)
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
    drop_planes_numpy(bits, counts, drop)



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


@jit
def _truncate(bits, counts, lo, hi):
    for d in range(counts.shape[0]):
        for c in range(counts.shape[1]):
            if counts[d, c] > 0 and (d < lo[c] or d > hi[c]):
                clear_plane(bits, d, c)
                counts[d, c] = 0


def truncate(bits, counts, lo, hi) -> None:
    """In place: zero class c on slices outside ``[lo[c], hi[c]]`` (from :func:`keep_range`)."""
    _truncate(bits, counts, np.asarray(lo, np.int64), np.asarray(hi, np.int64))


def truncate_numpy(bits, counts, lo, hi) -> None:
    z = np.arange(counts.shape[0])[:, None]
    drop_planes_numpy(bits, counts, (z < np.asarray(lo)[None]) | (z > np.asarray(hi)[None]))


# ------------------------------------------------------------------------------------------- z smoothing
@jit
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
                clear_plane(bits, d, c)
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
