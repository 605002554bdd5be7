"""Augmentation recipes, chosen by name. Each works on float32 (H, W, K) images with any K (2.5D stacks
of 16-bit-derived intensities, roughly in [0, 1.5]) and (H, W, C) uint8 masks.

``build_augment(name, hflip)`` returns a callable ``(image, mask) -> (image, mask)`` or None for ``"none"``.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["RECIPES", "RandomIntensity", "build_augment", "intensity"]


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
    """baseline + brightness/contrast (albumentations' RandomBrightnessContrast clipped these float stacks at
    1.0 on the samples it touched, a top the predict-time inputs never have: RandomIntensity does not clip)."""
    return _baseline(hflip) + [RandomIntensity(brightness=0.15, contrast=0.15, gamma=0.0, p=0.5)]


LIGHT_INT_GAMMA = 0.25  # light_int's gamma range: g in [1 / 1.25, 1.25] (also the 2.5D family's gamma TTA)


def _light_int(hflip: float = 0.5):
    """light + gamma, contrast and brightness per sample: organ intensities that sit elsewhere on a new case
    (the CPU preset's 2.5D member)."""
    return _light(hflip) + [RandomIntensity(brightness=0.1, contrast=0.15, gamma=LIGHT_INT_GAMMA, p=0.5)]


RECIPES = {"none": None, "light": _light, "light_int": _light_int, "baseline": _baseline, "strong": _strong}


def intensity(img: np.ndarray, g: float = 1.0, c: float = 1.0, b: float = 0.0) -> np.ndarray:
    """``(max(img, 0) ** g - m) * c + m + b`` with ``m`` the mean of ``max(img, 0) ** g``; float32, no clipping."""
    x = np.power(np.maximum(img, 0), g, dtype=np.float32)
    m = float(x.mean())
    return ((x - m) * c + m + b).astype(np.float32)


def RandomIntensity(brightness: float, contrast: float, gamma: float, p: float):
    """An albumentations image-only transform: :func:`intensity` with ``g = (1 + gamma) ** u``,
    ``c = 1 + contrast * u'``, ``b = brightness * u''``, ``u, u', u''`` uniform in [-1, 1]. Unlike
    RandomBrightnessContrast it never clips: these stacks are volume-normalised floats reaching ~1.5."""
    A = _A()

    class _RandomIntensity(A.ImageOnlyTransform):
        def get_params_dependent_on_data(self, params, data):
            r = self.py_random
            return {"g": (1 + gamma) ** r.uniform(-1, 1), "c": 1 + contrast * r.uniform(-1, 1),
                    "b": brightness * r.uniform(-1, 1)}

        def apply(self, img, g=1.0, c=1.0, b=0.0, **params):
            return intensity(img, g, c, b)

    return _RandomIntensity(p=p)


class _Augment:
    def __init__(self, transforms, seed: int | None = None):
        A = _A()
        self.t = A.Compose(transforms, seed=seed)

    def reseed(self, seed: int) -> None:
        """A new random state for every transform (albumentations' Compose keeps its own, not numpy's)."""
        self.t.set_random_seed(int(seed))

    def __call__(self, image, mask):
        r = self.t(image=image, mask=mask)
        return r["image"], r["mask"]


def build_augment(name: str, hflip: float = 0.5, seed: int | None = None):
    """``hflip``: probability of a left-right flip inside the recipe. 0 keeps laterality (the stomach lies on
    the patient's left, the liver on the right: a flipped slice shows an anatomy that never occurs).
    ``seed``: the recipe's random state (None: fresh entropy; a dataset reseeds it per worker)."""
    if name not in RECIPES:
        raise KeyError(f"unknown augmentation recipe {name!r}; options: {sorted(RECIPES)}")
    if not 0.0 <= float(hflip) <= 1.0:
        raise ValueError(f"hflip must be a probability in [0, 1], got {hflip!r}")
    fn = RECIPES[name]
    return None if fn is None else _Augment(fn(float(hflip)), seed)
