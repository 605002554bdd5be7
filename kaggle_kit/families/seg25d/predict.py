"""Prediction of the 2.5D family: probability maps in raw geometry and slice order.

Works from self-describing inference checkpoints only (no YAML): the checkpoint's meta rebuilds the net
and the input pipeline. Several checkpoints (folds) are averaged; ``tta="hflip"`` adds flipped inputs,
``tta="gamma"`` also the inputs under gamma 0.8 (1 / 1.25) and 1.25 (the ends of the ``light_int`` range);
``strides`` (slice-step TTA) averages the maps of stacks built with each of several slice steps.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import SliceDataset25D
from kaggle_kit.engine.checkpoint import load_model
from kaggle_kit.data.pipeline25d import dataset_kwargs
from kaggle_kit.families.seg25d.train import build_net
from kaggle_kit.engine.memory_format import to_channels_last
from kaggle_kit.engine.memory_format import channels_last

__all__ = ["Predictor25D", "TTAS", "gamma_tta_values", "predict_volume"]

TTAS = ("none", "hflip", "gamma")


def gamma_tta_values() -> tuple[float, ...]:
    """The gammas whose maps ``tta="gamma"`` averages: identity and the two ends of the range the
    ``light_int`` recipe trains with, so every input is one the net has seen (a member trained without
    intensity augmentation has not: measure before using it there)."""
    from kaggle_kit.data.augment import LIGHT_INT_GAMMA

    return (1.0, 1.0 / (1.0 + LIGHT_INT_GAMMA), 1.0 + LIGHT_INT_GAMMA)


class Predictor25D:
    """One loaded model + its input pipeline. ``__call__(cache, split, case_day)`` -> float32 (D, C, H, W)
    probabilities in raw geometry (aux presence head, if any, in ``last_presence`` as (D, C)).

    ``strides``: slice steps of the stacks whose maps are averaged (each costs one forward pass per slice);
    None or empty = the checkpoint's own ``data.stride``. A net trained with ``data.stride_train`` has seen
    every step of that list, so each is an input it knows: the average is a test-time augmentation along z."""

    def __init__(self, ckpt_path, device=None, batch_size: int = 32, tta: str = "none", channels_last: bool = True,
                 strides=None):
        import torch


        net, meta = load_model(ckpt_path, lambda m: build_net(m["model"], m["in_channels"], load_weights=False))
        self.meta = meta
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # NHWC: 1.3x faster inference on this CPU (benchmarks/bench_channels_last.py), tensor cores on CUDA;
        # outputs equal NCHW's up to float rounding
        self.channels_last = bool(channels_last)
        self.net = net.to(self.device).eval()
        if self.channels_last:
            to_channels_last(self.net)
        self.ds_kwargs = dataset_kwargs(meta["data"])
        self.batch_size = batch_size
        if tta not in TTAS:
            raise KeyError(f"unknown tta {tta!r}; options: {list(TTAS)}")
        self.tta = tta
        self.gammas = gamma_tta_values()  # read once, used per batch when tta == "gamma"
        self.strides = tuple(int(v) for v in (strides or ())) or (self.ds_kwargs["stack"].stride,)
        if any(v < 1 for v in self.strides):
            raise ValueError(f"strides must be positive slice steps, got {list(self.strides)}")
        self.classes = meta["classes"]
        self.last_presence = None

    def _forward(self, x):
        import torch

        def run(inp):
            out = self.net(channels_last(inp) if self.channels_last else inp)
            if isinstance(out, (tuple, list)):
                return torch.sigmoid(out[0].float()).contiguous(), torch.sigmoid(out[1].float())
            return torch.sigmoid(out.float()).contiguous(), None

        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            p, a = run(x)
            if self.tta == "hflip":
                p2, a2 = run(torch.flip(x, dims=[-1]))
                p = 0.5 * (p + torch.flip(p2, dims=[-1]))
                a = None if a is None else 0.5 * (a + a2)
            elif self.tta == "gamma":  # kaggle_kit.data.augment.intensity with c=1, b=0: max(x, 0) ** g
                gs = self.gammas
                for g in gs[1:]:
                    p2, a2 = run(torch.clamp(x, min=0).pow(g))
                    p = p + p2
                    a = None if a is None else a + a2
                p = p / len(gs)
                a = None if a is None else a / len(gs)
        return p.cpu().numpy(), None if a is None else a.cpu().numpy()

    def __call__(self, cache: Cache, split: str, case_day: str, boxes=None) -> np.ndarray:
        import torch

        ds = SliceDataset25D(cache, [case_day], split=split, with_labels=False, boxes=boxes, **self.ds_kwargs)
        img = cache.image(split, case_day)
        D, H, W = img.shape
        out = np.zeros((D, len(self.classes), H, W), np.float32)
        pres = np.zeros((D, len(self.classes)), np.float32)
        has_aux = False
        stacks = [replace(ds.stack, stride=s) for s in self.strides]
        for b in range(0, D, self.batch_size):
            chunk = list(range(b, min(D, b + self.batch_size)))
            geoms = [ds.geometry(case_day, z, img) for z in chunk]
            p = a = None
            for st in stacks:  # mean over the slice steps, on the canvas (one geometry per slice)
                x = np.stack([ds.inputs(case_day, z, img, g, stack=st) for z, g in zip(chunk, geoms)])
                ps, as_ = self._forward(torch.from_numpy(x).to(self.device))
                p = ps if p is None else p + ps
                a = as_ if a is None else a + as_  # the aux head is there for every step or for none
            p /= len(stacks)
            for i, (z, g) in enumerate(zip(chunk, geoms)):
                out[z] = g.inverse(p[i])
            if a is not None:
                pres[chunk] = a / len(stacks)
                has_aux = True
        self.last_presence = pres if has_aux else None
        return out


def predict_volume(predictors, cache: Cache, split: str, case_day: str, boxes=None) -> np.ndarray:
    """Mean of several predictors' maps: float32 (D, C, H, W) in [0, 1], raw geometry."""
    acc = None
    for p in predictors:
        m = p(cache, split, case_day, boxes=boxes)
        acc = m if acc is None else acc + m
    return acc / len(predictors)
