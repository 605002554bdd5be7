"""Probability-map store: round trips, encoding size, validation and atomic writes."""
import json

import numpy as np
import pytest

from kaggle_kit.io import probmaps as P


def _sparse_map(rng, shape):
    """Mostly-background uint8 (D, C, H, W): a few soft blobs per plane on some slices."""
    d, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros(shape, np.uint8)
    for z in range(d):
        for k in range(c):
            if rng.random() < 0.4:
                cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(2, max(3, h / 8))
                dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r
                out[z, k] = np.rint(255 / (1 + np.exp(np.clip(dist, -50, 50))) * (dist < 6))
    return out


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 2, 7, 5), (13, 3, 31, 17), (4, 3, 20, 24)])
def test_roundtrip_pixel(tmp_path, shape):
    rng = np.random.default_rng(0)
    for arr in (_sparse_map(rng, shape), rng.integers(0, 256, shape, dtype=np.uint8), np.zeros(shape, np.uint8)):
        P.write_probmap(tmp_path, "exp1", "oof", "case1_day2", arr, slices=range(5, 5 + shape[0]))
        got = P.read_probmap(tmp_path, "exp1", "oof", "case1_day2", expect_shape=shape,
                             expect_slices=range(5, 5 + shape[0]))
        np.testing.assert_array_equal(got, arr)
        out = np.full(shape, 7, np.uint8)  # decoding into a dirty buffer must overwrite everything
        P.read_probmap(tmp_path, "exp1", "oof", "case1_day2", out=out)
        np.testing.assert_array_equal(out, arr)


def test_roundtrip_classifier(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (11, 3), dtype=np.uint8)
    P.write_probmap(tmp_path, "cls", "test", "case3_day0", arr)
    np.testing.assert_array_equal(P.read_probmap(tmp_path, "cls", "test", "case3_day0", expect_shape=(11, 3)), arr)


def test_mostly_background_map_compresses():
    arr = _sparse_map(np.random.default_rng(2), (24, 3, 96, 96))
    assert len(P.encode_probmap(arr)) * 10 < arr.nbytes


def test_float_conversion_and_rejections(tmp_path):
    f = np.array([[0.0, 0.2, 0.5, 1.0]], np.float32).reshape(1, 1, 1, 4)
    np.testing.assert_array_equal(P.to_uint8(f), np.rint(f * 255).astype(np.uint8))
    np.testing.assert_array_equal(P.to_uint8(f > 0.3), [[[[0, 0, 255, 255]]]])
    bad = f.copy()
    bad[0, 0, 0, 1] = np.nan
    with pytest.raises(P.ProbMapError, match=r"case9_day1: 1 NaN/inf"):
        P.write_probmap(tmp_path, "e", "test", "case9_day1", bad)
    with pytest.raises(P.ProbMapError, match="inf"):
        P.to_uint8(np.full((1, 1), np.inf))
    with pytest.raises(P.ProbMapError, match=r"outside \[0, 1\]"):
        P.to_uint8(f * 2)
    with pytest.raises(P.ProbMapError, match="uint8"):
        P.to_uint8(np.zeros((2, 3), np.int16))
    with pytest.raises(P.ProbMapError, match="expected"):
        P.encode_probmap(np.zeros((2, 3, 4), np.uint8))
    assert not P.probmap_path(tmp_path, "e", "test", "case9_day1").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_reader_errors(tmp_path):
    arr = np.zeros((4, 3, 8, 9), np.uint8)
    P.write_probmap(tmp_path, "e", "oof", "case1_day1", arr, slices=[1, 2, 3, 4])
    with pytest.raises(P.ProbMapError, match=r"map shape \(4, 3, 8, 9\) but case1_day1 needs \(4, 3, 9, 8\)"):
        P.read_probmap(tmp_path, "e", "oof", "case1_day1", expect_shape=(4, 3, 9, 8))
    with pytest.raises(P.ProbMapError, match="slice order"):
        P.read_probmap(tmp_path, "e", "oof", "case1_day1", expect_slices=[2, 3, 4, 5])
    with pytest.raises(P.ProbMapError, match="no oof prediction of case1_day2"):
        P.read_probmap(tmp_path, "e", "oof", "case1_day2")
    with pytest.raises(P.ProbMapError, match="buffer"):
        P.read_probmap(tmp_path, "e", "oof", "case1_day1", out=np.zeros((4, 3, 8, 8), np.uint8))
    path = P.probmap_path(tmp_path, "e", "oof", "case1_day1")
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(P.ProbMapError, match="corrupt"):
        P.read_probmap(tmp_path, "e", "oof", "case1_day1")
    path.write_bytes(b"junk" + data)
    with pytest.raises(P.ProbMapError, match="corrupt"):
        P.read_probmap(tmp_path, "e", "oof", "case1_day1")


def test_paths_are_pure_and_checked(tmp_path):
    assert P.probmap_path(tmp_path, "x", "oof", "case12_day3") == tmp_path / "x" / "oof" / "case12_day3.pm"
    assert P.manifest_path("r", "x", "test").as_posix() == "r/x/test/manifest.json"
    for bad in [("../x", "oof", "case1_day1"), ("x", "o/f", "case1_day1"), ("x", "oof", "case1")]:
        with pytest.raises(P.ProbMapError):
            P.probmap_path(tmp_path, *bad)


def test_manifest_merge_and_conflict(tmp_path):
    kw = {"family": "seg25d", "kind": "pixel", "classes": ["a", "b"], "tta": {"hflip": True},
          "data_fingerprint": "f0"}
    P.write_manifest(tmp_path, "e", "oof", folds=[0, 2], **kw)
    man = P.write_manifest(tmp_path, "e", "oof", folds=[1], **kw)
    assert man["folds"] == [0, 1, 2] and P.read_manifest(tmp_path, "e", "oof")["folds"] == [0, 1, 2]
    with pytest.raises(P.ProbMapError, match=r"differs in \['family'\]"):
        P.write_manifest(tmp_path, "e", "oof", folds=[3], **{**kw, "family": "seg3d"})
    with pytest.raises(P.ProbMapError, match="no manifest"):
        P.read_manifest(tmp_path, "e", "test")
    assert json.loads(P.manifest_path(tmp_path, "e", "oof").read_text())["tta"] == {"hflip": True}


def test_list_case_days(tmp_path):
    store = P.ProbMapStore(tmp_path)
    for cd in ("case10_day2", "case2_day10", "case2_day3"):
        store.write("e", "test", cd, np.zeros((2, 3), np.uint8))
    assert store.case_days("e", "test") == ["case2_day3", "case2_day10", "case10_day2"]
    assert store.case_days("e", "oof") == []
