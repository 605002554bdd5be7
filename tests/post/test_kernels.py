"""Every numba kernel of kaggle_kit.post.kernels equals its numpy twin, on random and odd shapes."""
import numpy as np
import pytest

from kaggle_kit.data.rle import rle_decode
from kaggle_kit.post import kernels as K

SHAPES = [(1, 1, 1, 1), (3, 2, 7, 5), (13, 3, 31, 17), (6, 3, 1, 9), (5, 1, 8, 1)]  # (D, C, H, W)


def _stack(rng, m, shape):
    """Blobby uint8 maps (smoothed noise) so that thresholds give components of many sizes."""
    from scipy import ndimage

    x = rng.random((m,) + shape)
    x = ndimage.uniform_filter(x, size=(1, 1, 1, 3, 3))
    x = (x - x.min()) / max(x.max() - x.min(), 1e-9)
    return np.rint(x * 255).astype(np.uint8)


def _bits(rng, shape, p=0.45):
    d, c, h, w = shape
    pos = rng.random(shape) < p
    bits = np.zeros((d, h, w), np.uint8)
    for k in range(c):
        bits |= pos[:, k].astype(np.uint8) << k
    return bits, K.plane_counts(bits, c)


@pytest.mark.parametrize("shape", SHAPES + [(4, 2, 0, 3)])
@pytest.mark.parametrize("m", [1, 3])
def test_fuse_plane_max_equals_twin_and_the_fused_map(shape, m):
    """The planes' peak fused value, computed without a float map, equals the numpy twin and the maximum of
    ``fuse``'s map bit for bit (0 on an empty plane)."""
    rng = np.random.default_rng(hash((shape, m, "peak")) % 2**32)
    stack = _stack(rng, m, shape) if shape[2] else np.zeros((m,) + shape, np.uint8)
    raw_w = rng.random((m, shape[1]))
    raw_w[0, 0] = 0 if m > 1 else 1
    w = K.normalise_weights(raw_w)
    got = K.fuse_plane_max(stack, w)
    assert got.dtype == np.float32 and got.shape == shape[:2]
    np.testing.assert_array_equal(got, K.fuse_plane_max_numpy(stack, w))
    fused = K.fuse(stack, w)
    want = fused.max((2, 3)) if fused.size else np.zeros(shape[:2], np.float32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("m", [1, 3])
def test_fuse_and_threshold_equal_twins(shape, m):
    rng = np.random.default_rng(hash((shape, m)) % 2**32)
    stack = _stack(rng, m, shape)
    raw_w = rng.random((m, shape[1]))
    raw_w[0, 0] = 0 if m > 1 else 1  # a member that does not vote for a class
    w = K.normalise_weights(raw_w)
    thr = rng.uniform(0, 255, shape[1])
    fused = K.fuse(stack, w)
    np.testing.assert_array_equal(fused, K.fuse_numpy(stack, w))
    for a, b in zip(K.threshold(fused, thr), K.threshold_numpy(fused, thr)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(K.fuse_threshold(stack, w, thr), K.fuse_threshold_numpy(stack, w, thr)):
        np.testing.assert_array_equal(a, b)


def test_single_member_weight_one_is_plain_threshold():
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (1, 4, 3, 9, 11), dtype=np.uint8)
    for t in (0.0, 0.2, 0.3, 0.5, 101 / 255, 0.999):
        bits, counts = K.fuse_threshold(stack, K.normalise_weights(np.ones((1, 3))), np.full(3, t * 255))
        want = stack[0] > t * 255
        for c in range(3):
            np.testing.assert_array_equal((bits >> c) & 1, want[:, c])
            np.testing.assert_array_equal(counts[:, c], want[:, c].reshape(4, -1).sum(1))


def test_normalise_weights_errors():
    with pytest.raises(ValueError, match="zero total weight"):
        K.normalise_weights([[1, 0], [2, 0]])
    with pytest.raises(ValueError, match="finite"):
        K.normalise_weights([[np.nan, 1]])
    with pytest.raises(ValueError, match="weights shape"):
        K.fuse(np.zeros((2, 1, 3, 2, 2), np.uint8), K.normalise_weights(np.ones((3, 3))))


def _inplace_pair(kernel, twin, bits, counts, *args):
    b1, c1, b2, c2 = bits.copy(), counts.copy(), bits.copy(), counts.copy()
    kernel(b1, c1, *args)
    twin(b2, c2, *args)
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(c1, K.plane_counts(b1, counts.shape[1]))  # counts stay exact
    return b1, c1


@pytest.mark.parametrize("shape", SHAPES)
def test_gate_equals_twin(shape):
    rng = np.random.default_rng(1)
    bits, counts = _bits(rng, shape)
    d, c = shape[:2]
    cls = rng.uniform(0, 255, (d, c)).astype(np.float32)
    thr = rng.uniform(0, 255, c)
    minpix = rng.integers(0, shape[2] * shape[3] + 1, c)
    for args in [(cls, thr, minpix), (None, None, minpix), (cls, thr, None)]:
        _inplace_pair(K.gate, K.gate_numpy, bits, counts, *args)


@pytest.mark.parametrize("shape", SHAPES)
def test_truncate_equals_twin(shape):
    rng = np.random.default_rng(2)
    bits, counts = _bits(rng, shape)
    d, c = shape[:2]
    cls = rng.uniform(0, 255, (d, c)).astype(np.float32)
    lo, hi = K.keep_range(d, rng.integers(0, 3, c), rng.integers(0, 3, c), cls, np.full(c, 200.0), 1)
    _inplace_pair(K.truncate, K.truncate_numpy, bits, counts, lo, hi)


def test_keep_range_semantics():
    cls = np.zeros((10, 2), np.float32)
    cls[[2, 5], 0] = 255  # class 0: last classifier-positive slice 5; class 1 never positive
    lo, hi = K.keep_range(10, [1, 0], [2, 0], cls, [127.5, 127.5], 2)
    assert lo.tolist() == [1, 0] and hi.tolist() == [7, -1]
    lo, hi = K.keep_range(10, [0, 0], [3, 0])
    assert lo.tolist() == [0, 0] and hi.tolist() == [6, 9]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("conn", [4, 8])
@pytest.mark.parametrize("never_empty", [False, True])
def test_remove_small_2d_equals_twin(shape, conn, never_empty):
    rng = np.random.default_rng(3)
    bits, counts = _bits(rng, shape)
    # small minimums, and large ones that every component of a class can fall under (the guard then binds)
    for min_area in (rng.integers(0, 6, shape[1]), rng.integers(0, 40, shape[1])):
        _inplace_pair(K.remove_small_2d, K.remove_small_2d_numpy, bits, counts, min_area, conn, never_empty)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("conn", [4, 8])
@pytest.mark.parametrize("never_empty", [False, True])
def test_remove_small_3d_equals_twin(shape, conn, never_empty):
    rng = np.random.default_rng(4)
    bits, counts = _bits(rng, shape, p=0.35)
    for min_vol in (rng.integers(0, 12, shape[1]), rng.integers(0, 200, shape[1])):
        _inplace_pair(K.remove_small_3d, K.remove_small_3d_numpy, bits, counts, min_vol, conn, never_empty)


def _specks():
    """Class 0: a 2-pixel and a 3-pixel piece on slice 0, a 3-pixel piece and a single pixel on slice 2 (every
    2D and 3D component under 5); class 1: a 6-pixel piece on slice 1. Drawn by hand."""
    bits = np.zeros((3, 6, 6), np.uint8)
    bits[0, 0, 0:2] = 1
    bits[0, 4, 2:5] = 1
    bits[2, 1:4, 5] = 1
    bits[2, 5, 0] = 1
    bits[1, 2:4, 1:4] |= 2
    return bits


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_never_empty_keeps_the_largest_components(impl, dim):
    fn = {("2d", "numba"): K.remove_small_2d, ("2d", "numpy"): K.remove_small_2d_numpy,
          ("3d", "numba"): K.remove_small_3d, ("3d", "numpy"): K.remove_small_3d_numpy}[dim, impl]
    bits = _specks()
    # without the guard, minimum 5 empties class 0 and keeps class 1's 6 pixels
    b, c = bits.copy(), K.plane_counts(bits, 2)
    fn(b, c, [5, 5], 8)
    assert c[:, 0].sum() == 0 and c[:, 1].tolist() == [0, 6, 0]
    # with it: class 0 keeps its two 3-pixel pieces (a tie), nothing else; class 1 is untouched
    b, c = bits.copy(), K.plane_counts(bits, 2)
    fn(b, c, [5, 5], 8, True)
    want = np.zeros_like(bits)
    want[0, 4, 2:5] = 1
    want[2, 1:4, 5] = 1
    want[1, 2:4, 1:4] |= 2
    np.testing.assert_array_equal(b, want)
    assert c.tolist() == K.plane_counts(want, 2).tolist()
    # a minimum some component reaches: the guard changes nothing
    for m in (2, 3):
        b1, c1, b2, c2 = bits.copy(), K.plane_counts(bits, 2), bits.copy(), K.plane_counts(bits, 2)
        fn(b1, c1, [m, m], 8)
        fn(b2, c2, [m, m], 8, True)
        np.testing.assert_array_equal(b1, b2)
        assert c1[:, 0].sum() > 0


def test_connectivity_default_is_8():
    bits = np.zeros((1, 4, 4), np.uint8)
    bits[0, 0, 0] = bits[0, 1, 1] = 1  # diagonal pair: one component of 2 in 8-connectivity
    b, c = bits.copy(), K.plane_counts(bits, 1)
    K.remove_small_2d(b, c, [2])
    assert c[0, 0] == 2
    b, c = bits.copy(), K.plane_counts(bits, 1)
    K.remove_small_2d(b, c, [2], connectivity=4)
    assert c[0, 0] == 0
    with pytest.raises(ValueError, match="connectivity"):
        K.remove_small_2d(b, c, [2], connectivity=6)


@pytest.mark.parametrize("shape", SHAPES + [(9, 2, 4, 4)])
def test_z_smooth_equals_twin(shape):
    rng = np.random.default_rng(5)
    d, c = shape[:2]
    bits, _ = _bits(rng, shape, p=0.6)
    empty = rng.random((d, c)) < 0.5  # make presence along z flicker
    for k in range(c):
        bits[empty[:, k]] &= np.uint8(~(1 << k) & 0xFF)
    _inplace_pair(K.z_smooth, K.z_smooth_numpy, bits, K.plane_counts(bits, c))


def test_z_smooth_semantics():
    bits = np.zeros((6, 2, 2), np.uint8)
    bits[[0, 2, 4], 0, 0] = 1  # presence 1 0 1 0 1 0 -> 1 1 0 1 0 0 (all flips decided on the input)
    bits[2, 1, 1] = 1
    counts = K.plane_counts(bits, 1)
    K.z_smooth(bits, counts)
    assert K.plane_counts(bits, 1)[:, 0].tolist() == [1, 1, 0, 1, 0, 0]
    assert bits[1, 0, 0] == 1 and bits[1, 1, 1] == 0  # intersection of the neighbours' masks


@pytest.mark.parametrize("shape", SHAPES + [(2, 3, 40, 37)])
def test_rle_equals_twin(shape):
    rng = np.random.default_rng(6)
    d, c, h, w = shape
    bits, counts = _bits(rng, shape, p=0.7)
    bits[0] = 0
    if d > 1:
        bits[1] = (1 << c) - 1  # full planes: one run of h*w
    counts = K.plane_counts(bits, c)
    got = K.rle_encode_planes(bits, c, counts)
    assert got == K.rle_encode_planes_numpy(bits, c)
    assert got == K.rle_encode_planes(bits, c)
    for k, s in enumerate(got):
        np.testing.assert_array_equal(rle_decode(s, (h, w)), (bits[k // c] >> (k % c)) & 1)


def test_rle_buffer_growth_worst_case():
    bits = np.zeros((3, 128, 129), np.uint8)
    bits.reshape(3, -1)[:, ::2] = 1  # checkerboard-like: the maximum number of runs
    got = K.rle_encode_planes(bits, 1)
    assert got == K.rle_encode_planes_numpy(bits, 1)


@pytest.mark.parametrize("shape", SHAPES + [(4, 2, 6, 6)])
@pytest.mark.parametrize("conn", [4, 8])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])  # empty, random blobs, all on
def test_remove_relative_3d_equals_twin(shape, conn, p):
    rng = np.random.default_rng(7)
    bits, counts = _bits(rng, shape, p=p)
    for fraction in (rng.uniform(0, 1, shape[1]), np.zeros(shape[1]), np.ones(shape[1]),
                     np.full(shape[1], 0.5)):
        _inplace_pair(K.remove_relative_3d, K.remove_relative_3d_numpy, bits, counts, fraction, conn)


def test_remove_relative_3d_hand_checked():
    """One class, three 3D components of 12, 4 and 1 voxels (6-connected), plus a diagonal neighbour of the
    single voxel that joins it only under 26-connectivity. Fraction 0.3: keep >= 3.6 voxels; 0.34 of 12
    is 4.08, so the 4-voxel blob goes too; 1.0 keeps only the largest; 0 keeps everything."""
    bits = np.zeros((3, 6, 6), np.uint8)
    bits[0:3, 0:2, 0:2] = 1  # 12 voxels
    bits[1, 4, 1:5] = 1  # 4 voxels in a row
    bits[0, 4, 5] = 1  # touches the row only diagonally (z and x): 26-connected to it
    counts0 = K.plane_counts(bits, 1)
    want = {(8, 0.3): 17, (8, 0.34): 17, (8, 0.42): 12, (4, 0.3): 16, (4, 0.34): 12, (4, 1.0): 12,
            (8, 1.0): 12, (8, 0.0): 17, (4, 0.0): 17}  # kept voxels: (connectivity, fraction) -> count
    for (conn, f), n in want.items():
        for kernel in (K.remove_relative_3d, K.remove_relative_3d_numpy):
            b, c = bits.copy(), counts0.copy()
            kernel(b, c, np.array([f]), conn)
            assert int(c.sum()) == n == int(b.sum()), (conn, f, kernel.__name__)
            assert b[0:3, 0:2, 0:2].all()  # the largest always stays
