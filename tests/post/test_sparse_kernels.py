"""The tuner's compact crops (post/kernels/sparse.py): numba against numpy twins, and both against the dense
fusion kernels they stand in for, on random and odd shapes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from kaggle_kit.post import kernels as K
from kaggle_kit.post.kernels import sparse as S

SHAPES = [(1, 1, 1), (1, 1, 7), (3, 1, 9), (2, 5, 1), (4, 6, 5), (7, 13, 17), (5, 31, 40)]


def _stack(rng, m, shape, c):
    d, h, w = shape
    pix = rng.integers(0, 256, (m, d, c, h, w), dtype=np.uint8)
    pix[rng.random(pix.shape) < 0.6] = 0  # mostly background, as maps are
    return pix


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("m", [1, 2, 3])
def test_sparse_crop_equals_the_dense_kernels(shape, m):
    rng = np.random.default_rng(hash((shape, m)) % 2**32)
    c = 3
    for trial in range(4):
        pix = _stack(rng, m, shape, c)
        truth = (rng.random(shape) < 0.1).astype(np.uint8) * rng.integers(0, 8, shape, dtype=np.uint8)
        thr_lo = float(rng.choice([0.1, 0.25, 0.5]))
        lo = math.floor(thr_lo * 255.0 - 0.01) + 1  # tune.evaluate._floor
        for k in range(c):
            box = S.active_box(pix, k, lo, truth)
            assert box == S.active_box_numpy(pix, k, lo, truth)
            if box is None:
                assert not (pix[:, :, k] >= lo).any() and not ((truth >> k) & 1).any()
                continue
            z0, z1, y0, y1, x0, x1 = box
            idx, vals = S.active_voxels(pix, k, lo, box)
            i2, v2 = S.active_voxels_numpy(pix, k, lo, box)
            np.testing.assert_array_equal(idx, i2)
            np.testing.assert_array_equal(vals, v2)
            assert idx.dtype == np.int32 and np.all(np.diff(idx) > 0)
            sub = np.ascontiguousarray(pix[:, z0:z1, k:k + 1, y0:y1, x0:x1])
            bshape = sub.shape[1:2] + sub.shape[3:]
            for _ in range(3):
                w = rng.random(m) * (rng.random(m) < 0.8)
                if w.sum() == 0:
                    w[0] = 1.0
                wn = K.normalise_weights(w[:, None])
                fused = S.fuse_sparse(vals, wn)
                dense = K.fuse(sub, wn)
                np.testing.assert_array_equal(fused, dense.reshape(-1)[idx])  # bit for bit
                np.testing.assert_array_equal(fused, S.fuse_sparse_numpy(vals, wn))
                for t in (thr_lo, thr_lo + 0.05, 0.5, 0.9):
                    t255 = t * 255.0
                    bits_d, counts_d = K.fuse_threshold(sub, wn, np.array([t255]))
                    for bits, counts in (S.threshold_sparse(fused, idx, t255, bshape),
                                         S.threshold_sparse_numpy(fused, idx, t255, bshape),
                                         S.fuse_threshold_sparse(vals, wn, idx, t255, bshape)):
                        np.testing.assert_array_equal(bits, bits_d)
                        np.testing.assert_array_equal(counts, counts_d)
                    peak = S.plane_max_sparse(fused, idx, bshape)
                    np.testing.assert_array_equal(peak, S.plane_max_sparse_numpy(fused, idx, bshape))
                    dense_peak = K.fuse_plane_max(sub, wn)
                    on = counts_d[:, 0] > 0  # the planes a step may read the peak on
                    np.testing.assert_array_equal(peak[on], dense_peak[on])
                    assert np.all(peak <= dense_peak)


def test_empty_active_set_and_floor_zero_keep_every_voxel():
    pix = np.zeros((2, 3, 1, 4, 5), np.uint8)
    truth = np.zeros((3, 4, 5), np.uint8)
    assert S.active_box(pix, 0, 1, truth) is None
    truth[1, 2, 3] = 1
    box = S.active_box(pix, 0, 1, truth)
    assert box == (1, 2, 2, 3, 3, 4)
    idx, vals = S.active_voxels(pix, 0, 1, box)
    assert idx.size == 0 and vals.shape == (2, 0)
    bits, counts = S.fuse_threshold_sparse(vals, np.array([0.5, 0.5], np.float32), idx, 10.0, (1, 1, 1))
    assert bits.sum() == 0 and counts.sum() == 0
    idx, vals = S.active_voxels(pix, 0, 0, (0, 3, 0, 4, 0, 5))  # floor 0: the whole box
    np.testing.assert_array_equal(idx, np.arange(60))
