"""Run-length encoding in the competition's form.

Pairs ``start length``; starts are 1-indexed positions in the row-major (C-order) flatten of an (H, W)
mask; pairs are sorted, lengths positive, runs non-overlapping. An empty mask encodes to ``""``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["rle_decode", "rle_encode", "rle_parse", "is_empty_rle"]


def is_empty_rle(rle) -> bool:
    """True for ``""``, whitespace, ``None`` and NaN (what pandas reads for an empty CSV cell)."""
    if rle is None:
        return True
    if isinstance(rle, float):
        return math.isnan(rle)
    return not str(rle).strip()


def rle_parse(rle, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate an RLE string and return 0-based ``starts`` and ``lengths`` (int64 arrays).

    Raises ValueError naming the problem: odd token count, non-integer token, start < 1, length < 1,
    a run beyond ``n_pixels`` or runs that are unsorted or overlapping.
    """
    if is_empty_rle(rle):
        z = np.zeros(0, np.int64)
        return z, z
    if not isinstance(rle, str):
        raise ValueError(f"RLE must be a string, got {type(rle).__name__}")
    tokens = rle.split()
    if len(tokens) % 2:
        raise ValueError(f"RLE has an odd number of tokens ({len(tokens)}); expected 'start length' pairs")
    values = np.empty(len(tokens), np.int64)
    for i, tok in enumerate(tokens):
        try:
            values[i] = int(tok)
        except ValueError:
            raise ValueError(f"RLE token {i} ({tok!r}) is not an integer") from None
    starts, lengths = values[0::2] - 1, values[1::2]
    bad = np.flatnonzero(starts < 0)
    if bad.size:
        raise ValueError(f"RLE start {starts[bad[0]] + 1} (pair {bad[0]}) is < 1; starts are 1-indexed")
    bad = np.flatnonzero(lengths < 1)
    if bad.size:
        raise ValueError(f"RLE length {lengths[bad[0]]} (pair {bad[0]}) is < 1")
    ends = starts + lengths
    bad = np.flatnonzero(ends > n_pixels)
    if bad.size:
        i = bad[0]
        raise ValueError(
            f"RLE run {starts[i] + 1}+{lengths[i]} (pair {i}) runs beyond the mask's {n_pixels} pixels"
        )
    bad = np.flatnonzero(starts[1:] < ends[:-1])
    if bad.size:
        i = bad[0] + 1
        raise ValueError(
            f"RLE runs are unsorted or overlapping: pair {i} starts at {starts[i] + 1} "
            f"before the previous run ends at {ends[i - 1]}"
        )
    return starts, lengths


def rle_decode(rle, shape: tuple[int, int]) -> np.ndarray:
    """Decode an RLE string into a uint8 (H, W) mask of 0/1."""
    h, w = int(shape[0]), int(shape[1])
    starts, lengths = rle_parse(rle, h * w)
    # +1 at each run start, -1 after each run end, then a cumulative sum: O(H*W) with no Python loop.
    delta = np.zeros(h * w + 1, np.int8)
    delta[starts] += 1
    np.subtract.at(delta, starts + lengths, 1)
    return np.cumsum(delta[:-1], dtype=np.int8).astype(np.uint8).reshape(h, w)


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2D mask (any dtype; non-zero is foreground) as an RLE string; ``""`` when empty."""
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2D (H, W) mask, got shape {mask.shape}")
    flat = np.ascontiguousarray(mask).reshape(-1) != 0
    if not flat.any():
        return ""
    padded = np.zeros(flat.size + 2, np.int8)
    padded[1:-1] = flat
    edges = np.flatnonzero(np.diff(padded))  # alternating run starts (0-based) and run ends
    starts, ends = edges[0::2], edges[1::2]
    out = np.empty(edges.size, np.int64)
    out[0::2] = starts + 1
    out[1::2] = ends - starts
    return " ".join(map(str, out.tolist()))
