"""Ensemble config, pipeline twins, tools/ensemble.py and tools/validate_submission.py."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.data.raw import CLASSES, discover_split, labels_wide, load_labels
from kaggle_kit.data.rle import rle_decode
from kaggle_kit.data.volumes import load_mask_volume, mask_to_channels
from kaggle_kit.io import probmaps as P
from kaggle_kit.post import kernels as K
from kaggle_kit.post.ensemble import ConfigError, fuse_case_day, parse_ensemble_config
from kaggle_kit.post.postprocess import PostParams, postprocess
from kaggle_kit.io.submission import SubmissionError, expected_rows, validate_submission

from tests.conftest import ROOT, run_tool

C = len(CLASSES)
PIX = {"exp": "a", "kind": "pixel", "weight": 1.0}


def _cfg(**kw):
    return parse_ensemble_config({"members": [PIX], "threshold": 0.5, **kw}, "cfg")


# ------------------------------------------------------------------------------------------------ config
def test_example_config_loads():
    from kaggle_kit.post.ensemble import load_ensemble_config

    cfg = load_ensemble_config(ROOT / "configs" / "ensemble" / "example.yaml")
    assert [m.kind for m in cfg.members] == ["pixel", "pixel", "classifier"]
    np.testing.assert_allclose(cfg.weights("pixel")[:, 2], [0.5, 0.5])


@pytest.mark.parametrize("obj, msg", [
    ({"members": [PIX], "threshold": 0.5, "treshold": 1}, r"unknown key 'treshold' \(did you mean 'threshold'\?\)"),
    ({"members": [PIX]}, "missing required key 'threshold'"),
    ({"members": [PIX], "threshold": "0.5"}, r"cfg.threshold: expected a number"),
    ({"members": [PIX], "threshold": 1.5}, r"probability in \[0, 1\]"),
    ({"members": [PIX], "threshold": {"stomach": 0.5}}, r"missing class\(es\) \['large_bowel', 'small_bowel'\]"),
    ({"members": [PIX], "threshold": {"liver": 0.5}}, "unknown key 'liver'"),
    ({"members": [{**PIX, "weight": 0}], "threshold": 0.5}, "zero total weight"),
    ({"members": [{**PIX, "weight": -1}], "threshold": 0.5}, "weight >= 0"),
    ({"members": [{**PIX, "weight": {"stomach": 1}}], "threshold": 0.5}, r"members\[0\].weight: missing class"),
    ({"members": [{"exp": "a", "kind": "pixel"}], "threshold": 0.5}, "missing required key 'weight'"),
    ({"members": [{**PIX, "kind": "voxel"}], "threshold": 0.5}, "kind: 'voxel' is not one of"),
    ({"members": [PIX, PIX], "threshold": 0.5}, "not a unique string"),
    ({"members": [{**PIX, "kind": "classifier"}], "threshold": 0.5}, "at least one member must be of kind 'pixel'"),
    ({"members": [PIX], "threshold": 0.5, "gating": {"prob": 0.5}}, "need a member of kind 'classifier'"),
    ({"members": [PIX], "threshold": 0.5, "presence": {"cls_prob": 0.5}}, r"presence.cls_prob / .*need a member of kind"),
    ({"members": [PIX], "threshold": 0.5, "presence": {"prob": 1.5}}, r"presence.prob: expected a probability"),
    ({"members": [PIX], "threshold": 0.5, "presence": {"porb": 0.5}}, r"unknown key 'porb' \(did you mean 'prob'\?\)"),
    ({"members": [PIX], "threshold": 0.5, "min_area_2d": 2.5}, "min_area_2d: expected an integer"),
    ({"members": [PIX], "threshold": 0.5, "connectivity": 6}, "connectivity: expected 4 or 8"),
    ({"members": [PIX], "threshold": 0.5, "z_smoothing": "yes"}, "z_smoothing: expected true/false"),
    ({"members": [PIX], "threshold": 0.5, "truncation": {"tail_margin": 3}}, "tail_margin needs tail_prob"),
    ({"members": [PIX], "threshold": 0.5, "gating": {"z_window": 2}}, r"gating.z_window: expected an odd integer >= 1"),
    ({"members": [PIX], "threshold": 0.5, "gating": {"z_window": {"large_bowel": 3, "small_bowel": 1,
                                                                 "stomach": 0}}}, r"z_window.stomach: expected an odd"),
    ({"members": PIX, "threshold": 0.5}, "members: expected a non-empty list"),
    ({"members": [PIX], "threshold": 0.5, "metric": "3d+nope"}, "cfg.metric: unknown metric name part 'nope'"),
    ({"members": [PIX], "threshold": 0.5, "metric": {"hd": "2d"}}, "cfg.metric: .*unexpected keyword"),
])
def test_config_errors(obj, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_ensemble_config(obj, "cfg")


# ------------------------------------------------------------------------------------------ pipeline
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (7, 3, 13, 11), (16, 3, 24, 20)])
def test_pipeline_numba_equals_numpy(shape):
    rng = np.random.default_rng(7)
    from scipy import ndimage

    stack = ndimage.uniform_filter(rng.random((3,) + shape), size=(1, 1, 1, 3, 3))
    stack = np.rint(stack * 255).astype(np.uint8)
    w = K.normalise_weights(rng.random((3, C)) + 0.1)
    cls = rng.uniform(0, 255, shape[:2]).astype(np.float32)
    params = PostParams(threshold=(0.45, 0.5, 0.55), gate_prob=(0.2, 0.3, 0.1), gate_min_pixels=(2, 0, 3),
                        first_k=(1, 0, 0), last_k=(0, 1, 0), tail_margin=2, tail_prob=(0.5, 0.6, 0.4),
                        min_area_2d=(3, 4, 2), min_volume_3d=(5, 2, 8), min_relative_volume_3d=(0.3, 0.0, 0.6),
                        connectivity=4, z_smoothing=True, presence_prob=(0.6, 0.0, 0.9),
                        presence_cls_prob=(0.0, 0.5, 0.3))
    a = postprocess(stack, w, params, cls, impl="numba")
    b = postprocess(stack, w, params, cls, impl="numpy")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("d", [1, 2, 5, 9])
def test_smooth_z_equals_brute_force(d):
    """The centred z mean against a loop over clipped slice indices (window wider than the volume included)."""
    from kaggle_kit.post.postprocess import smooth_z

    rng = np.random.default_rng(d)
    p = rng.uniform(0, 255, (d, C)).astype(np.float32)
    for windows in [(1, 3, 5), (7, 1, 11), (3, 3, 3)]:
        want = p.copy()
        for c, w in enumerate(windows):
            h = w // 2
            for z in range(d):
                want[z, c] = np.mean([p[min(max(j, 0), d - 1), c] for j in range(z - h, z + h + 1)])
        np.testing.assert_allclose(smooth_z(p, windows), want, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(smooth_z(p, (1, 1, 1)), p)
    with pytest.raises(ValueError, match="odd integer"):
        smooth_z(p, (1, 2, 1))


def test_gate_z_window_hand_checked():
    """Gate 0.5 on a 5-slice volume, per-slice positive-pixel counts checked by hand.
    large bowel: organ on every slice, the classifier misses slice 2. No window: slice 2 is cut; a 3-slice
    window reads (255 + 0 + 255) / 3 = 170 >= 127.5 there and keeps it.
    small bowel: one false-positive pixel on slice 3 that the classifier alone confirms. No window: kept;
    window 3: (0 + 255 + 0) / 3 = 85 < 127.5, cut.
    stomach: organ and classifier on slice 0 only. Window 3 repeats the end slice: (255 + 255 + 0) / 3 = 170,
    kept (zero padding would give 85 and cut it)."""
    pix = np.zeros((5, C, 4, 4), np.uint8)
    cls = np.zeros((5, C), np.uint8)
    pix[:, 0, 1:3, 1:3] = 255
    cls[:, 0] = [255, 255, 0, 255, 255]
    pix[3, 1, 0, 0] = 255
    cls[3, 1] = 255
    pix[0, 2, 2, 2] = 255
    cls[0, 2] = 255
    pixel = {"exp": "p", "kind": "pixel", "weight": 1.0}
    clf = {"exp": "c", "kind": "classifier", "weight": 1.0}
    got = {}
    for window in (1, 3):
        cfg = parse_ensemble_config({"members": [pixel, clf], "threshold": 0.5,
                                     "gating": {"prob": 0.5, "z_window": window}})
        assert cfg.params.z_window == (window,) * C
        for impl in ("numba", "numpy"):
            _, counts = fuse_case_day(cfg, {"p": pix, "c": cls}, "case1_day1", (5, 4, 4), impl=impl)
            got[window, impl] = counts.T.tolist()
    for impl in ("numba", "numpy"):
        assert got[1, impl] == [[4, 4, 0, 4, 4], [0, 0, 0, 1, 0], [1, 0, 0, 0, 0]]
        assert got[3, impl] == [[4, 4, 4, 4, 4], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_relative_volume_from_the_yaml():
    """min_relative_volume_3d through the parser and fuse_case_day: stomach has a 2x3x3 organ (18 voxels) and a
    2-voxel stray blob; fraction 0.1 (limit 1.8) keeps both, 0.2 (limit 3.6) drops the blob; large bowel's
    single blob is its own largest and stays at any fraction."""
    pix = np.zeros((4, C, 6, 6), np.uint8)
    pix[1:3, 2, 1:4, 1:4] = 255
    pix[0:2, 2, 5, 5] = 255
    pix[3, 0, 0, 0] = 255
    for frac, want in [(0.0, 20), (0.1, 20), (0.2, 18)]:
        for impl in ("numba", "numpy"):
            cfg = _cfg(min_relative_volume_3d={"large_bowel": 1.0, "small_bowel": 0.0, "stomach": frac})
            bits, counts = fuse_case_day(cfg, {"a": pix}, "case1_day1", (4, 6, 6), impl=impl)
            assert counts[:, 2].sum() == want and counts[:, 0].sum() == 1, (frac, impl)
            assert ((bits >> 2) & 1)[1:3, 1:4, 1:4].all()
    with pytest.raises(ConfigError, match=r"min_relative_volume_3d: expected a fraction in \[0, 1\]"):
        _cfg(min_relative_volume_3d=2)


def test_single_member_weight_one_equals_threshold():
    rng = np.random.default_rng(8)
    m = rng.integers(0, 256, (5, C, 9, 10), dtype=np.uint8)
    for t in (0.2, 0.5, 0.7):
        bits, _ = fuse_case_day(_cfg(threshold=t), {"a": m}, "case1_day1", (5, 9, 10))
        np.testing.assert_array_equal(mask_to_channels(bits), (m > t * 255).astype(np.uint8))


def test_fuse_case_day_errors():
    cfg = parse_ensemble_config({"members": [PIX, {**PIX, "exp": "b"}], "threshold": 0.5})
    ok = np.zeros((2, C, 4, 4), np.uint8)
    with pytest.raises(P.ProbMapError, match="case1_day1: no map for member 'b'"):
        fuse_case_day(cfg, {"a": ok}, "case1_day1", (2, 4, 4))
    with pytest.raises(P.ProbMapError, match=r"case1_day1 \(b\): map shape \(2, 3, 4, 5\); expected \(2, 3, 4, 4\)"):
        fuse_case_day(cfg, {"a": ok, "b": np.zeros((2, C, 4, 5), np.uint8)}, "case1_day1", (2, 4, 4))
    nan = np.full((2, C, 4, 4), 0.5, np.float32)
    nan[1, 2, 3, 3] = np.nan
    with pytest.raises(P.ProbMapError, match=r"case1_day1 \(b\): 1 NaN/inf"):
        fuse_case_day(cfg, {"a": ok, "b": nan}, "case1_day1", (2, 4, 4))
    with pytest.raises(P.ProbMapError, match="no weight"):
        fuse_case_day(cfg, {"a": ok, "b": ok, "c": ok}, "case1_day1", (2, 4, 4))


# ---------------------------------------------------------------------------------------- end to end
def _write_truth_maps(data_root: Path, preds: Path, split: str, labels: str, exp: str = "truth"):
    """Store the truth masks of ``split`` as probability maps 0/255 (a perfect model)."""
    data_split = "train" if split == "oof" else "test"
    slices = discover_split(data_root, data_split)
    wide = labels_wide(load_labels(data_root / labels))
    P.write_manifest(preds, exp, split, family="truth", kind="pixel", classes=CLASSES, folds=[0])
    for cd, g in slices.groupby("case_day", sort=False):
        mask = load_mask_volume(g, wide)
        P.write_probmap(preds, exp, split, cd, mask_to_channels(mask) * np.uint8(255), slices=g["slice"])
    return slices


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_truth_maps_give_perfect_valid_submission(synth_root, tmp_path):
    preds = tmp_path / "preds"
    _write_truth_maps(synth_root, preds, "test", "test_truth.csv")
    cfg = _yaml(tmp_path / "ens.yaml", "members: [{exp: truth, kind: pixel, weight: 1}]\nthreshold: 0.5\n"
                "min_area_2d: 1\nz_smoothing: false\n")
    out = tmp_path / "submission.csv"
    p = run_tool("ensemble.py", cfg, "--data-root", synth_root, "--split", "test", "--out", out, "--preds", preds)
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["rows"] == len(expected_rows(synth_root, "test")) > 0
    run_tool("validate_submission.py", out, "--data-root", synth_root)
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    truth = pd.read_csv(synth_root / "test_truth.csv", dtype=str, keep_default_na=False)
    assert sub["id"].tolist() == expected_rows(synth_root, "test")["id"].tolist()
    assert (sub["predicted"].to_numpy() == truth["segmentation"].to_numpy()).all()
    if not (ROOT / "tools" / "score.py").is_file():
        pytest.skip("tools/score.py not available yet")
    s = run_tool("score.py", "--truth", synth_root / "test_truth.csv", "--pred", out, "--data-root", synth_root,
                 "--split", "test")
    assert json.loads(s.stdout.strip().splitlines()[-1])["score"] == pytest.approx(1.0)


@pytest.mark.parametrize("truth", ["train.csv", "cache"])
def test_oof_split_scores_perfect_truth(synth_root, tmp_path, request, truth):
    pytest.importorskip("kaggle_kit.metric.scorer")
    preds = tmp_path / "preds"
    _write_truth_maps(synth_root, preds, "oof", "train.csv")
    cfg = _yaml(tmp_path / "ens.yaml", "members: [{exp: truth, kind: pixel, weight: 1}]\nthreshold: 0.5\n")
    extra = ["--cache", request.getfixturevalue("synth_cache")] if truth == "cache" else []
    p = run_tool("ensemble.py", cfg, "--data-root", synth_root, "--split", "oof", "--out", tmp_path / "oof.csv",
                 "--preds", preds, *extra)
    assert json.loads(p.stdout.strip().splitlines()[-1])["score"] == pytest.approx(1.0)
    run_tool("validate_submission.py", tmp_path / "oof.csv", "--data-root", synth_root, "--split", "oof")


def test_ensemble_failures_leave_no_file(synth_root, tmp_path):
    preds = tmp_path / "preds"
    slices = _write_truth_maps(synth_root, preds, "test", "test_truth.csv")
    cds = list(dict.fromkeys(slices["case_day"]))
    out = tmp_path / "sub.csv"
    cfg = _yaml(tmp_path / "ens.yaml", "members: [{exp: truth, kind: pixel, weight: 1}]\nthreshold: 0.5\n")
    # a wrong-shape map
    g = slices[slices["case_day"] == cds[-1]]
    P.write_probmap(preds, "truth", "test", cds[-1], np.zeros((len(g), C, 5, 5), np.uint8))
    p = run_tool("ensemble.py", cfg, "--data-root", synth_root, "--out", out, "--preds", preds, check=False)
    assert p.returncode == 2 and "needs" in p.stderr and cds[-1] in p.stderr, p.stderr
    assert not out.exists()
    # a member missing a case-day
    P.probmap_path(preds, "truth", "test", cds[-1]).unlink()
    p = run_tool("ensemble.py", cfg, "--data-root", synth_root, "--out", out, "--preds", preds, check=False)
    assert p.returncode == 2 and f"no test prediction of {cds[-1]}" in p.stderr, p.stderr
    assert not out.exists()
    # weights that do not match the members' classes
    bad = _yaml(tmp_path / "bad.yaml", "members: [{exp: truth, kind: pixel, weight: {stomach: 1}}]\nthreshold: 0.5\n")
    p = run_tool("ensemble.py", bad, "--data-root", synth_root, "--out", out, "--preds", preds, check=False)
    assert p.returncode == 2 and "weight: missing class" in p.stderr, p.stderr
    assert not out.exists() and not list(tmp_path.glob(".sub.csv*"))


def test_validator_rejects(synth_root, tmp_path):
    rows = expected_rows(synth_root, "test")
    good = rows.assign(predicted="")
    path = tmp_path / "s.csv"

    def check(df, msg):
        df.to_csv(path, index=False)
        with pytest.raises(SubmissionError, match=msg):
            validate_submission(path, synth_root)

    check(good.iloc[::-1], "row 2 is")
    check(good.iloc[:-1], "rows; expected")
    check(good.rename(columns={"predicted": "segmentation"}), "header")
    geo = discover_split(synth_root, "test").set_index("id").loc[good["id"].iloc[1]]
    n = int(geo["height"]) * int(geo["width"])
    for rle, msg in [("1 2 2 2", "overlapping"), (f"{n} 2", "beyond"), ("0 3", "1-indexed"), ("5", "odd")]:
        bad = good.copy()
        bad.loc[1, "predicted"] = rle
        check(bad, f"row 3 .*{msg}")
    good.to_csv(path, index=False)
    p = run_tool("validate_submission.py", path, "--data-root", synth_root)
    assert json.loads(p.stdout)["valid"]
    bad = good.copy()
    bad.loc[0, "predicted"] = "3 1 1 1"
    bad.to_csv(path, index=False)
    p = run_tool("validate_submission.py", path, "--data-root", synth_root, check=False)
    assert p.returncode == 1 and "unsorted or overlapping" in p.stderr


def test_rows_built_from_images_when_csvs_empty(tmp_path):
    import cv2

    for cd, d, (w, h) in [("case2_day1", 2, (5, 4)), ("case10_day0", 1, (6, 3))]:
        case = cd.split("_")[0]
        scans = tmp_path / "test" / case / cd / "scans"
        scans.mkdir(parents=True)
        for s in range(1, d + 1):
            cv2.imwrite(str(scans / f"slice_{s:04d}_{w}_{h}_1.50_1.50.png"), np.zeros((h, w), np.uint16))
    (tmp_path / "sample_submission.csv").write_text("id,class,predicted\n")
    rows = expected_rows(tmp_path, "test")
    assert rows["id"].tolist()[::C] == ["case2_day1_slice_0001", "case2_day1_slice_0002", "case10_day0_slice_0001"]
    assert rows["class"].tolist()[:C] == list(CLASSES)
    sub = rows.assign(predicted="")
    sub.loc[len(sub) - 1, "predicted"] = "1 18"  # 6x3 image: 18 pixels
    sub.to_csv(tmp_path / "s.csv", index=False)
    assert validate_submission(tmp_path / "s.csv", tmp_path) == {"rows": 9, "non_empty": 1}
    sub.loc[len(sub) - 1, "predicted"] = "1 19"
    sub.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(SubmissionError, match="3x6"):
        validate_submission(tmp_path / "s.csv", tmp_path)
    np.testing.assert_array_equal(rle_decode("1 18", (3, 6)), np.ones((3, 6), np.uint8))


def test_no_test_rows_gives_header_only(tmp_path):
    from kaggle_kit.post.ensemble import run_ensemble

    (tmp_path / "test").mkdir()
    (tmp_path / "sample_submission.csv").write_text("id,class,predicted\n")
    out = tmp_path / "sub.csv"
    assert run_ensemble(_cfg(), tmp_path, "test", out, tmp_path / "preds")["rows"] == 0
    assert out.read_text() == "id,class,predicted\n"
    assert validate_submission(out, tmp_path) == {"rows": 0, "non_empty": 0}


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_neutral_numbers_leave_the_mask_alone(impl):
    """Every mask step of the list, run with the neutral value of each of its numbers, changes nothing (the
    promise that lets a step be off for some classes and on for others in one call)."""
    from kaggle_kit.post.steps import STEPS, Context

    rng = np.random.default_rng(3)
    bits = (rng.random((6, 9, 8)) < 0.4).astype(np.uint8) | ((rng.random((6, 9, 8)) < 0.3) << 1).astype(np.uint8)
    counts = K.plane_counts(bits, 2)
    for step in STEPS[1:]:
        v = {p.name: ((p.neutral,) * 2 if p.per_class else p.neutral) for p in step.params + step.reads}
        b, c = bits.copy(), counts.copy()
        step.apply(b, c, v, Context(depth=6, cls=np.full((6, 2), 99.0, np.float32)), impl)
        np.testing.assert_array_equal(b, bits, err_msg=step.name)
        np.testing.assert_array_equal(c, counts, err_msg=step.name)
        assert not step.active({**{p.name: p.neutral for p in step.params + step.reads}})
