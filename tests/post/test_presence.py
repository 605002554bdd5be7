"""Presence per volume (kaggle_kit.post.steps, step ``presence``): a class the case-day's volume scores call
absent is cleared before the size filters, so ``never_empty`` cannot keep it; off, it changes nothing."""
import dataclasses

import numpy as np
import pytest

from kaggle_kit.post import kernels as K
from kaggle_kit.post import postprocess as pp
from kaggle_kit.post.postprocess import PostParams, postprocess
from kaggle_kit.post.steps import STEPS

D, H, W = 6, 10, 12


def _stack():
    """One member, three classes, hand-set peaks: class 0 a 3x3 blob at 100 with a core pixel of 200 on
    slice 2; class 1 a 3x3 blob at 150 on slices 1-3 (peak 150); class 2 two pixels at 120 (a speck)."""
    s = np.zeros((1, D, 3, H, W), np.uint8)
    s[0, 1:4, 0, 2:5, 2:5] = 100
    s[0, 2, 0, 3, 3] = 200
    s[0, 1:4, 1, 5:8, 6:9] = 150
    s[0, 4, 2, 1, 1:3] = 120
    return s


W1 = K.normalise_weights(np.ones((1, 3)))


def _classes(bits):
    return [bool(((bits >> c) & 1).any()) for c in range(3)]


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_clears_a_class_whose_peak_stays_below_and_keeps_one_above(impl):
    """threshold 0.3 (76.5): every blob passes. presence 0.7 (178.5): class 0 (peak 200) stays whole,
    class 1 (peak 150) and class 2 (peak 120) are cleared on every slice; counts follow."""
    stack = _stack()
    base_bits, base_counts = postprocess(stack, W1, PostParams(threshold=(0.3,) * 3), impl=impl)
    assert _classes(base_bits) == [True, True, True]
    bits, counts = postprocess(stack, W1, PostParams(threshold=(0.3,) * 3, presence_prob=0.7), impl=impl)
    assert _classes(bits) == [True, False, False]
    np.testing.assert_array_equal(bits, base_bits & 1)
    np.testing.assert_array_equal(counts, base_counts * [1, 0, 0])
    # per class: only class 1's number set (0.55 < 150/255 = 0.588): nothing cleared; at 0.6 class 1 goes
    bits, _ = postprocess(stack, W1, PostParams(threshold=(0.3,) * 3, presence_prob=(0, 0.55, 0)), impl=impl)
    assert _classes(bits) == [True, True, True]
    bits, _ = postprocess(stack, W1, PostParams(threshold=(0.3,) * 3, presence_prob=(0, 0.6, 0)), impl=impl)
    assert _classes(bits) == [True, False, True]


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_peak_is_read_on_the_planes_that_survive_truncation(impl):
    """first_k 3 truncates slices 0-2, so class 0's core (200, slice 2) is gone and its surviving peak is 100:
    presence 0.5 (127.5) then clears class 0, while class 1 (slice 3 left, peak 150) stays and class 2 (slice
    4, peak 120) goes."""
    stack = _stack()
    p = dict(threshold=(0.3,) * 3, first_k=3)
    assert _classes(postprocess(stack, W1, PostParams(**p), impl=impl)[0]) == [True, True, True]
    assert _classes(postprocess(stack, W1, PostParams(**p, presence_prob=0.5), impl=impl)[0]) == [False, True, False]


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_classifier_peak_over_the_volume(impl):
    """presence_cls_prob: the class stays when the fused classifier reaches it on some slice (>=, as gating)."""
    stack = _stack()
    cls = np.zeros((D, 3), np.float32)
    cls[5, 0] = 0.6 * 255.0  # class 0 called on a slice without any pixel: presence is per volume
    cls[:, 1] = 0.4 * 255.0
    cls[2, 2] = 0.5 * 255.0
    bits, _ = postprocess(stack, W1, PostParams(threshold=(0.3,) * 3, presence_cls_prob=0.5), cls, impl=impl)
    assert _classes(bits) == [True, False, True]
    with pytest.raises(ValueError, match="classifier"):
        postprocess(stack, W1, PostParams(threshold=(0.3,) * 3, presence_cls_prob=0.5), None, impl=impl)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_never_empty_cannot_keep_a_class_presence_cleared(impl):
    """min_area_2d 50 removes every blob; never_empty keeps each class's largest component — except the class
    presence called absent, which stays empty (the order: presence before the size filters)."""
    stack = _stack()
    p = dict(threshold=(0.3,) * 3, min_area_2d=50, never_empty=True)
    assert _classes(postprocess(stack, W1, PostParams(**p), impl=impl)[0]) == [True, True, True]
    bits, counts = postprocess(stack, W1, PostParams(**p, presence_prob=(0, 0.7, 0)), impl=impl)
    assert _classes(bits) == [True, False, True]
    np.testing.assert_array_equal(counts, K.plane_counts(bits, 3))


def test_presence_sits_after_truncation_and_before_the_size_filters():
    names = [s.name for s in STEPS]
    assert names.index("truncate") < names.index("presence") < names.index("min_area_2d") \
        < names.index("min_volume_3d")


@pytest.mark.parametrize("seed", range(4))
def test_off_is_bit_for_bit_the_pipeline_without_the_step(seed, monkeypatch):
    """With presence neutral (every other number random), postprocess gives exactly what the step list
    without the presence step gives, and never computes the planes' peaks."""
    from kaggle_kit.tune.evaluate import class_key
    from kaggle_kit.tune.space import ClassParams, GlobalParams

    rng = np.random.default_rng(seed)
    from scipy import ndimage

    shape = (2, 9, 3, 17, 15)
    stack = np.rint(ndimage.uniform_filter(rng.random(shape), size=(1, 1, 1, 3, 3)) * 255).astype(np.uint8)
    w = K.normalise_weights(rng.random((2, 3)) + 0.1)
    cls = rng.uniform(0, 255, (9, 3)).astype(np.float32)
    params = PostParams(threshold=tuple(rng.uniform(0.4, 0.6, 3)), gate_prob=(0.2, 0.0, 0.1),
                        gate_min_pixels=(2, 0, 3), last_k=1, min_area_2d=(3, 4, 2), never_empty=True,
                        min_relative_volume_3d=(0.3, 0.0, 0.6), z_smoothing=bool(seed % 2))
    today = tuple(s for s in STEPS if s.name != "presence")
    for impl in ("numba", "numpy"):
        with monkeypatch.context() as m:
            m.setattr(pp, "STEPS", today)
            want = postprocess(stack, w, params, cls, impl=impl)
        with monkeypatch.context() as m:
            m.setattr(K, "fuse_plane_max", None)  # off: the peaks are not computed
            m.setattr(K, "fuse_plane_max_numpy", None)
            got = postprocess(stack, w, params, cls, impl=impl)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    k = class_key(ClassParams(weights=(1.0, 1.0)), GlobalParams())
    assert k[2 + [s.name for s in STEPS[1:]].index("presence")] is None


def test_a_step_reading_the_peaks_gets_them_only_when_on():
    step = next(s for s in STEPS if s.name == "presence")
    on = {"presence_prob": 0.5, "presence_cls_prob": 0.0}
    assert step.uses_peak(on) and not step.uses_classifier(on)
    cls_only = {"presence_prob": 0.0, "presence_cls_prob": 0.5}
    assert not step.uses_peak(cls_only) and step.uses_classifier(cls_only)
    assert dataclasses.replace(step, peak=None).uses_peak(on) is False
