"""The competition metric against an independent brute force (all pairwise distances on tiny volumes), and
every numba kernel against its numpy twin."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaggle_kit.metric import kernels as K
from kaggle_kit.metric.scorer import HD_VARIANTS, MetricConfig, Scorer, hausdorff_normalised, score_volumes

VARIANTS = [v for v in HD_VARIANTS if v != "mlebench"]  # per-class variants; mlebench: test_metric_mlebench.py


# ------------------------------------------------------------------------------------------------------------
# independent reference: pairwise distances on coordinates, straight from the definitions


def _directed(a: np.ndarray, b: np.ndarray) -> float:
    """max over rows of a of min Euclidean distance to rows of b (float coordinates)."""
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return float(d.min(1).max())


def ref_hd_terms(p: np.ndarray, t: np.ndarray, variant: str) -> list[float]:
    """Normalised Hausdorff terms of one class of one case-day (bool (D, H, W)): [] when not scored."""
    d, h, w = t.shape
    if variant == "2d":
        out = []
        for z in range(d):
            if not t[z].any():
                continue
            if not p[z].any():
                out.append(1.0)
                continue
            a, b = np.argwhere(p[z]).astype(float), np.argwhere(t[z]).astype(float)
            out.append(max(_directed(a, b), _directed(b, a)) / math.sqrt(h * h + w * w))
        return out
    if not t.any():
        return []
    if not p.any():
        return [1.0]
    a, b = np.argwhere(p).astype(float), np.argwhere(t).astype(float)
    if variant == "3d_unit_cube":
        scale = 1.0 / np.maximum(np.array([d, h, w], float) - 1, 1)
        a, b, norm = a * scale, b * scale, math.sqrt(3)
    else:
        norm = math.sqrt(d * d + h * h + w * w)
    hd = _directed(a, b) if variant == "3d_directed" else max(_directed(a, b), _directed(b, a))
    return [hd / norm]


def ref_result(items, variant="3d", empty_dice_one=False, n_classes=3) -> dict:
    """score / dice / hausdorff and per-class values of (case_day, pred, truth) bit-flag volumes."""
    dice = [[] for _ in range(n_classes)]
    hd = [[] for _ in range(n_classes)]
    tp = np.zeros(n_classes)
    fp = np.zeros(n_classes)
    fn = np.zeros(n_classes)
    for _, pred, truth in items:
        for c in range(n_classes):
            p = ((pred >> c) & 1).astype(bool)
            t = ((truth >> c) & 1).astype(bool)
            for z in range(len(p)):
                sp, st_, si = p[z].sum(), t[z].sum(), (p[z] & t[z]).sum()
                if sp + st_ == 0:
                    if empty_dice_one:
                        dice[c].append(1.0)
                    continue
                dice[c].append(2.0 * si / (sp + st_))
            hd[c] += ref_hd_terms(p, t, variant)
            tp[c] += (p & t).sum()
            fp[c] += (p & ~t).sum()
            fn[c] += (~p & t).sum()
    all_d = [v for per_c in dice for v in per_c]
    all_h = [v for per_c in hd for v in per_c]
    d_all = float(np.mean(all_d)) if all_d else 1.0
    h_all = float(np.mean(all_h)) if all_h else 0.0
    per = {}
    for c in range(n_classes):
        dc = float(np.mean(dice[c])) if dice[c] else 1.0
        hc = float(np.mean(hd[c])) if hd[c] else 0.0
        per[c] = {"dice": dc, "hausdorff": hc, "score": 0.4 * dc + 0.6 * (1 - hc),
                  "iou": tp[c] / (tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else math.nan,
                  "precision": tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else math.nan,
                  "recall": tp[c] / (tp[c] + fn[c]) if tp[c] + fn[c] else math.nan}
    return {"score": 0.4 * d_all + 0.6 * (1 - h_all), "dice": d_all, "hausdorff": h_all, "per_class": per}


def assert_result_close(got: dict, ref: dict, classes):
    for k in ("score", "dice", "hausdorff"):
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    for c, name in enumerate(classes):
        for k, v in ref["per_class"][c].items():
            g = got["per_class"][name][k]
            if math.isnan(v):
                assert math.isnan(g), (name, k)
            else:
                assert g == pytest.approx(v, abs=1e-12), (name, k)


def random_bits(rng, shape, n_classes=3, density=None) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for c in range(n_classes):
        dens = rng.uniform(0.0, 0.5) if density is None else density
        out |= (rng.random(shape) < dens).astype(np.uint8) << c
    return out


def blob_bits(rng, shape, n_classes=3) -> np.ndarray:
    """Compact random blobs (ellipsoids), some classes possibly empty: closer to organs than noise."""
    d, h, w = shape
    zz, yy, xx = np.mgrid[:d, :h, :w]
    out = np.zeros(shape, np.uint8)
    for c in range(n_classes):
        for _ in range(int(rng.integers(0, 3))):
            cz, cy, cx = rng.uniform(0, d), rng.uniform(0, h), rng.uniform(0, w)
            rz, ry, rx = rng.uniform(0.5, d / 2 + 1), rng.uniform(0.5, h / 2 + 1), rng.uniform(0.5, w / 2 + 1)
            m = ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            out |= m.astype(np.uint8) << c
    return out


# ------------------------------------------------------------------------------------------------------------
# hausdorff_normalised vs brute force


def _ref_single(p, t, variant):
    terms = ref_hd_terms(p, t, variant)
    return float(np.mean(terms)) if terms else math.nan


@pytest.mark.parametrize("variant", VARIANTS)
def test_hausdorff_brute_force_every_empty_combination(variant):
    rng = np.random.default_rng(0)
    shape = (5, 7, 6)
    full = rng.random(shape) < 0.3
    full[2, 3, 3] = True
    empty = np.zeros(shape, bool)
    for p, t in ((empty, empty), (full, empty), (empty, full), (full, full), (full, np.roll(full, 2, 1))):
        got = hausdorff_normalised(p, t, variant)
        ref = _ref_single(p, t, variant)
        if math.isnan(ref):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(ref, abs=1e-12)
    assert math.isnan(hausdorff_normalised(full, empty, variant))  # empty truth: not scored
    assert hausdorff_normalised(empty, full, variant) == 1.0  # empty prediction on organs: worst
    assert hausdorff_normalised(full, full, variant) == 0.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_hausdorff_brute_force_seeded(variant):
    rng = np.random.default_rng(1)
    for _ in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 9, 3))
        if rng.random() < 0.5:
            p, t = random_bits(rng, shape, 1).astype(bool), random_bits(rng, shape, 1).astype(bool)
        else:
            p, t = blob_bits(rng, shape, 1).astype(bool), blob_bits(rng, shape, 1).astype(bool)
        got, ref = hausdorff_normalised(p, t, variant), _ref_single(p, t, variant)
        assert (math.isnan(got) and math.isnan(ref)) or got == pytest.approx(ref, abs=1e-12), (shape, variant)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 6), h=st.integers(1, 9), w=st.integers(1, 19), seed=st.integers(0, 2**31 - 1),
       dp=st.floats(0, 0.6), dt=st.floats(0, 0.6), variant=st.sampled_from(VARIANTS))
def test_hausdorff_brute_force_hypothesis(d, h, w, seed, dp, dt, variant):
    rng = np.random.default_rng(seed)
    p, t = rng.random((d, h, w)) < dp, rng.random((d, h, w)) < dt
    got, ref = hausdorff_normalised(p, t, variant), _ref_single(p, t, variant)
    assert (math.isnan(got) and math.isnan(ref)) or got == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------------------------------------------------
# Scorer vs brute force


@pytest.mark.parametrize("name", ["3d", "3d_directed", "2d", "3d_unit_cube", "3d+empty_dice_one",
                                  "2d+empty_dice_one"])
def test_scorer_matches_brute_force(name):
    cfg = MetricConfig.from_name(name)
    rng = np.random.default_rng(2)
    items = []
    for i in range(6):
        shape = (5, 7, 6) if i < 3 else tuple(int(v) for v in rng.integers(1, 8, 3))
        truth = blob_bits(rng, shape) if i % 2 else random_bits(rng, shape)
        pred = random_bits(rng, shape) if i == 4 else blob_bits(rng, shape)
        if i == 5:
            pred = np.zeros(shape, np.uint8)  # an empty prediction
        items.append((f"case{i}_day0", pred, truth))
    scorer = Scorer(cfg)
    for cd, p, t in items:
        scorer.add(cd, p, t)
    ref = ref_result(items, cfg.hd_variant, cfg.empty_dice_one)
    assert_result_close(scorer.result(), ref, scorer.classes)
    assert_result_close(score_volumes(items, cfg), ref, scorer.classes)


@pytest.mark.parametrize("name", ["3d", "3d_directed", "2d", "3d_unit_cube", "3d+empty_dice_one"])
def test_identical_scores_one_and_empty_prediction_scores_zero(name):
    rng = np.random.default_rng(3)
    truth = blob_bits(rng, (6, 9, 8))
    truth[2, 4, 4] = 0b111  # every class present
    s = Scorer(name)
    s.add("case1_day0", truth, truth)
    assert s.result()["score"] == 1.0
    assert all(v["score"] == 1.0 and v["iou"] == 1.0 for v in s.result()["per_class"].values())
    s = Scorer(name)
    s.add("case1_day0", np.zeros_like(truth), truth)
    r = s.result()
    assert r["hausdorff"] == 1.0
    if name == "3d+empty_dice_one":
        assert 0 < r["dice"] < 1  # both-empty rows count 1
    else:
        assert r["score"] == 0.0 and r["dice"] == 0.0


def test_nothing_to_score_is_neutral_and_false_positives_cost_dice_only():
    z = np.zeros((3, 4, 5), np.uint8)
    s = Scorer()
    s.add("case1_day0", z, z)
    r = s.result()
    assert (r["score"], r["dice"], r["hausdorff"], r["n_dice_rows"], r["n_hd_terms"]) == (1.0, 1.0, 0.0, 0, 0)
    assert math.isnan(r["per_class"]["stomach"]["iou"])
    p = z.copy()
    p[1, 2, 2] = 0b100  # a stomach pixel where the truth has none: dice row 0, no Hausdorff term
    s = Scorer()
    s.add("case1_day0", p, z)
    r = s.result()
    assert (r["dice"], r["hausdorff"], r["n_hd_terms"]) == (0.0, 0.0, 0)
    assert r["score"] == pytest.approx(0.6)


def test_case_day_table_worst_first_and_records():
    rng = np.random.default_rng(4)
    truth = blob_bits(rng, (5, 7, 6))
    truth[2, 3, 3] = 0b111
    s = Scorer()
    good = s.add("case1_day0", truth, truth)
    bad = s.add("case2_day0", np.zeros_like(truth), truth)
    mid = s.add("case3_day0", blob_bits(rng, truth.shape), truth)
    table = s.case_day_table()
    assert list(table["case_day"]) == ["case2_day0", "case3_day0", "case1_day0"]
    assert table["score"].is_monotonic_increasing
    assert good["score"] == 1.0 and bad["score"] == 0.0 and 0 <= mid["score"] <= 1
    assert {"dice_stomach", "hd_stomach", "dice", "hausdorff", "score"} <= set(table.columns)
    with pytest.raises(ValueError, match="already added"):
        s.add("case1_day0", truth, truth)
    with pytest.raises(ValueError, match="shape"):
        s.add("case9_day0", truth, truth[:-1])


def test_metric_names():
    assert MetricConfig.from_name("default") == MetricConfig()
    assert MetricConfig.from_name("2d+empty_dice_one") == MetricConfig("2d", True)
    assert MetricConfig.from_name("directed").hd_variant == "3d_directed"
    assert MetricConfig.from_name("unit_cube").hd_variant == "3d_unit_cube"
    for v in VARIANTS:
        for e in (False, True):
            cfg = MetricConfig(v, e)
            assert MetricConfig.from_name(cfg.name) == cfg
    with pytest.raises(KeyError, match="options"):
        MetricConfig.from_name("hausdorf")
    with pytest.raises(KeyError, match="options"):
        MetricConfig(hd_variant="4d")
    with pytest.raises(KeyError, match="two Hausdorff variants"):
        MetricConfig.from_name("3d+2d")


def test_realistic_shapes_match_scipy_directed_hausdorff():
    """Organ-like blobs on a 24x64x72 volume: same values as the public-notebook scipy approach."""
    from scipy import ndimage
    from scipy.spatial.distance import directed_hausdorff

    rng = np.random.default_rng(5)
    shape = (24, 64, 72)
    truth = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for c in range(3):
        field = ndimage.gaussian_filter(rng.normal(size=shape), (2, 4, 4))
        t = field > np.quantile(field, 0.93)
        p = ndimage.binary_dilation(t, iterations=1) if c != 1 else ndimage.binary_erosion(t)
        p[rng.integers(0, 24), rng.integers(0, 60):, :4] = True  # a far false positive
        truth |= t.astype(np.uint8) << c
        pred |= p.astype(np.uint8) << c
    s = Scorer()
    rec = s.add("case1_day0", pred, truth)
    norm = math.sqrt(sum(n * n for n in shape))
    for c in range(3):
        a, b = np.argwhere((pred >> c) & 1), np.argwhere((truth >> c) & 1)
        ref = max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0]) / norm
        assert rec["hd"][c] == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------------------------------------------------
# numba kernels vs numpy twins

ODD_SHAPES = [(1, 1, 1), (1, 1, 9), (2, 3, 17), (3, 5, 13), (4, 7, 8), (2, 2, 67), (5, 9, 31)]


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_scan_matches_numpy_twin(shape):
    rng = np.random.default_rng(6)
    for n_classes in (1, 3, 4):
        for density in (0.0, 0.1, 0.5, 0.95):
            p = random_bits(rng, shape, n_classes, density) | (rng.integers(0, 256, shape) & 0xF0).astype(np.uint8)
            t = random_bits(rng, shape, n_classes, density)
            for a, b in zip(K.scan(p, t, n_classes), K.scan_np(p, t, n_classes)):
                np.testing.assert_array_equal(a, b)


def test_scan_unaligned_views_and_run_overflow():
    rng = np.random.default_rng(7)
    buf = random_bits(rng, (3 * 5 * 17 + 3,), 3, 0.4)
    p = buf[3:].reshape(3, 5, 17)  # an odd byte offset: unaligned uint64 words
    t = np.roll(p, 1)
    for a, b in zip(K.scan(p, t, 3), K.scan_np(p, t, 3)):
        np.testing.assert_array_equal(a, b)
    # more runs than the first guess of capacity: the scan is redone with room for all of them
    checker = (np.indices((2, 64, 300)).sum(0) % 2).astype(np.uint8) * 0b11
    for a, b in zip(K.scan(checker, checker ^ 1, 2), K.scan_np(checker, checker ^ 1, 2)):
        np.testing.assert_array_equal(a, b)


def _weights(rng, kind):
    if kind == "unit":
        return (1, 1, 1)
    if kind == "small":
        return tuple(int(v) for v in rng.integers(1, 40, 3))
    return tuple(int(v) for v in rng.integers(1, 10**9, 3))  # unit-cube-like: huge exact integers


@pytest.mark.parametrize("shape", ODD_SHAPES + [(6, 8, 40), (3, 4, 90)])
@pytest.mark.parametrize("wkind", ["unit", "small", "huge"])
def test_directed_methods_match_numpy_twin(shape, wkind):
    rng = np.random.default_rng(8)
    for _ in range(6):
        p = random_bits(rng, shape, 3)
        t = random_bits(rng, shape, 3)
        w = _weights(rng, wkind)
        for sb, db in ((0, 0), (1, 2), (2, 1)):
            ref = K.directed_max_sq_np(p, sb, t, db, *w)
            for method in K.METHODS:
                assert K.directed_max_sq(p, sb, t, db, w, method) == ref, (method, sb, db, w)


@pytest.mark.parametrize("shape", ODD_SHAPES + [(3, 8, 70)])
def test_slices_directed_match_numpy_twin(shape):
    rng = np.random.default_rng(9)
    for _ in range(6):
        p, t = random_bits(rng, shape, 2), random_bits(rng, shape, 2)
        w = tuple(int(v) for v in rng.integers(1, 30, 2))
        for sb, db in ((0, 0), (1, 0)):
            ref = K.slices_directed_max_sq_np(p, sb, t, db, *w)
            for method in K.METHODS:
                np.testing.assert_array_equal(K.slices_directed_max_sq(p, sb, t, db, w, method), ref)


def test_runs_budget_falls_back_to_edt():
    """A large false positive far from a small truth exceeds the run search's budget: ``auto`` finishes
    with the EDT, and all methods agree."""
    shape = (10, 40, 60)
    p = np.zeros(shape, np.uint8)
    t = np.zeros(shape, np.uint8)
    t[0, 0, 0] = 1
    p[5:, 20:, 30:] = 1
    sc = K.scan(p, t, 1)
    box = K._union_box(sc.pbox[:, 0], sc.tbox[:, 0])
    assert K._directed_runs(sc.row_ptr[0], sc.row_ptr[1], sc.begin, sc.end, t.reshape(-1), np.int64(0),
                            shape[1], shape[2], sc.pbox[:, 0], sc.tbox[:, 0], box[0], box[1], np.int64(1),
                            np.int64(1), np.int64(1), np.int64(10), K.INF) == -1
    ref = K.directed_max_sq_np(p, 0, t, 0)
    assert ref == 9 ** 2 + 39 ** 2 + 59 ** 2
    assert [K.directed_max_sq(p, 0, t, 0, method=m) for m in K.METHODS] == [ref] * 3


def test_envelope_matches_brute_force():
    rng = np.random.default_rng(10)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        g = np.where(rng.random(n) < 0.3, rng.integers(0, 500, n), 2**30).astype(np.int64)
        w2 = int(rng.integers(1, 50))
        out = np.empty(n, np.int64)
        buf = [np.empty(n, np.int64) for _ in range(3)]
        K._envelope_1d(g.copy(), n, np.int64(w2), np.int64(2**30), *buf, out)
        x = np.arange(n)
        sites = np.flatnonzero(g < 2**30)
        ref = np.full(n, 2**30) if not sites.size else \
            (w2 * (x[:, None] - sites[None]) ** 2 + g[sites][None]).min(1)
        if sites.size:
            np.testing.assert_array_equal(out, ref)
