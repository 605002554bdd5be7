"""Validation metrics for the mmengine loop.

``SegValMetric``: thresholds each slice's (or, for 3D, each volume's) probabilities at 0.5 on the
training canvas, reassembles the validation case-days in slice order and scores them with the competition metric (Dice per (slice, class)
+ 3D Hausdorff per (case-day, class), at canvas resolution: close to, not equal to, the raw-geometry
score that tools/predict.py + tools/score.py give). ``ClsValMetric``: per-class ROC-AUC and
precision/recall at 0.5 for slice classifiers.
"""
from __future__ import annotations

import numpy as np
from mmengine.evaluator import BaseMetric

from kaggle_kit.data.bitmask import channels_to_bits
from kaggle_kit.data.raw import CLASSES
from kaggle_kit.metric.presence import roc_auc
from kaggle_kit.metric.scorer import Scorer

__all__ = ["SegValMetric", "ClsValMetric", "roc_auc", "scorer_metrics"]


class _ThresholdMetric(BaseMetric):
    default_prefix = "val"

    def __init__(self, threshold: float = 0.5, **kw):
        super().__init__(**kw)
        self.threshold = threshold


class SegValMetric(_ThresholdMetric):
    """The competition metric of thresholded validation predictions, in training geometry.

    ``volumes=False`` (2.5D): samples are slices (``prob`` (C, h, w), ``case_day``, ``z``), reassembled
    into case-days in slice order; ``volumes=True`` (3D): samples are whole case-days (``prob`` (C, d, h, w)).
    """

    def __init__(self, threshold: float = 0.5, volumes: bool = False, **kw):
        super().__init__(threshold, **kw)
        self.volumes = volumes

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            p = channels_to_bits(s["prob"].float().numpy() > self.threshold)
            self.results.append((s["case_day"], s.get("z", 0), p, channels_to_bits(s["mask"].numpy())))

    def compute_metrics(self, results) -> dict:
        scorer = Scorer()
        if self.volumes:
            for cd, _, p, t in results:
                scorer.add(cd, p, t)
            return scorer_metrics(scorer)
        by_cd: dict[str, list] = {}
        for cd, z, p, t in results:
            by_cd.setdefault(cd, []).append((z, p, t))
        for cd, items in by_cd.items():
            items.sort(key=lambda r: r[0])
            scorer.add(cd, np.stack([r[1] for r in items]), np.stack([r[2] for r in items]))
        return scorer_metrics(scorer)


def scorer_metrics(scorer) -> dict:
    """The validation metrics logged by every segmentation family: score, dice, hausdorff, dice per class."""
    r = scorer.result()
    out = {"score": float(r["score"]), "dice": float(r["dice"]), "hausdorff": float(r["hausdorff"])}
    for c in CLASSES:
        if c in r.get("per_class", {}):
            out[f"dice_{c}"] = float(r["per_class"][c]["dice"])
    return out


class ClsValMetric(_ThresholdMetric):
    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append((s["prob"].float().numpy().reshape(-1), s["presence"].numpy().reshape(-1)))

    def compute_metrics(self, results) -> dict:
        p = np.stack([r[0] for r in results])
        y = np.stack([r[1] for r in results]) > 0.5
        out = {}
        aucs = []
        for i, c in enumerate(CLASSES):
            auc = roc_auc(y[:, i], p[:, i])
            pred = p[:, i] > self.threshold
            tp = float((pred & y[:, i]).sum())
            out[f"auc_{c}"] = auc
            out[f"precision_{c}"] = tp / max(float(pred.sum()), 1.0)
            out[f"recall_{c}"] = tp / max(float(y[:, i].sum()), 1.0)
            aucs.append(auc)
        out["score"] = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else 0.0
        return out
