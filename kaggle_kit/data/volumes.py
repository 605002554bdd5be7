"""Assembly of per case-day volumes: image uint16 (D, H, W) and mask bit-flags uint8 (D, H, W).

Bit i of the mask is ``CLASSES[i]`` (bit 0 large bowel, bit 1 small bowel, bit 2 stomach).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import CLASSES, DataError, read_slice_png
from kaggle_kit.data.rle import rle_decode

__all__ = ["load_image_volume", "load_mask_volume", "mask_to_channels", "channels_to_mask"]


def load_image_volume(slices: pd.DataFrame) -> np.ndarray:
    """Read the PNGs of one case-day (rows of ``discover_split``, in slice order) into uint16 (D, H, W)."""
    slices = slices.sort_values("slice")
    h, w = int(slices["height"].iloc[0]), int(slices["width"].iloc[0])
    vol = np.empty((len(slices), h, w), np.uint16)
    for z, path in enumerate(slices["path"]):
        vol[z] = read_slice_png(path, (h, w))
    return vol


def load_mask_volume(slices: pd.DataFrame, wide: pd.DataFrame | None, labels_file=None) -> np.ndarray:
    """Bit-flag mask uint8 (D, H, W) of one case-day from wide labels (``labels_wide``; None -> empty).

    Every slice must have a label row (an unlabelled slice in a labelled split is an error naming its id,
    its image and ``labels_file``, the CSV ``wide`` came from).
    """
    slices = slices.sort_values("slice")
    h, w = int(slices["height"].iloc[0]), int(slices["width"].iloc[0])
    mask = np.zeros((len(slices), h, w), np.uint8)
    if wide is None:
        return mask
    for z, id_ in enumerate(slices["id"]):
        if id_ not in wide.index:
            src = labels_file or "the label file"
            img = f" (image {slices['path'].iloc[z]})" if "path" in slices else ""
            raise DataError(f"{src}: no rows for id {id_}{img}; every image of a "
                            "labelled split needs its three rows (empty segmentation = organ absent)")
        row = wide.loc[id_]
        for bit, cls in enumerate(CLASSES):
            rle = row[cls]
            if rle:
                try:
                    m = rle_decode(rle, (h, w))
                except ValueError as e:
                    raise DataError(f"{labels_file or 'labels'}: {id_} {cls}: {e} (image {h}x{w})") from None
                mask[z] |= m << bit
    return mask


def mask_to_channels(mask: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """Bit flags (..., H, W) -> uint8 (..., C, H, W) of 0/1 with C = n_classes on the class axis."""
    bits = np.arange(n_classes, dtype=np.uint8).reshape((n_classes,) + (1,) * 2)
    return ((mask[..., None, :, :] >> bits) & 1).astype(np.uint8)


def channels_to_mask(ch: np.ndarray) -> np.ndarray:
    """uint8 (..., C, H, W) of 0/1 (or bool) -> bit flags (..., H, W)."""
    c = ch.shape[-3]
    out = np.zeros(ch.shape[:-3] + ch.shape[-2:], np.uint8)
    for i in range(c):
        out |= (np.take(ch, i, axis=-3) != 0).astype(np.uint8) << i
    return out
