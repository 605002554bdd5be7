"""Prediction of the slice classifier: (D, C) presence probabilities per case-day, in slice order.

Works from self-describing inference checkpoints only (``torch.load(weights_only=True)``, no YAML): the
meta rebuilds the timm net and the 2.5D input pipeline. ``tta="hflip"`` averages with flipped inputs.
"""
from __future__ import annotations

import numpy as np

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import SliceDataset25D
from kaggle_kit.engine.checkpoint import load_model
from kaggle_kit.data.pipeline25d import dataset_kwargs
from kaggle_kit.families.cls.model import build_net
from kaggle_kit.engine.memory_format import to_channels_last
from kaggle_kit.engine.memory_format import channels_last

__all__ = ["TTAS", "ClsPredictor"]

TTAS = ("none", "hflip")


class ClsPredictor:
    """One loaded classifier. ``__call__(cache, split, case_day, boxes=None)`` -> float32 (D, C) in [0, 1]."""
    def __init__(self, ckpt_path, device=None, batch_size: int = 64, tta: str = "none", channels_last: bool = True):
        import torch


        if tta not in TTAS:
            raise KeyError(f"unknown tta {tta!r}; options: {list(TTAS)}")
        # the weights come from the checkpoint: never reload the backbone's original weights file
        net, meta = load_model(ckpt_path, lambda m: build_net(dict(m["model"], weights_path=None), m["in_channels"]),
                               expect={"task": "cls"})
        self.meta = meta
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.channels_last = bool(channels_last)  # NHWC: faster on CPU and CUDA, same outputs up to rounding
        self.net = net.to(self.device).eval()
        if self.channels_last:
            to_channels_last(self.net)
        self.ds_kwargs = dataset_kwargs(meta["data"])
        self.batch_size = batch_size
        self.tta = tta
        self.classes = meta["classes"]

    def forward(self, x) -> np.ndarray:
        """x: float (B, k, h, w) tensor -> (B, C) probabilities (numpy float32)."""
        import torch

        if self.channels_last:
            x = channels_last(x)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            p = torch.sigmoid(self.net(x).float())
            if self.tta == "hflip":
                p = 0.5 * (p + torch.sigmoid(self.net(torch.flip(x, dims=[-1])).float()))
        return p.cpu().numpy().astype(np.float32)

    def __call__(self, cache: Cache, split: str, case_day: str, boxes=None) -> np.ndarray:
        import torch

        ds = SliceDataset25D(cache, [case_day], split=split, with_labels=False, boxes=boxes, **self.ds_kwargs)
        img = cache.image(split, case_day)
        D = img.shape[0]
        out = np.zeros((D, len(self.classes)), np.float32)
        for b in range(0, D, self.batch_size):
            zs = range(b, min(D, b + self.batch_size))
            x = np.stack([ds.inputs(case_day, z, img, ds.geometry(case_day, z, img)) for z in zs])
            out[b:b + len(zs)] = self.forward(torch.from_numpy(x).to(self.device))
        return out
