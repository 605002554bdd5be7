"""The post-processing pipeline of one case-day: member maps -> bit-flag mask.

Steps, in order: weighted fusion and per-class thresholds (one numba pass, no float map kept) ->
classifier gating (on the fused classifier probability, optionally averaged over a window of slices along
z: :func:`fuse_classifier`) and minimum positive pixels per slice -> truncation (first/last k slices,
slices beyond the last classifier-positive slice + margin) -> removal of small 2D components -> optional
removal of small 3D components -> optional z smoothing of per-slice presence. Every number comes from
:class:`PostParams` (built from the ensemble YAML by :mod:`kaggle_kit.post.ensemble`); ``impl="numpy"`` runs
the numpy twins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kaggle_kit.metric.presence import smooth_z
from kaggle_kit.post import kernels as K

__all__ = ["PostParams", "fuse_classifier", "postprocess", "smooth_z"]


@dataclass(frozen=True)
class PostParams:
    """Post-processing parameters, per class where a tuple (probabilities in [0, 1]).

    ``None`` switches a step off. ``connectivity`` 8 (default) or 4 applies to 2D components; 3D ones use
    26 or 6.
    """

    threshold: tuple[float, ...]
    gate_prob: tuple[float, ...] | None = None
    gate_min_pixels: tuple[int, ...] | None = None
    first_k: tuple[int, ...] | None = None
    last_k: tuple[int, ...] | None = None
    tail_margin: int | None = None
    tail_prob: tuple[float, ...] | None = None
    min_area_2d: tuple[int, ...] | None = None
    min_volume_3d: tuple[int, ...] | None = None
    connectivity: int = 8
    z_smoothing: bool = False
    cls_window: tuple[int, ...] | None = None  # odd: centred mean of the fused classifier prob over z (1 = off)

    @property
    def n_classes(self) -> int:
        return len(self.threshold)

    @property
    def needs_classifier(self) -> bool:
        return self.gate_prob is not None or self.tail_margin is not None


def _scale(p) -> np.ndarray:
    return np.asarray(p, np.float64) * 255.0


def fuse_classifier(stack: np.ndarray, weights: np.ndarray, windows=None) -> np.ndarray:
    """Classifier members uint8 (M, D, C), normalised weights (M, C) -> float32 (D, C) on the 0..255 scale,
    then (``windows``: one odd int per class) averaged along z by :func:`smooth_z`."""
    m, d, c = stack.shape
    fused = K.fuse_numpy(stack.reshape(m, d, c, 1, 1), weights)[:, :, 0, 0]
    return fused if windows is None or all(int(w) == 1 for w in windows) else smooth_z(fused, windows)


_NUMBA = {"fuse_threshold": K.fuse_threshold, "gate": K.gate, "truncate": K.truncate,
          "small2d": K.remove_small_2d, "small3d": K.remove_small_3d, "zsmooth": K.z_smooth}
_NUMPY = {"fuse_threshold": K.fuse_threshold_numpy, "gate": K.gate_numpy, "truncate": K.truncate_numpy,
          "small2d": K.remove_small_2d_numpy, "small3d": K.remove_small_3d_numpy, "zsmooth": K.z_smooth_numpy}


def postprocess(stack: np.ndarray, weights: np.ndarray, params: PostParams, cls: np.ndarray | None = None,
                impl: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    """One case-day: pixel members uint8 (M, D, C, H, W), normalised weights float32 (M, C), fused classifier
    float32 (D, C) on the 0..255 scale (or None) -> bits uint8 (D, H, W), counts int64 (D, C). ``cls`` is
    :func:`fuse_classifier`'s output, which applies ``params.cls_window``; this function does not."""
    k = _NUMBA if impl == "numba" else _NUMPY if impl == "numpy" else None
    if k is None:
        raise ValueError(f"impl must be 'numba' or 'numpy', got {impl!r}")
    c = params.n_classes
    if stack.shape[2] != c:
        raise ValueError(f"maps have {stack.shape[2]} classes, the parameters {c}")
    if params.needs_classifier and cls is None:
        raise ValueError("gating / tail truncation need classifier probabilities")
    bits, counts = k["fuse_threshold"](stack, weights, _scale(params.threshold))
    if params.gate_prob is not None or params.gate_min_pixels is not None:
        k["gate"](bits, counts, cls if params.gate_prob is not None else None,
                  None if params.gate_prob is None else _scale(params.gate_prob), params.gate_min_pixels)
    if params.first_k is not None or params.last_k is not None or params.tail_margin is not None:
        zeros = (0,) * c
        lo, hi = K.keep_range(len(bits), params.first_k or zeros, params.last_k or zeros, cls,
                              None if params.tail_prob is None else _scale(params.tail_prob), params.tail_margin)
        k["truncate"](bits, counts, lo, hi)
    if params.min_area_2d is not None:
        k["small2d"](bits, counts, np.asarray(params.min_area_2d, np.int64), params.connectivity)
    if params.min_volume_3d is not None:
        k["small3d"](bits, counts, np.asarray(params.min_volume_3d, np.int64), params.connectivity)
    if params.z_smoothing:
        k["zsmooth"](bits, counts)
    return bits, counts
