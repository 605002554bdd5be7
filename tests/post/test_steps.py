"""The rule the tuner's crops rest on, checked for every step declared in kaggle_kit.post.steps.STEPS.

The tuner (kaggle_kit.tune.evaluate) runs each class alone on a crop: the box of the voxels where some
member reaches the lowest threshold, plus one slice of context along z. That is exact only if a step sets no
voxel outside the box of its input's positives and reads nothing of the other classes. Each step either
honours this (checked here against the whole-volume run on random masks and random values of its numbers)
or declares ``crop_safe=False``, in which case the tuner must evaluate whole volumes (checked too).
"""
import random

import numpy as np
import pytest
from scipy import ndimage

from kaggle_kit.post import kernels as K
from kaggle_kit.post.steps import PARAMS, STEPS, Context
from kaggle_kit.tune.evaluate import OOFData, whole_volumes

from tests.post.step_values import random_value

D, C, H, W = 11, 3, 19, 23


def _volume(rng: np.random.Generator):
    """bits uint8 (D, H, W) with blobby positives of each class inside a random box (empty around it, one
    class sometimes empty everywhere), counts (D, C), a classifier float32 (D, C) on the 0..255 scale and
    the planes' peak fused values float32 (D, C) (random: a step may read them only on positive planes)."""
    bits = np.zeros((D, H, W), np.uint8)
    for c in range(C):
        if rng.random() < 0.15:
            continue
        z0, y0, x0 = rng.integers(0, D - 2), rng.integers(0, H - 3), rng.integers(0, W - 3)
        z1, y1, x1 = rng.integers(z0 + 1, D + 1), rng.integers(y0 + 2, H + 1), rng.integers(x0 + 2, W + 1)
        noise = ndimage.uniform_filter(rng.random((z1 - z0, y1 - y0, x1 - x0)), size=(1, 3, 3))
        on = noise > np.quantile(noise, rng.uniform(0.3, 0.8))
        on[rng.random(on.shape[0]) < 0.2] = False  # empty slices inside the box (z smoothing, gaps)
        bits[z0:z1, y0:y1, x0:x1] |= on.astype(np.uint8) << c
    cls = (rng.random((D, C)) * 255).astype(np.float32)
    peak = (rng.random((D, C)) * 255).astype(np.float32)
    return bits, K.plane_counts(bits, C), cls, peak


def _values(rng: random.Random) -> dict:
    """Every number: per class a tuple of C draws, a global one draw (as PostParams.values holds them)."""
    return {p.name: tuple(random_value(p, rng) for _ in range(C)) if p.per_class else random_value(p, rng)
            for p in PARAMS}


def _for_class(v: dict, c: int) -> dict:
    return {p.name: v[p.name][c] if p.per_class else v[p.name] for p in PARAMS}


def _crop_box(plane: np.ndarray, rng: np.random.Generator):
    """The tuner's crop of one class (box of the positives, one slice of context along z), grown by a random
    margin of 0-2 voxels (the tuner's box also holds voxels that reach the floor but not the threshold)."""
    zs, ys, xs = (np.flatnonzero(plane.any(a)) for a in ((1, 2), (0, 2), (0, 1)))
    m = rng.integers(0, 3, 3)
    return (max(int(zs[0]) - 1 - m[0], 0), min(int(zs[-1]) + 2 + m[0], D), max(int(ys[0]) - m[1], 0),
            min(int(ys[-1]) + 1 + m[1], H), max(int(xs[0]) - m[2], 0), min(int(xs[-1]) + 1 + m[2], W))


@pytest.mark.parametrize("step", STEPS[1:], ids=lambda s: s.name)
def test_each_step_honours_the_crop_rule_or_declares_it_does_not(step):
    """A crop-safe step on one class's crop (C = 1, the numbers of its key, the volume's classifier rows)
    gives exactly the whole-volume, all-classes run inside the crop, and the whole-volume run sets nothing
    outside it. A step declaring crop_safe=False makes the tuner's crops whole volumes."""
    if not step.crop_safe:
        assert whole_volumes()
        rng = np.random.default_rng(0)
        pix = rng.integers(0, 60, (2, D, C, H, W), dtype=np.uint8)  # nothing reaches the floor anywhere
        data = OOFData.from_arrays([("case1_day0", 0, np.zeros((D, H, W), np.uint8), pix, None)], ["a", "b"])
        for c, crop in enumerate(data.case_days[0].crops):
            assert (crop.z0, crop.y0, crop.x0) == (0, 0, 0) and crop.truth().shape == (D, H, W)
            np.testing.assert_array_equal(crop.pix()[:, :, 0], pix[:, :, c])
        return
    checked = 0
    for seed in range(60):
        rng, prng = np.random.default_rng(seed), random.Random(seed)
        bits, counts, cls, peak = _volume(rng)
        v = _values(prng)
        per_class = [_for_class(v, c) for c in range(C)]
        full_bits, full_counts = bits.copy(), counts.copy()
        if any(step.active(pc) for pc in per_class):  # as postprocess runs it
            step.apply(full_bits, full_counts, v, Context(D, 0, cls, peak))
        for c in range(C):
            plane = (bits >> c) & 1
            out = (full_bits >> c) & 1
            if not plane.any():
                assert not out.any(), f"seed {seed}: {step.name} made an empty class {c} positive"
                continue
            z0, z1, y0, y1, x0, x1 = _crop_box(plane, rng)
            crop = np.ascontiguousarray(plane[z0:z1, y0:y1, x0:x1])
            crop_counts = K.plane_counts(crop, 1)
            step.apply_key(crop, crop_counts, step.key(per_class[c], cls_key=((1.0,), 1)),
                           Context(D, z0, np.ascontiguousarray(cls[:, c:c + 1]),
                                   np.ascontiguousarray(peak[z0:z1, c:c + 1])))
            outside = out.copy()
            outside[z0:z1, y0:y1, x0:x1] = 0
            assert not outside.any(), f"seed {seed}: {step.name} set class {c} outside its crop ({per_class[c]})"
            np.testing.assert_array_equal(crop, out[z0:z1, y0:y1, x0:x1], err_msg=f"seed {seed}, class {c}")
            np.testing.assert_array_equal(crop_counts[:, 0], full_counts[z0:z1, c])
            checked += step.active(per_class[c])
    assert checked >= 20  # the step really ran on most draws (not only its neutral values)


@pytest.mark.parametrize("step", STEPS[1:], ids=lambda s: s.name)
def test_a_step_declared_removal_only_never_sets_a_voxel(step):
    """``removes_only`` lets the tuner treat a step that left every plane's count unchanged as switched off:
    it must never set a voxel (output within input), so equal counts mean an equal mask. A step that can set
    voxels (z smoothing fills a gap slice) must not declare it."""
    changed = added = 0
    for seed in range(60):
        rng, prng = np.random.default_rng(seed), random.Random(seed)
        bits, counts, cls, peak = _volume(rng)
        v = _values(prng)
        out_bits, out_counts = bits.copy(), counts.copy()
        step.apply(out_bits, out_counts, v, Context(D, 0, cls, peak))
        np.testing.assert_array_equal(out_counts, K.plane_counts(out_bits, C))  # counts stay exact
        added += int((out_bits & ~bits).any())
        changed += int((out_bits != bits).any())
    if step.removes_only:
        assert added == 0, f"{step.name} declares removes_only but set voxels on {added} draws"
        assert changed >= 5  # the draws exercised it
    elif step.name == "z_smoothing":
        assert added > 0  # the declaration is needed, and the check can tell
