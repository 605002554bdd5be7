"""The post-processing pipeline of one case-day: member maps -> bit-flag mask.

The steps and their order are declared once, in :data:`kaggle_kit.post.steps.STEPS`: weighted fusion and
per-class thresholds (one numba pass, no float map kept) -> classifier gating (on the fused classifier
probability, optionally averaged over a window of slices along z: :func:`fuse_classifier`) and minimum
positive pixels per slice -> truncation (first/last k slices, slices beyond the last classifier-positive
slice + margin) -> presence per volume (a class whose peak fused probability, or peak classifier
probability, over the case-day stays below its number is cleared on every slice) -> removal of small 2D components -> of small 3D components (with ``never_empty``, neither
empties a class: its largest component stays) -> of 3D components small relative to the class's largest -> z
smoothing of per-slice presence. :func:`postprocess` is one loop over that list; every number comes from
:class:`PostParams` (built from the ensemble YAML by :mod:`kaggle_kit.post.ensemble`); ``impl="numpy"`` runs
the numpy twins.
"""
from __future__ import annotations


import numpy as np

from kaggle_kit.metric.presence import smooth_z
from kaggle_kit.post import kernels as K
from kaggle_kit.post.steps import PARAMS, STEPS, Context, by_name
from kaggle_kit.utils import did_you_mean

__all__ = ["PostParams", "fuse_classifier", "postprocess", "smooth_z"]


class PostParams:
    """Every number of the pipeline by its name in :data:`~kaggle_kit.post.steps.PARAMS`: a per-class
    number is a tuple of C values (a scalar is repeated), a global one a scalar. A missing number or ``None``
    is the parameter's neutral value (its step is then a no-op). Immutable; equal when all numbers are."""

    __slots__ = ("_v",)

    def __init__(self, threshold, **values):
        unknown = sorted(set(values) - {p.name for p in PARAMS})
        if unknown:
            raise TypeError(f"PostParams: unknown number {unknown[0]!r}; {did_you_mean(unknown[0], [p.name for p in PARAMS])}")
        values["threshold"] = threshold
        n = len(tuple(threshold))
        v = {}
        for p in PARAMS:
            x = values.get(p.name)
            if p.per_class:
                x = (x,) * n if x is None or np.isscalar(x) else tuple(x)
                if len(x) != n:
                    raise ValueError(f"PostParams.{p.name}: {len(x)} values for {n} classes")
                x = tuple(p.neutral if e is None else e for e in x)
            elif x is None:
                x = p.neutral
            v[p.name] = x
        object.__setattr__(self, "_v", v)

    def __getattr__(self, name):
        if name == "_v":
            raise AttributeError(name)
        try:
            return self._v[name]
        except KeyError:
            raise AttributeError(f"PostParams has no number {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("PostParams is immutable")

    def __eq__(self, other):
        return isinstance(other, PostParams) and self._v == other._v

    def __hash__(self):
        return hash(tuple(self._v.items()))

    def __reduce__(self):
        return _rebuild, (self._v,)

    def __repr__(self):
        return "PostParams(" + ", ".join(f"{k}={v!r}" for k, v in self._v.items()) + ")"

    @property
    def values(self) -> dict:
        """name -> per-class tuple / global scalar (a copy)."""
        return dict(self._v)

    @property
    def n_classes(self) -> int:
        return len(self._v["threshold"])

    def for_class(self, c: int) -> dict:
        """Class c's numbers: name -> scalar (globals included)."""
        return {n: (x[c] if by_name(n).per_class else x) for n, x in self._v.items()}

    @property
    def needs_classifier(self) -> bool:
        return any(s.uses_classifier(self.for_class(c)) for s in STEPS[1:] for c in range(self.n_classes))


def _rebuild(values: dict) -> PostParams:
    return PostParams(**values)


def fuse_classifier(stack: np.ndarray, weights: np.ndarray, windows=None) -> np.ndarray:
    """Classifier members uint8 (M, D, C), normalised weights (M, C) -> float32 (D, C) on the 0..255 scale,
    then (``windows``: one odd int per class, the ``z_window`` numbers) averaged along z by :func:`smooth_z`."""
    m, d, c = stack.shape
    fused = K.fuse_numpy(stack.reshape(m, d, c, 1, 1), weights)[:, :, 0, 0]
    return fused if windows is None or all(int(w) == 1 for w in windows) else smooth_z(fused, windows)


def postprocess(stack: np.ndarray, weights: np.ndarray, params: PostParams, cls: np.ndarray | None = None,
                impl: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    """One case-day: pixel members uint8 (M, D, C, H, W), normalised weights float32 (M, C), fused classifier
    float32 (D, C) on the 0..255 scale (or None) -> bits uint8 (D, H, W), counts int64 (D, C). ``cls`` is
    :func:`fuse_classifier`'s output, which applies ``params.z_window``; this function does not.

    The steps of :data:`~kaggle_kit.post.steps.STEPS` in order; a step that is a no-op for every class is
    skipped (running it would change nothing)."""
    if impl not in ("numba", "numpy"):
        raise ValueError(f"impl must be 'numba' or 'numpy', got {impl!r}")
    c = params.n_classes
    if stack.shape[2] != c:
        raise ValueError(f"maps have {stack.shape[2]} classes, the parameters {c}")
    if params.needs_classifier and cls is None:
        raise ValueError("gating / tail truncation / presence.cls_prob need classifier probabilities")
    v = params.values
    per_class = [params.for_class(k) for k in range(c)]
    fusion, *steps = STEPS
    bits, counts = fusion.apply(stack, weights, v, impl)
    # the planes' peak fused values cost a second pass over the maps: only when a step reads them
    peak = (K.fuse_plane_max(stack, weights) if impl == "numba" else K.fuse_plane_max_numpy(stack, weights)) \
        if any(s.uses_peak(pc) for s in steps for pc in per_class) else None
    ctx = Context(depth=len(bits), cls=cls, peak=peak)
    for step in steps:
        if any(step.active(pc) for pc in per_class):
            step.apply(bits, counts, v, ctx, impl)
    return bits, counts
