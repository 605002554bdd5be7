import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaggle_kit.data.rle import rle_decode, rle_encode
from kaggle_kit.data.synthetic import GEOMETRIES

REAL = ("28094 3 28358 7 28623 9 28889 9 29155 9 29421 9 29687 9 29953 9 30219 9 30484 10 30750 10 31016 10 "
        "31282 10 31548 10 31814 10 32081 9 32347 8 32614 6")


def brute_encode(mask):
    """Independent reference: walk the flattened mask pixel by pixel."""
    flat = mask.reshape(-1)
    out, i = [], 0
    while i < flat.size:
        if flat[i]:
            j = i
            while j < flat.size and flat[j]:
                j += 1
            out += [i + 1, j - i]
            i = j
        else:
            i += 1
    return " ".join(map(str, out))


@st.composite
def masks(draw):
    w, h, _, _, _ = draw(st.sampled_from(GEOMETRIES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.001, 0.05, 0.5, 0.99, 1.0]))
    m = (rng.random((h, w)) < density).astype(np.uint8)
    return m


@settings(max_examples=60, deadline=None)
@given(masks())
def test_round_trip_every_geometry(mask):
    rle = rle_encode(mask)
    assert rle == brute_encode(mask)
    back = rle_decode(rle, mask.shape)
    assert back.dtype == np.uint8 and back.shape == mask.shape
    np.testing.assert_array_equal(back, mask)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_round_trip_small_odd_shapes(h, w, seed):
    m = (np.random.default_rng(seed).random((h, w)) < 0.4).astype(np.uint8)
    np.testing.assert_array_equal(rle_decode(rle_encode(m), (h, w)), m)


def test_real_label_decodes_to_known_blob():
    m = rle_decode(REAL, (266, 266))
    rows, cols = np.nonzero(m)
    # Hand-checked: pixel 28094 (1-indexed) is flat index 28093 = 105 * 266 + 163 -> row 105, col 163;
    # the last run 32614+6 ends at flat 32619 = 122 * 266 + 167 -> row 122, cols 161..166.
    assert m[105, 163] == 1 and m[105, 162] == 0 and m[105, 166] == 0
    assert m[122, 161:167].all() and m[122].sum() == 6
    assert rows.min() == 105 and rows.max() == 122  # DESIGN.md: a blob in rows ~105-122
    assert 155 <= cols.min() and cols.max() <= 175  # DESIGN.md: columns ~161-172 (159..168 exactly)
    assert m.sum() == sum(int(x) for x in REAL.split()[1::2])
    assert rle_encode(m) == REAL


def test_first_number_is_width():
    # A 360x310 (W x H) image is an array of shape (310, 360): pixel 361 is row 1, column 0.
    m = rle_decode("361 2", (310, 360))
    assert m.shape == (310, 360)
    assert m[1, 0] == 1 and m[1, 1] == 1 and m.sum() == 2


def test_empty():
    assert rle_encode(np.zeros((4, 5), np.uint8)) == ""
    for empty in ("", "  ", None, float("nan")):
        assert rle_decode(empty, (4, 5)).sum() == 0


@pytest.mark.parametrize("rle, msg", [
    ("1 2 3", "odd number"),
    ("1 x", "not an integer"),
    ("1.5 2", "not an integer"),
    ("0 2", "< 1"),
    ("3 0", "length"),
    ("19 3", "beyond"),
    ("5 2 1 1", "unsorted or overlapping"),
    ("1 5 4 2", "unsorted or overlapping"),
])
def test_malformed_rle(rle, msg):
    with pytest.raises(ValueError, match=msg):
        rle_decode(rle, (4, 5))


def test_encode_rejects_3d():
    with pytest.raises(ValueError, match="2D"):
        rle_encode(np.zeros((2, 2, 2)))
