"""Box tables (one crop box per slice): the format, ground-truth boxes from the cache, the detector's tables on disk.

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

import json
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import expand_box  # noqa: F401  (part of this module's API)

__all__ = [
    "BOX_COLUMNS",
    "MODES",
    "boxes_frame",
    "boxes_path",
    "load_boxes",
    "load_boxes_for",
    "read_boxes_manifest",
    "train_boxes_for",
    "truth_boxes_matching",
    "expand_box",
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
    from kaggle_kit.data.dataset25d import body_box, volume_scale

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


# ----------------------------------------------------------------- the detector's box tables on disk
_SPLIT_ALIAS = {"train": "oof", "oof": "oof", "test": "test"}


def boxes_path(pred_root, exp: str, split: str) -> Path:
    """``<pred_root>/<exp>/<split>/boxes.csv``; ``split`` "train" is read as "oof" (the 2.5D family passes
    the cache split)."""
    if split not in _SPLIT_ALIAS:
        raise KeyError(f"unknown split {split!r}; options: ['oof', 'test'] ('train' = 'oof')")
    return Path(pred_root) / exp / _SPLIT_ALIAS[split] / "boxes.csv"


def load_boxes(pred_root, exp: str, split: str) -> pd.DataFrame:
    """The detector's boxes of ``split``: DataFrame indexed by (case_day, z) with int y0, y1, x0, x1 (raw
    pixels, end-exclusive, non-empty), float score and int detected (0 = fallback box)."""
    p = boxes_path(pred_root, exp, split)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no detector boxes for experiment {exp!r}, split {_SPLIT_ALIAS[split]!r}; "
                                f"run tools/predict.py <det config> --split {_SPLIT_ALIAS[split]}")
    df = pd.read_csv(p)
    missing = [c for c in ["case_day", "z", *BOX_COLUMNS] if c not in df]
    if missing:
        raise ValueError(f"{p}: missing columns {missing}")
    df[BOX_COLUMNS + ["z"]] = df[BOX_COLUMNS + ["z"]].astype(np.int64)
    bad = (df["y1"] <= df["y0"]) | (df["x1"] <= df["x0"]) | (df["y0"] < 0) | (df["x0"] < 0)
    if bad.any():
        raise ValueError(f"{p}: {int(bad.sum())} empty or negative box(es), e.g. {df[bad].iloc[0].to_dict()}")
    return df.set_index(["case_day", "z"]).sort_index()


def read_boxes_manifest(pred_root, exp: str, split: str) -> dict:
    p = boxes_path(pred_root, exp, split).with_name("boxes.json")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no boxes manifest")
    return json.loads(p.read_text())


def truth_boxes_matching(cache: Cache, split: str, pred_root, exp: str) -> pd.DataFrame:
    """Ground-truth boxes built like detector experiment ``exp``'s predictions (its box mode, body threshold and
    predict margin, read from its ``boxes.json``): the crops a 2.5D model should train on when it will be fed
    that experiment's boxes. ``truth_boxes(cache, split)`` with no arguments matches the default config."""
    man = read_boxes_manifest(pred_root, exp, "oof")
    d = man["data"]
    return truth_boxes(cache, split, mode=d["mode"], margin=man["params"]["margin"], body_frac=d["body_frac"])


def train_boxes_for(cfg: dict, cache: Cache) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(train, val) crop tables of a family config at training time; (None, None) unless ``data.crop == "boxes"``.

    train: ground-truth boxes of every train case-day built like detector experiment ``data.boxes_exp``'s
    (``truth_boxes_matching``: same mode, body threshold and margin; the dataset jitters them). val: that
    detector's OOF boxes, the ones the OOF maps will be predicted with, so the validation score measures
    the crops the model will see (ground truth for case-days the detector has not predicted). Both need the
    detector's OOF boxes (``boxes.json`` + ``boxes.csv``): train and predict the detector (``--split oof``)
    before any member that crops with it.
    """
    if cfg["data"]["crop"] != "boxes":
        return None, None
    exp = cfg["data"]["boxes_exp"]
    if not exp:
        raise ValueError("data.crop is 'boxes' but data.boxes_exp is not set: name the detector experiment")
    p = boxes_path(cfg["pred_root"], exp, "oof").with_name("boxes.json")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no OOF boxes of detector experiment {exp!r} (data.boxes_exp). A crop=boxes "
                                f"member trains on ground-truth boxes made like that detector's: train it and run "
                                f"tools/predict.py <det config> --split oof first")
    truth = truth_boxes_matching(cache, "train", cfg["pred_root"], exp)
    det = load_boxes(cfg["pred_root"], exp, "oof")[BOX_COLUMNS]
    have = set(det.index.get_level_values(0))
    rest = truth[~truth.index.get_level_values(0).isin(have)]  # case-days the detector has no OOF boxes for
    return truth, pd.concat([det, rest]).sort_index()


def load_boxes_for(cfg: dict, split: str) -> pd.DataFrame | None:
    """The detector boxes a family config crops with (``data.crop == "boxes"``: experiment ``data.boxes_exp``
    under ``pred_root``), or None when the config does not crop."""
    if cfg["data"]["crop"] != "boxes":
        return None
    return load_boxes(cfg["pred_root"], cfg["data"]["boxes_exp"], split)
