"""Bit-flag masks <-> per-class channels.

The cache, the maps' thresholded masks and the metric all hold masks as uint8 bit flags (bit c = class c:
bit 0 large bowel, bit 1 small bowel, bit 2 stomach); the networks want one 0/1 channel per class.
"""
from __future__ import annotations

import numpy as np

__all__ = ["bits_to_channels", "channels_to_bits"]


def channels_to_bits(ch: np.ndarray, axis: int = 0) -> np.ndarray:
    """0/1 (or bool) channels with the class axis ``axis`` (C, ...) -> uint8 bit flags (...) (bit c = channel c)."""
    ch = np.moveaxis(np.asarray(ch), axis, 0)
    if ch.shape[0] > 8:
        raise ValueError(f"{ch.shape[0]} classes do not fit uint8 bit flags")
    out = np.zeros(ch.shape[1:], np.uint8)
    for c in range(ch.shape[0]):
        out |= (ch[c] != 0).astype(np.uint8) << c
    return out


def bits_to_channels(bits: np.ndarray, n_classes: int, axis: int = 0) -> np.ndarray:
    """uint8 bit flags (...) -> uint8 0/1 channels with the class axis at ``axis`` ((C, ...) by default;
    ``axis=-1`` gives (..., C))."""
    bits = np.asarray(bits)
    ch = (bits[..., None] >> np.arange(n_classes, dtype=np.uint8)) & 1
    return np.moveaxis(ch.astype(np.uint8), -1, axis)
