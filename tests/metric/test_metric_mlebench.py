"""The ``mlebench`` metric variant (MLE-bench's grader): hand-computed cases, a brute-force property test,
and the CSV grader (position pairing, column-major decoding, lenient run cutting, invalid RLEs)."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import directed_hausdorff

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.data.rle import rle_encode
from kaggle_kit.metric.mlebench import column_major_view, hausdorff_mlebench
from kaggle_kit.metric.mlebench_grade import InvalidSubmission, grade_frames, parse_rle_lenient
from kaggle_kit.metric.scorer import MetricConfig, Scorer, score_volumes

S3 = math.sqrt(3.0)


def _vol(shape, voxels, bit=1):
    v = np.zeros(shape, np.uint8)
    for z, y, x in voxels:
        v[z, y, x] |= bit
    return v


def _score(pred, truth, name="mlebench"):
    return score_volumes([("case1_day0", pred, truth)], name)


# ------------------------------------------------------------------------------------------------------------
# hand-computed values


def test_config_name_and_default_unchanged():
    assert MetricConfig.from_name("mlebench").hd_variant == "mlebench"
    assert MetricConfig.from_name("MLE-bench").name == "mlebench"
    assert MetricConfig().hd_variant == "3d"
    with pytest.raises(KeyError, match="no modifier"):
        MetricConfig.from_name("mlebench+empty_dice_one")


def test_classes_are_ored_before_hausdorff():
    # truth: large bowel at (0,0,0), small bowel at (1,3,3); pred swaps the classes: the OR volumes are
    # identical, so hd = 0, while every Dice row is 0 (4 rows: each class row has one side non-empty)
    truth = _vol((2, 4, 4), [(0, 0, 0)], 1) | _vol((2, 4, 4), [(1, 3, 3)], 2)
    pred = _vol((2, 4, 4), [(0, 0, 0)], 2) | _vol((2, 4, 4), [(1, 3, 3)], 1)
    r = _score(pred, truth)
    assert r["hausdorff"] == 0.0 and r["dice"] == 0.0 and r["n_dice_rows"] == 4
    assert r["score"] == pytest.approx(0.6, abs=1e-15)
    assert math.isnan(r["per_class"]["stomach"]["hausdorff"])
    # the default metric scores each class on its own: both classes' hd are > 0 there
    assert _score(pred, truth, "3d")["hausdorff"] > 0.1


def test_ten_times_rule():
    t = np.zeros((1, 1, 12), bool)
    t[0, 0, 0] = True
    p = np.zeros_like(t)
    p[0, 0, :10] = True  # 10 voxels: not more than 10x, distance computed: farthest x=9 -> 9/12
    assert hausdorff_mlebench(p, t) == pytest.approx(9 / 12 / S3, abs=1e-15)
    p[0, 0, :11] = True  # 11 voxels > 10 x 1: scores 1 whatever the distance
    assert hausdorff_mlebench(p, t) == 1.0


def test_unit_cube_divides_by_shape_not_shape_minus_one():
    shape = (5, 4, 8)
    t = _vol(shape, [(0, 0, 0)]).astype(bool)
    p = _vol(shape, [(0, 0, 0), (2, 1, 2)]).astype(bool)
    want = math.sqrt((2 / 5) ** 2 + (1 / 4) ** 2 + (2 / 8) ** 2) / S3
    assert hausdorff_mlebench(p, t) == pytest.approx(want, abs=1e-15)
    d_minus_1 = math.sqrt((2 / 4) ** 2 + (1 / 3) ** 2 + (2 / 7) ** 2) / S3
    assert abs(hausdorff_mlebench(p, t) - d_minus_1) > 0.05
    # through the Scorer (square slices, so the column-major view is a transpose: same value)
    sq = (5, 6, 6)
    r = _score(_vol(sq, [(0, 0, 0), (2, 1, 2)]), _vol(sq, [(0, 0, 0)]))
    assert r["hausdorff"] == pytest.approx(math.sqrt((2 / 5) ** 2 + (1 / 6) ** 2 + (2 / 6) ** 2) / S3, abs=1e-15)


def test_empty_identical_one_empty():
    z = np.zeros((3, 4, 5), bool)
    a = z.copy()
    a[1, 2, 3] = True
    assert math.isnan(hausdorff_mlebench(z, z))
    assert hausdorff_mlebench(a, a) == 0.0
    assert hausdorff_mlebench(z, a) == 1.0 and hausdorff_mlebench(a, z) == 1.0
    # Scorer: a both-empty case-day is skipped by the Hausdorff mean, a one-empty one counts 1
    shape = (3, 4, 4)
    s = Scorer("mlebench")
    s.add("case1_day0", np.zeros(shape, np.uint8), np.zeros(shape, np.uint8))
    s.add("case1_day1", _vol(shape, [(0, 1, 1)]), _vol(shape, [(0, 1, 1), (2, 1, 1)]))  # hd 2/3 / sqrt3
    r = s.result()
    assert r["n_hd_terms"] == 1 and r["hausdorff"] == pytest.approx(2 / 3 / S3, abs=1e-15)
    s.add("case1_day2", np.zeros(shape, np.uint8), _vol(shape, [(0, 0, 0)]))
    assert s.result()["hausdorff"] == pytest.approx((2 / 3 / S3 + 1) / 2, abs=1e-15)


def _frame(rows, col="predicted", hw=None):
    df = pd.DataFrame(rows, columns=["id", "class", col])
    if hw is not None:
        df["image_height"], df["image_width"] = hw
    return df


def test_column_major_decoding_on_a_360x310_slice():
    # a 360x310 file name is an array of H=310 rows, W=360 columns; truth pixel at flat 0, prediction at
    # flat 0 and 400. Row-major, 400 is (y=1, x=40); the grader decodes column-major: (400 % 310, 400 // 310)
    h, w = 310, 360
    want_hd = math.sqrt((90 / h) ** 2 + (1 / w) ** 2) / S3  # D = 1: no z term
    ids = ["case9_day1_slice_0001"] * 3
    ans = _frame(list(zip(ids, CLASSES, ["1 1", "", ""])), hw=(h, w))
    sub = _frame(list(zip(ids, CLASSES, ["1 1 401 1", "", ""])))
    g = grade_frames(sub, ans)
    assert g.hausdorff == pytest.approx(want_hd, abs=1e-15)
    assert g.dice == pytest.approx(2 / 3, abs=1e-15) and g.n_dice_rows == 1
    assert g.score == pytest.approx(0.4 * 2 / 3 + 0.6 * (1 - want_hd), abs=1e-15)
    # the in-memory variant takes true (row-major) volumes and applies the same view
    truth = np.zeros((1, h, w), np.uint8)
    truth[0, 0, 0] = 1
    pred = truth.copy()
    pred[0, 1, 40] = 1
    r = _score(pred, truth)
    assert r["hausdorff"] == pytest.approx(want_hd, abs=1e-15) and r["score"] == pytest.approx(g.score, abs=1e-15)
    # on the true geometry the distance would have been sqrt(1/310**2 + 40/360**2)
    assert abs(want_hd - math.sqrt((1 / h) ** 2 + (40 / w) ** 2) / S3) > 0.1
    assert column_major_view(np.arange(6).reshape(1, 2, 3)).tolist() == [[[0, 2, 4], [1, 3, 5]]]


def test_rows_paired_by_position():
    # two slices, one class row each holding a mask; the submission has the right masks but the rows of
    # slice 1 and slice 2 swapped: the grader compares each row with the answer row at its position
    h = w = 4
    ids = ["case1_day0_slice_0001"] * 3 + ["case1_day0_slice_0002"] * 3
    cls = list(CLASSES) * 2
    ans = _frame(list(zip(ids, cls, ["1 2", "", "", "", "", "9 4"])), hw=(h, w))
    sub_rows = list(zip(ids, cls, ["1 2", "", "", "", "", "9 4"]))
    sub_rows = sub_rows[3:] + sub_rows[:3]  # slice 2's rows first
    g = grade_frames(_frame(sub_rows), ans)
    # row 0: sub "" vs ans "1 2" -> 0; row 2: sub "9 4" vs ans "" -> 0; row 3: "1 2" vs "" -> 0;
    # row 5: "" vs "9 4" -> 0; other rows both empty
    assert g.dice == 0.0 and g.n_dice_rows == 4
    assert g.mismatched_rows == [0, 1, 2, 3, 4, 5]
    # Hausdorff: each side groups its own ids (sorted), so the case-day volumes are identical: hd 0
    assert g.hausdorff == 0.0 and g.score == pytest.approx(0.6, abs=1e-15)
    # in answer order the same masks score 1
    assert grade_frames(_frame(list(zip(ids, cls, ans["predicted"]))), ans).score == 1.0


def test_lenient_runs_and_invalid_rles():
    assert [a.tolist() for a in parse_rle_lenient("9 5", 10)] == [[8], [10]]  # cut at the end
    assert [a.tolist() for a in parse_rle_lenient("1 2 20 3", 10)] == [[0], [2]]  # past the end: dropped
    assert [a.tolist() for a in parse_rle_lenient("1 2 3", 10)] == [[0], [2]]  # odd: last start unused
    assert [a.tolist() for a in parse_rle_lenient("1 2 3 1", 10)] == [[0, 2], [2, 3]]  # adjacent is fine
    assert parse_rle_lenient(float("nan"), 10)[0].size == 0
    for bad in ("1 5 3 2", "5 1 1 1", "0 1", "1 0", "1 x", "3 2 2 1 1"):
        with pytest.raises(ValueError):
            parse_rle_lenient(bad, 10)
    ans = _frame([("case1_day0_slice_0001", "stomach", "")], hw=(2, 2))
    with pytest.raises(InvalidSubmission, match="line 2"):
        grade_frames(_frame([("case1_day0_slice_0001", "stomach", "3 2 1 1")]), ans)
    assert grade_frames(_frame([("case1_day0_slice_0001", "stomach", "4 9")]), ans).dice == 0.0


# ------------------------------------------------------------------------------------------------------------
# brute force


def _direct_case_day(pred, truth):
    """Independent slow twin of the grader's Hausdorff term from row-major bit flags."""
    d, h, w = truth.shape
    p = ((pred & 7) != 0).reshape(d, w, h).transpose(0, 2, 1)  # what order="F" decoding gives
    t = ((truth & 7) != 0).reshape(d, w, h).transpose(0, 2, 1)
    if not p.any() and not t.any():
        return float("nan")
    if np.array_equal(p, t):
        return 0.0
    if not p.any() or not t.any() or p.sum() > 10 * t.sum():
        return 1.0
    pc, tc = np.argwhere(p) / np.array([d, h, w]), np.argwhere(t) / np.array([d, h, w])
    return max(directed_hausdorff(pc, tc)[0], directed_hausdorff(tc, pc)[0]) / S3


