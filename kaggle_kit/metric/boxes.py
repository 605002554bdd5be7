"""Box recall: how much of the organ area a box table keeps (the detector's OOF summary)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kaggle_kit.data.cache import Cache
from kaggle_kit.io.boxes import BOX_COLUMNS

__all__ = ["box_recall"]


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
