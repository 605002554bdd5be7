"""Prediction of the 3D family: sliding-window probabilities mapped back to raw geometry and slice count.

Works from self-describing inference checkpoints only (no YAML): the meta rebuilds the net, the
training geometry and the normalisation. Per case-day: normalise, resample to the training geometry,
Gaussian-blended sliding window (window = training patch unless given, configurable overlap), optional
flip TTA (averaged probabilities), trilinear back to exactly (D, H, W) -> float32 (D, C, H, W).
:func:`score_maps` scores stored maps against the cache masks (the OOF number of a run).
"""
from __future__ import annotations

import itertools

import numpy as np

from kaggle_kit.data.cache import Cache
from kaggle_kit.engine.checkpoint import load_model
from kaggle_kit.families.seg3d.data import Geometry3D, case_day_spacing, image_to_training, to_raw
from kaggle_kit.families.seg3d.model import build_net
from kaggle_kit.io.probmaps import ProbMapStore
from kaggle_kit.metric.scorer import MetricConfig, Scorer
from kaggle_kit.families.seg3d.data import channels_to_bits

__all__ = ["TTA", "Predictor3D", "score_maps"]

# flip sets (spatial axes 0 = D, 1 = H, 2 = W) averaged with the plain pass
TTA = {
    "none": [()],
    "hflip": [(), (2,)],
    "axes": [(), (0,), (1,), (2,)],
    "all8": [c for r in range(4) for c in itertools.combinations((0, 1, 2), r)],
}


class Predictor3D:
    """One loaded 3D model. ``__call__(cache, split, case_day)`` -> float32 (D, C, H, W) in [0, 1], raw geometry."""
    def __init__(self, ckpt_path, device=None, tta: str = "none", overlap: float = 0.5, sw_batch_size: int = 1,
                 window=None):
        import torch

        if tta not in TTA:
            raise KeyError(f"unknown 3D tta {tta!r}; options: {sorted(TTA)}")
        net, meta = load_model(ckpt_path, lambda m: build_net(m["model"], m["data"]))
        self.meta = meta
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = net.to(self.device).eval()
        self.geometry = Geometry3D.from_cfg(meta["data"])
        self.norm = meta["data"]["norm"]
        self.window = tuple(int(w) for w in (window or meta["data"]["patch"]))
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.tta = tta
        self.classes = meta["classes"]
        self._spacing: dict[tuple, dict] = {}

    def spacing(self, cache: Cache, split: str, case_day: str):
        # any volume source: the prepared Cache, or the notebook's PngVolumes (no cache folder behind it)
        key = (str(getattr(cache, "root", "")) or id(cache), split)
        if key not in self._spacing:
            self._spacing[key] = case_day_spacing(cache, split)
        return self._spacing[key].get(case_day, (1.0, 1.0))

    def probabilities(self, x):
        """float tensor (1, 1, d, h, w) in training geometry -> probabilities (C, d, h, w) (device tensor)."""
        import torch

        acc = None
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            for axes in TTA[self.tta]:
                dims = [2 + a for a in axes]
                xi = torch.flip(x, dims) if dims else x
                p = torch.sigmoid(self.net.sliding_window(xi, self.window, self.overlap, self.sw_batch_size).float())
                p = torch.flip(p, dims) if dims else p
                acc = p if acc is None else acc + p
        return acc[0] / len(TTA[self.tta])

    def __call__(self, cache: Cache, split: str, case_day: str, boxes=None) -> np.ndarray:
        import torch

        img = cache.image(split, case_day)
        size = self.geometry.shape(img.shape, self.spacing(cache, split, case_day))
        x = torch.from_numpy(image_to_training(img, size, self.norm))[None].to(self.device)
        return to_raw(self.probabilities(x), img.shape)


def score_maps(cache_dir, pred_root, exp: str, split: str = "oof", threshold: float = 0.5, case_days=None,
               metric: str = "default") -> dict:
    """Score stored maps ``<pred_root>/<exp>/<split>`` thresholded at ``threshold`` against the cache masks
    (train split) with the competition metric. Returns Scorer.result() (score, dice, hausdorff, per_class)
    plus ``case_days``. Works for any pixel family's maps."""

    cache = Cache(cache_dir)
    store = ProbMapStore(pred_root)
    cds = case_days if case_days is not None else store.case_days(exp, split)
    scorer = Scorer(MetricConfig.from_name(metric))
    t = round(threshold * 255)
    for cd in cds:
        truth = np.asarray(cache.mask("train", cd))
        pm = store.read(exp, split, cd, expect_shape=(truth.shape[0], 3) + truth.shape[1:])  # uint8 (D, C, H, W)
        scorer.add(cd, channels_to_bits((pm >= t).transpose(1, 0, 2, 3)), truth)
    r = scorer.result()
    r["case_days"] = len(cds)
    return r