def _direct_score(items):
    dice, hd = [], []
    for _, pred, truth in items:
        for c in range(3):
            p, t = (pred >> c) & 1, (truth >> c) & 1
            inter, den = (p & t).sum((1, 2)), p.sum((1, 2)) + t.sum((1, 2))
            dice += [2 * i / n for i, n in zip(inter, den) if n]
        hd.append(_direct_case_day(pred, truth))
    d = np.mean(dice) if dice else 1.0
    hv = [v for v in hd if not math.isnan(v)]
    return 0.4 * d + 0.6 * (1 - (np.mean(hv) if hv else 0.0)), d, (np.mean(hv) if hv else 0.0)


@st.composite
def _case_days(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    out = []
    for k in range(n):
        d = draw(st.integers(1, 6))
        seed = draw(st.integers(0, 2 ** 31))
        rng = np.random.default_rng(seed)
        dens_t, dens_p = draw(st.sampled_from([0.0, 0.05, 0.3])), draw(st.sampled_from([0.0, 0.05, 0.3, 0.9]))
        truth = (rng.random((d, h, w, 3)) < dens_t)
        pred = truth.copy() if draw(st.booleans()) else (rng.random((d, h, w, 3)) < dens_p)
        if draw(st.booleans()):  # a near-miss: flip a few voxels
            pred ^= rng.random(pred.shape) < 0.05
        bits = np.array([1, 2, 4], np.uint8)
        out.append((f"case1_day{k}", (pred * bits).sum(-1).astype(np.uint8), (truth * bits).sum(-1).astype(np.uint8)))
    return out


@settings(max_examples=150, deadline=None)
@given(_case_days())
def test_mlebench_equals_direct_implementation(items):
    r = score_volumes(items, "mlebench")
    score, dice, hd = _direct_score(items)
    assert r["hausdorff"] == pytest.approx(hd, abs=1e-12)
    assert r["dice"] == pytest.approx(dice, abs=1e-12)
    assert r["score"] == pytest.approx(score, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(_case_days())
def test_csv_grader_equals_in_memory_variant(items):
    """A submission written row-major by the toolkit, graded as MLE-bench does, equals Scorer("mlebench")."""
    sub, ans = [], []
    for cd, pred, truth in items:
        d, h, w = truth.shape
        for z in range(d):
            for c, name in enumerate(CLASSES):
                id_ = f"{cd}_slice_{z + 1:04d}"
                sub.append((id_, name, rle_encode((pred[z] >> c) & 1)))
                ans.append((id_, name, rle_encode((truth[z] >> c) & 1), h, w))
    g = grade_frames(pd.DataFrame(sub, columns=["id", "class", "predicted"]),
                     pd.DataFrame(ans, columns=["id", "class", "predicted", "image_height", "image_width"]))
    r = score_volumes(items, "mlebench")
    if g.n_dice_rows:
        assert g.dice == pytest.approx(r["dice"], abs=1e-12)
    if g.n_hd_terms:
        assert g.hausdorff == pytest.approx(r["hausdorff"], abs=1e-12)
    if g.n_dice_rows and g.n_hd_terms:
        assert g.score == pytest.approx(r["score"], abs=1e-12)
    assert math.isnan(g.dice) == (g.n_dice_rows == 0)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 5), (3, 7, 9), (2, 16, 17), (1, 8, 8)])
