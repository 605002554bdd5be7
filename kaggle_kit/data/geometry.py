"""Raw slice geometry <-> model input geometry, with an exact inverse for predictions.

A ``SliceGeometry`` maps a raw (H, W) slice to a model canvas (h, w): optional crop to a box, then
``resize`` (stretch to the canvas), ``letterbox`` (keep aspect, scale to fit, pad) or ``pad`` (no scaling
unless the crop is larger than the canvas, then letterbox), centred. ``forward`` applies it to images or
masks, ``inverse`` maps probabilities back to raw geometry (zero outside the box).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SliceGeometry", "MODES", "pad_to_multiple"]

MODES = ("resize", "letterbox", "pad")


def pad_to_multiple(n: int, m: int = 32) -> int:
    return int(np.ceil(n / m) * m)


@dataclass(frozen=True)
class SliceGeometry:
    raw_hw: tuple[int, int]
    out_hw: tuple[int, int]
    box: tuple[int, int, int, int] | None = None  # (y0, y1, x0, x1) in raw pixels, end-exclusive
    mode: str = "resize"

    def __post_init__(self):
        if self.mode not in MODES:
            raise KeyError(f"unknown geometry mode {self.mode!r}; options: {MODES}")
        y0, y1, x0, x1 = self.crop
        if not (0 <= y0 < y1 <= self.raw_hw[0] and 0 <= x0 < x1 <= self.raw_hw[1]):
            raise ValueError(f"box {self.box} is empty or outside the raw image {self.raw_hw}")

    @property
    def crop(self) -> tuple[int, int, int, int]:
        return self.box if self.box is not None else (0, self.raw_hw[0], 0, self.raw_hw[1])

    @property
    def placement(self) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the scaled crop on the canvas."""
        y0, y1, x0, x1 = self.crop
        ch, cw = y1 - y0, x1 - x0
        oh, ow = self.out_hw
        if self.mode == "resize":
            return 0, 0, oh, ow
        s = min(oh / ch, ow / cw)
        if self.mode == "pad":
            s = min(s, 1.0)
        h, w = max(1, round(ch * s)), max(1, round(cw * s))
        return (oh - h) // 2, (ow - w) // 2, h, w

    def forward(self, arr: np.ndarray, interp: str = "linear") -> np.ndarray:
        """(H, W) or (H, W, K) raw -> (h, w) or (h, w, K) canvas (zeros where padded)."""
        import cv2

        y0, y1, x0, x1 = self.crop
        a = arr[y0:y1, x0:x1]
        top, left, h, w = self.placement
        flag = cv2.INTER_LINEAR if interp == "linear" else cv2.INTER_NEAREST
        if a.shape[:2] != (h, w):
            a = _resize(a, (h, w), flag)
        out = np.zeros(tuple(self.out_hw) + arr.shape[2:], dtype=a.dtype)
        out[top:top + h, left:left + w] = a
        return out

    def inverse(self, prob: np.ndarray) -> np.ndarray:
        """(C, h, w) canvas probabilities (float or uint8) -> (C, H, W) raw geometry, zero outside the box."""
        import cv2

        top, left, h, w = self.placement
        y0, y1, x0, x1 = self.crop
        p = prob[:, top:top + h, left:left + w]
        p = np.ascontiguousarray(p.transpose(1, 2, 0))
        if (h, w) != (y1 - y0, x1 - x0):
            p = _resize(p, (y1 - y0, x1 - x0), cv2.INTER_LINEAR)
        if p.ndim == 2:
            p = p[:, :, None]
        out = np.zeros((prob.shape[0],) + tuple(self.raw_hw), dtype=prob.dtype)
        out[:, y0:y1, x0:x1] = p.transpose(2, 0, 1)
        return out


def _resize(a: np.ndarray, hw: tuple[int, int], flag: int) -> np.ndarray:
    """cv2.resize for any channel count (cv2 handles at most 512; chunk beyond) and any dtype cv2 takes."""
    import cv2

    if a.ndim == 2 or a.shape[2] <= 4:
        r = cv2.resize(a, (hw[1], hw[0]), interpolation=flag)
        return r[:, :, None] if a.ndim == 3 and r.ndim == 2 else r
    parts = [cv2.resize(a[:, :, i:i + 4], (hw[1], hw[0]), interpolation=flag) for i in range(0, a.shape[2], 4)]
    parts = [p[:, :, None] if p.ndim == 2 else p for p in parts]
    return np.concatenate(parts, axis=2)
