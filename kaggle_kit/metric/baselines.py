"""Reference baselines every model must beat, scored with the competition metric on OOF case-days.

- ``empty``: no mask anywhere.
- ``intensity``: per class, the pixels whose volume-normalised intensity lies in that class's central
  intensity range (10th-90th percentile of its pixels on the training case-days), inside the slice range
  where the class appeared in training (relative z), cleaned by nothing else. It uses no model at all:
  what a threshold on the image alone achieves.
"""
from __future__ import annotations

import numpy as np

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import volume_scale
from kaggle_kit.data.raw import CLASSES

__all__ = ["empty_baseline", "intensity_baseline"]


def empty_baseline(cache: Cache, case_days, metric="default") -> dict:
    from kaggle_kit.metric.scorer import Scorer

    s = Scorer(metric) if metric != "default" else Scorer()
    for cd in case_days:
        t = np.asarray(cache.mask("train", cd))
        s.add(cd, np.zeros_like(t), t)
    return s.result()


def _fit_intensity(cache: Cache, case_days, pct=(10, 90)):
    vals = {c: [] for c in range(len(CLASSES))}
    zs = {c: [] for c in range(len(CLASSES))}
    for cd in case_days:
        img = cache.image("train", cd)
        m = np.asarray(cache.mask("train", cd))
        x = np.asarray(img, np.float32) / volume_scale(img)
        D = len(m)
        for c in range(len(CLASSES)):
            on = ((m >> c) & 1).astype(bool)
            if on.any():
                vals[c].append(x[on][:: max(1, on.sum() // 20000)])
                zz = np.flatnonzero(on.reshape(D, -1).any(1)) / max(D - 1, 1)
                zs[c].append((zz.min(), zz.max()))
    ranges = {}
    for c in vals:
        if vals[c]:
            v = np.concatenate(vals[c])
            z = np.array(zs[c])
            ranges[c] = (*np.percentile(v, pct), float(np.median(z[:, 0])), float(np.median(z[:, 1])))
    return ranges


def intensity_baseline(cache: Cache, train_case_days, eval_case_days, metric="default") -> dict:
    from kaggle_kit.metric.scorer import Scorer

    ranges = _fit_intensity(cache, train_case_days)
    s = Scorer(metric) if metric != "default" else Scorer()
    for cd in eval_case_days:
        img = cache.image("train", cd)
        x = np.asarray(img, np.float32) / volume_scale(img)
        D = len(x)
        zrel = (np.arange(D) / max(D - 1, 1))[:, None, None]
        pred = np.zeros(x.shape, np.uint8)
        for c, (lo, hi, z0, z1) in ranges.items():
            pred |= (((x >= lo) & (x <= hi) & (zrel >= z0) & (zrel <= z1)).astype(np.uint8) << c)
        s.add(cd, pred, np.asarray(cache.mask("train", cd)))
    return s.result()
