"""Post-processing of the detector's raw detections into one smoothed, non-empty box per slice.

The box table format and the ground-truth boxes live in :mod:`kaggle_kit.io.boxes` (shared with the families
that crop); this module holds only what turns YOLO outputs into such a table.
"""
from __future__ import annotations

import numpy as np

from kaggle_kit.io.boxes import expand_box

__all__ = ["finalise_boxes"]


def _running(a: np.ndarray, valid: np.ndarray, window: int, how: str) -> np.ndarray:
    """Per-coordinate running statistic over the valid rows within +-window//2 slices (invalid rows: NaN)."""
    D = len(a)
    out = np.full(a.shape, np.nan)
    h = window // 2
    for z in range(D):
        lo, hi = max(0, z - h), min(D, z + h + 1)
        sel = valid[lo:hi]
        if not valid[z] or not sel.any():
            continue
        w = a[lo:hi][sel]
        if how == "median":
            out[z] = np.median(w, axis=0)
        else:  # envelope: the union of the neighbours' boxes
            out[z] = [w[:, 0].min(), w[:, 1].max(), w[:, 2].min(), w[:, 3].max()]
    return out


def finalise_boxes(raw: np.ndarray, scores: np.ndarray, hw: tuple[int, int], conf: float = 0.25,
                   smooth: str = "median", window: int = 5, margin: float = 0.05,
                   fallback_box: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Detections of one case-day -> one non-empty int box per slice, smoothed along z.

    Args:
        raw: float (D, 4) detected boxes (y0, y1, x0, x1) in raw pixels (any values where not detected).
        scores: float (D,) detection scores; a slice counts as detected when ``score >= conf``.
        hw: raw image (H, W).
        smooth: ``median`` (running median of each coordinate over the detected slices within ``window``),
            ``envelope`` (running union) or ``none``.
        margin: added on each side after smoothing, as a fraction of (H, W).
        fallback_box: for slices without a detection: default the union of the case-day's detected boxes
            (with margin); the caller passes the volume's body box for case-days with no detection at all.

    Returns:
        (boxes int64 (D, 4), detected bool (D,)).
    """
    if smooth not in ("median", "envelope", "none"):
        raise KeyError(f"unknown smoothing {smooth!r}; options: ['median', 'envelope', 'none']")
    H, W = hw
    raw = np.asarray(raw, np.float64).reshape(-1, 4)
    det = np.asarray(scores) >= conf
    sm = raw if smooth == "none" else _running(raw, det, max(1, int(window)), smooth)
    out = np.zeros((len(raw), 4), np.int64)
    for z in np.flatnonzero(det):
        y0, y1, x0, x1 = sm[z]
        b = (int(np.floor(max(0.0, y0))), int(np.ceil(min(H, y1))), int(np.floor(max(0.0, x0))), int(np.ceil(min(W, x1))))
        out[z] = expand_box(b, hw, margin)
    if det.any():
        d = out[det]
        union = (d[:, 0].min(), d[:, 1].max(), d[:, 2].min(), d[:, 3].max())
    else:
        union = None
    fb = union if union is not None else (fallback_box or (0, H, 0, W))
    out[~det] = fb
    bad = (out[:, 1] <= out[:, 0]) | (out[:, 3] <= out[:, 2])
    out[bad] = (0, H, 0, W)
    return out, det