@pytest.mark.parametrize("n_classes", [1, 3, 4])
def test_counts_and_any_kernel_equals_numpy_twin(shape, n_classes):
    from kaggle_kit.metric.mlebench import counts_and_any, counts_and_any_np

    rng = np.random.default_rng(sum(shape) + n_classes)
    for density in (0.0, 0.05, 0.5):
        pred = (rng.integers(0, 256, shape) * (rng.random(shape) < density)).astype(np.uint8)
        truth = (rng.integers(0, 256, shape) * (rng.random(shape) < density)).astype(np.uint8)
        sc, av = counts_and_any(pred, truth, n_classes)
        counts, p_ref, t_ref, box = counts_and_any_np(pred, truth, n_classes)
        np.testing.assert_array_equal(sc.counts, counts)
        np.testing.assert_array_equal(av.p_any, p_ref)
        np.testing.assert_array_equal(av.t_any, t_ref)
        if box[1] >= 0:  # the kernel's box holds the union (grown by whole words: maybe a little looser)
            assert (av.box[[0, 2, 4]] <= box[[0, 2, 4]]).all() and (av.box[[1, 3, 5]] >= box[[1, 3, 5]]).all()
            assert av.box[0] == box[0] and av.box[1] == box[1]  # words are grown only within one slice
        else:
            assert av.box[1] == -1
