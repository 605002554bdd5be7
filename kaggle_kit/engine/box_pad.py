"""Learning a crop member's box pad (``data.box_pad: auto``) from the detector's OOF boxes of the training
folds: the pad that makes a share of their case-days' boxes hold every organ pixel. Training-time only; the
learnt number is stored in the checkpoint's meta, so OOF, test and the notebook crop alike."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kaggle_kit.data.cache import Cache
from kaggle_kit.io.boxes import BOX_COLUMNS, load_boxes

__all__ = ["AUTO_PAD_MAX", "AUTO_PAD_QUANTILE", "cover_pads", "resolve_box_pad"]

AUTO_PAD_QUANTILE = 0.9  # box_pad "auto": cover this share of the training folds' case-days entirely
AUTO_PAD_MAX = 0.15      # ... but never grow a box by more than this x (H, W) per side


def cover_pads(boxes: pd.DataFrame, cache: Cache, split: str = "train", scope: str = "slice") -> pd.Series:
    """Per case-day of ``boxes`` (a box table): the smallest pad (fraction of H and W per side, as
    ``expand_box`` takes it) that makes its boxes hold every organ pixel of its slices; 0 where they already do.
    ``scope`` "case_day" measures the union box of each case-day's rows (``box_scope: case_day``)."""
    from kaggle_kit.data.dataset25d import union_boxes_per_case_day

    if scope == "case_day":
        boxes = union_boxes_per_case_day(boxes)
    out = {}
    for cd in boxes.index.get_level_values(0).unique():
        b = boxes.loc[cd].sort_index()[BOX_COLUMNS].to_numpy()
        m = np.asarray(cache.mask(split, cd)) != 0  # (D, H, W)
        D, H, W = m.shape
        if len(b) != D:
            raise ValueError(f"{cd}: {len(b)} box rows for {D} slices")
        rows, cols = m.any(2), m.any(1)
        has = rows.any(1)
        if not has.any():
            out[cd] = 0.0
            continue
        ry0 = rows.argmax(1)
        ry1 = H - rows[:, ::-1].argmax(1)
        cx0 = cols.argmax(1)
        cx1 = W - cols[:, ::-1].argmax(1)
        need_y = np.maximum.reduce([b[:, 0] - ry0, ry1 - b[:, 1], np.zeros(D, np.int64)]) / H
        need_x = np.maximum.reduce([b[:, 2] - cx0, cx1 - b[:, 3], np.zeros(D, np.int64)]) / W
        out[cd] = float(np.maximum(need_y, need_x)[has].max())
    return pd.Series(out, dtype=float, name="pad")


def resolve_box_pad(cfg: dict, cache: Cache, fold) -> dict:
    """``cfg`` itself, or a copy with ``data.box_pad: auto`` replaced by a number learnt from the detector's OOF
    boxes (experiment ``data.boxes_exp``) of the training folds' case-days: the ``AUTO_PAD_QUANTILE`` quantile of
    their ``cover_pads`` (capped at ``AUTO_PAD_MAX``). The number goes into the checkpoint's meta, so OOF, test
    and the notebook crop alike; fold ``fold``'s own labels are not read."""
    import copy

    from kaggle_kit.data.dataset25d import fold_case_days

    d = cfg["data"]
    if d.get("box_pad") != "auto":
        return cfg
    if d["crop"] != "boxes":
        raise ValueError("data.box_pad 'auto' needs data.crop 'boxes' (it is learnt from the detector's OOF boxes)")
    det = load_boxes(cfg["pred_root"], d["boxes_exp"], "oof")[BOX_COLUMNS]
    cds = set(fold_case_days(cache, fold, "train")) & set(det.index.get_level_values(0))
    if not cds:
        raise ValueError(f"data.box_pad 'auto': detector {d['boxes_exp']!r} has no OOF boxes for the case-days of "
                         f"fold {fold}'s training folds")
    pads = cover_pads(det[det.index.get_level_values(0).isin(cds)], cache, "train", d.get("box_scope", "slice"))
    out = copy.deepcopy(cfg)
    out["data"]["box_pad"] = round(min(AUTO_PAD_MAX, float(np.quantile(pads.to_numpy(), AUTO_PAD_QUANTILE))), 4)
    print(f"[boxes] data.box_pad auto -> {out['data']['box_pad']} (quantile {AUTO_PAD_QUANTILE} of {len(pads)} "
          f"training case-days' cover pads; max {pads.max():.4f})", flush=True)
    return out
