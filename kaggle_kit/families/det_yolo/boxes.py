"""Boxes per slice: ground truth from the cache, post-processing of detections, and box recall.

A box table is a DataFrame indexed by (case_day, z) with int columns y0, y1, x0, x1: raw pixel coordinates,
end-exclusive, never empty (``0 <= y0 < y1 <= H``, ``0 <= x0 < x1 <= W``), one row per slice of each case-day
in slice order. That is what ``SliceDataset25D(crop="boxes", boxes=table)`` reads.

Ground-truth modes (``truth_boxes``):

- ``"organs"`` (default): the bounding box of every organ pixel of the slice (all classes), expanded by
  ``margin`` x the image size on each side. Slices without organs get the case-day's organ union (all slices)
  with the same margin; a case-day without any organ gets its body box (``dataset25d.body_box``).
  Needs labels (the train split).
- ``"body"``: the body of the slice (pixels above ``body_frac`` of the volume scale after a 5x5 blur),
  expanded by ``margin``; a blank slice gets the volume's body box. Works on any split.

Either way an empty result falls back to the full image.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...data.cache import Cache

__all__ = [
    "BOX_COLUMNS",
    "MODES",
    "box_recall",
    "boxes_frame",
    "expand_box",
    "finalise_boxes",
    "mask_box",
    "slice_body_box",
    "truth_boxes",
    "truth_boxes_volume",
]

BOX_COLUMNS = ["y0", "y1", "x0", "x1"]
MODES = ("organs", "body")


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (y0, y1, x0, x1), end-exclusive, of the non-zero pixels of a 2D array; None if empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def expand_box(box, hw: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """Grow a box by ``margin`` x (H, W) on each side (rounded up), clipped to the image."""
    y0, y1, x0, x1 = box
    H, W = hw
    my, mx = int(np.ceil(margin * H)), int(np.ceil(margin * W))
    return max(0, y0 - my), min(H, y1 + my), max(0, x0 - mx), min(W, x1 + mx)


def slice_body_box(sl: np.ndarray, vscale: float, frac: float = 0.1) -> tuple[int, int, int, int] | None:
    """Body box of one 2D slice: pixels above ``frac * vscale`` after a 5x5 mean filter (noise-robust)."""
    import cv2

    on = cv2.blur(np.asarray(sl, np.float32), (5, 5)) > frac * vscale
    return mask_box(on)


def truth_boxes_volume(img: np.ndarray, mask: np.ndarray | None, mode: str = "organs", margin: float = 0.05,
                       body_frac: float = 0.1) -> np.ndarray:
    """Ground-truth boxes of one case-day: int (D, 4) (y0, y1, x0, x1); see the module docstring.

    ``img``: uint16 (D, H, W); ``mask``: uint8 (D, H, W) bit flags (needed for ``organs``).
    """
    from ...data.dataset25d import body_box, volume_scale

    if mode not in MODES:
        raise KeyError(f"unknown box mode {mode!r}; options: {list(MODES)}")
    D, H, W = img.shape
    full = (0, H, 0, W)
    vol_body = None
    out = np.zeros((D, 4), np.int64)
    if mode == "organs":
        if mask is None:
            raise ValueError("mode 'organs' needs labels (train split); use mode 'body' for unlabelled data")
        boxes = [mask_box(np.asarray(mask[z])) for z in range(D)]
        found = [b for b in boxes if b is not None]
        if found:
            a = np.array(found)
            union = expand_box((a[:, 0].min(), a[:, 1].max(), a[:, 2].min(), a[:, 3].max()), (H, W), margin)
        else:
            union = body_box(img)
        for z, b in enumerate(boxes):
            out[z] = expand_box(b, (H, W), margin) if b is not None else union
    else:
        scale = volume_scale(img)
        for z in range(D):
            b = slice_body_box(img[z], scale, body_frac)
            if b is None:
                vol_body = vol_body or body_box(img)
                out[z] = vol_body
            else:
                out[z] = expand_box(b, (H, W), margin)
    bad = (out[:, 1] <= out[:, 0]) | (out[:, 3] <= out[:, 2])
    out[bad] = full
    return out


def boxes_frame(case_day: str, boxes: np.ndarray, **cols) -> pd.DataFrame:
    """(D, 4) boxes of one case-day -> rows case_day, z, y0, y1, x0, x1 (+ extra columns)."""
    df = pd.DataFrame(np.asarray(boxes, np.int64), columns=BOX_COLUMNS)
    df.insert(0, "z", np.arange(len(df)))
    df.insert(0, "case_day", case_day)
    for k, v in cols.items():
        df[k] = v
    return df


def truth_boxes(cache: Cache, split: str = "train", mode: str = "organs", margin: float = 0.05,
                body_frac: float = 0.1, case_days=None) -> pd.DataFrame:
    """Ground-truth boxes for every slice of ``split`` (or of ``case_days``), indexed by (case_day, z).

    Defaults (``organs``, 5 % margin) match the detector family's default config, so a 2.5D model trained on
    these crops sees the same kind of box the default detector predicts at test time.
    """
    cds = cache.case_days(split) if case_days is None else list(case_days)
    parts = []
    for cd in cds:
        img = cache.image(split, cd)
        mask = cache.mask(split, cd) if mode == "organs" else None
        parts.append(boxes_frame(cd, truth_boxes_volume(img, mask, mode, margin, body_frac)))
    if not parts:
        return pd.DataFrame(columns=BOX_COLUMNS, index=pd.MultiIndex.from_tuples([], names=["case_day", "z"]))
    return pd.concat(parts, ignore_index=True).set_index(["case_day", "z"])


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


def box_recall(cache: Cache, boxes: pd.DataFrame, case_days=None, split: str = "train") -> dict:
    """Share of organ pixels (any class) of ``case_days`` that lie inside their slice's box.

    Returns dict(recall, organ_pixels, inside, area_fraction (mean box area / image area over all slices),
    area_fraction_organ_slices (the same over slices with organs), case_days).
    """
    cds = list(dict.fromkeys(boxes.index.get_level_values(0))) if case_days is None else list(case_days)
    total = inside = 0
    area, area_org = [], []
    for cd in cds:
        m = cache.mask(split, cd)
        b = boxes.loc[cd].sort_index()[BOX_COLUMNS].to_numpy()
        D, H, W = m.shape
        if len(b) != D:
            raise ValueError(f"{cd}: {len(b)} boxes for {D} slices")
        for z in range(D):
            on = np.asarray(m[z]) != 0
            n = int(on.sum())
            y0, y1, x0, x1 = b[z]
            a = (y1 - y0) * (x1 - x0) / float(H * W)
            area.append(a)
            if n:
                total += n
                inside += int(on[y0:y1, x0:x1].sum())
                area_org.append(a)
    return {"recall": inside / total if total else float("nan"), "organ_pixels": int(total), "inside": int(inside),
            "area_fraction": float(np.mean(area)) if area else float("nan"),
            "area_fraction_organ_slices": float(np.mean(area_org)) if area_org else float("nan"),
            "case_days": len(cds)}
