"""Augmentation recipes, chosen by name. Each works on float32 (H, W, K) images with any K (2.5D stacks
of 16-bit-derived intensities, roughly in [0, 1.5]) and (H, W, C) uint8 masks.

``build_augment(name, hflip)`` returns a callable ``(image, mask) -> (image, mask)`` or None for ``"none"``.
"""
from __future__ import annotations

import os

__all__ = ["RECIPES", "build_augment"]


def _A():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network
    import albumentations as A

    return A


def _light(hflip: float = 0.5):
    A = _A()
    return ([A.HorizontalFlip(p=hflip)] if hflip > 0 else []) + [
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.0625, 0.0625), rotate=(-10, 10), p=0.5),
    ]


def _baseline(hflip: float = 0.5):
    """The public 2.5D baseline's recipe: flip, shift-scale-rotate, elastic/grid distortion, dropout."""
    A = _A()
    return _light(hflip) + [
        A.OneOf([A.GridDistortion(num_steps=5, distort_limit=0.05), A.ElasticTransform(alpha=1, sigma=50)], p=0.25),
        A.CoarseDropout(num_holes_range=(1, 8), hole_height_range=(0.03, 0.1), hole_width_range=(0.03, 0.1), fill=0,
                        p=0.5),
    ]


def _strong(hflip: float = 0.5):
    A = _A()
    return _baseline(hflip) + [
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
    ]


RECIPES = {"none": None, "light": _light, "baseline": _baseline, "strong": _strong}


class _Augment:
    def __init__(self, transforms):
        A = _A()
        self.t = A.Compose(transforms)

    def __call__(self, image, mask):
        r = self.t(image=image, mask=mask)
        return r["image"], r["mask"]


def build_augment(name: str, hflip: float = 0.5):
    """``hflip``: probability of a left-right flip inside the recipe. 0 keeps laterality (the stomach lies on
    the patient's left, the liver on the right: a flipped slice shows an anatomy that never occurs)."""
    if name not in RECIPES:
        raise KeyError(f"unknown augmentation recipe {name!r}; options: {sorted(RECIPES)}")
    if not 0.0 <= float(hflip) <= 1.0:
        raise ValueError(f"hflip must be a probability in [0, 1], got {hflip!r}")
    fn = RECIPES[name]
    return None if fn is None else _Augment(fn(float(hflip)))
