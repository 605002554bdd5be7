"""Submission RLE encoding of every (slice, class) plane of a bit-flag volume in one pass (the codec
itself, decode and per-mask encode, is ``kaggle_kit.data.rle``)."""
from __future__ import annotations

import numpy as np

from kaggle_kit.post.kernels._base import jit, bit_masks, flat_words, plane_counts, scan_runs

# --------------------------------------------------------------------------------------------------- RLE
@jit
def _n_digits(v):
    n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


@jit
def _put_int(buf, pos, v):
    n = _n_digits(v)
    for i in range(n - 1, -1, -1):
        buf[pos + i] = 48 + v % 10
        v //= 10
    return pos + n


@jit
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
                b, b64, _ = bit_masks(c)
                n = scan_runs(flat, words, d * n_, (d + 1) * n_, b, b64, rs, re, n)
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
    buf, off = _rle_planes(*flat_words(bits), d, n, counts)
    text = buf.tobytes().decode("ascii")
    off = off.tolist()
    return [text[off[k]:off[k + 1]] for k in range(d * n_classes)]


def rle_encode_planes_numpy(bits: np.ndarray, n_classes: int, counts=None) -> list[str]:
    from kaggle_kit.data.rle import rle_encode

    return [rle_encode((bits[d] >> c) & 1) for d in range(bits.shape[0]) for c in range(n_classes)]
