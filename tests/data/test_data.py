import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from kaggle_kit.data.cache import Cache, prepare_cache
from kaggle_kit.data.folds import make_folds, select_subset
from kaggle_kit.data.raw import CLASSES, DataError, discover_split, load_labels, parse_id, parse_slice_filename
from kaggle_kit.data.rle import rle_decode

from tests.conftest import run_tool


def test_parse_slice_filename_width_first():
    p = parse_slice_filename("slice_0001_360_310_1.50_1.50.png")
    assert (p.slice, p.width, p.height, p.spacing_x) == (1, 360, 310, 1.5)
    assert parse_slice_filename("a/b/slice_0080_276_276_1.63_1.63.png").spacing_y == 1.63
    with pytest.raises(DataError, match="slice_01_x.png"):
        parse_slice_filename("slice_01_x.png")


def test_parse_id():
    assert parse_id("case123_day20_slice_0065") == (123, 20, 65)
    with pytest.raises(DataError, match="case1_slice_0001"):
        parse_id("case1_slice_0001")


def _write_case_day(root, split="train", case=1, day=0, n=3, w=7, h=5, dtype=np.uint16, skip=None):
    d = root / split / f"case{case}" / f"case{case}_day{day}" / "scans"
    d.mkdir(parents=True, exist_ok=True)
    for k in range(1, n + 1):
        if k == skip:
            continue
        img = (np.arange(h * w).reshape(h, w) * 100 + k).astype(dtype)
        cv2.imwrite(str(d / f"slice_{k:04d}_{w}_{h}_1.50_1.50.png"), img)
    return d


def test_discover_sorted_and_geometry(tmp_path):
    _write_case_day(tmp_path, case=10, day=3, n=12)
    _write_case_day(tmp_path, case=2, day=7, n=2, w=9, h=4)
    t = discover_split(tmp_path, "train")
    assert list(t["case_day"].unique()) == ["case2_day7", "case10_day3"]
    c10 = t[t.case == 10]
    assert c10["slice"].tolist() == list(range(1, 13))  # numeric, not lexical, order
    assert c10["z"].tolist() == list(range(12))
    assert (t[t.case == 2][["height", "width"]].to_numpy() == [4, 9]).all()
    assert discover_split(tmp_path, "test").empty


def test_missing_slice_named(tmp_path):
    _write_case_day(tmp_path, case=4, day=1, n=5, skip=3)
    with pytest.raises(DataError, match=r"case4_day1.*missing slice\(s\) \[3\]"):
        discover_split(tmp_path, "train")


def test_bad_name_named(tmp_path):
    d = _write_case_day(tmp_path, n=2)
    (d / "slice_0003_bad.png").write_bytes(b"")
    with pytest.raises(DataError, match="slice_0003_bad.png"):
        discover_split(tmp_path, "train")


def test_8bit_and_unreadable_png_named(tmp_path):
    from kaggle_kit.data.volumes import load_image_volume

    _write_case_day(tmp_path, case=1, n=2, dtype=np.uint8)
    t = discover_split(tmp_path, "train")
    with pytest.raises(DataError, match=r"slice_0001_7_5_1.50_1.50.png.*16-bit"):
        load_image_volume(t)
    shutil.rmtree(tmp_path / "train")
    d = _write_case_day(tmp_path, case=1, n=2)
    (d / "slice_0002_7_5_1.50_1.50.png").write_bytes(b"not a png")
    t = discover_split(tmp_path, "train")
    with pytest.raises(DataError, match=r"slice_0002_7_5_1.50_1.50.png.*unreadable"):
        load_image_volume(t)


def test_label_row_without_image_named(tmp_path):
    _write_case_day(tmp_path, case=1, n=2)
    rows = [(f"case1_day0_slice_{k:04d}", c, "") for k in (1, 2, 3) for c in CLASSES]
    pd.DataFrame(rows, columns=["id", "class", "segmentation"]).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match="case1_day0_slice_0003"):
        prepare_cache(tmp_path, tmp_path / "cache", splits=("train",), n_folds=1)


def test_image_without_label_and_bad_rle_named(tmp_path):
    _write_case_day(tmp_path, case=1, n=2)
    rows = [("case1_day0_slice_0001", c, "") for c in CLASSES]
    pd.DataFrame(rows, columns=["id", "class", "segmentation"]).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match="case1_day0_slice_0002"):
        prepare_cache(tmp_path, tmp_path / "cache", splits=("train",), n_folds=1)
    rows += [("case1_day0_slice_0002", "large_bowel", "30 10")] + [("case1_day0_slice_0002", c, "") for c in CLASSES[1:]]
    pd.DataFrame(rows, columns=["id", "class", "segmentation"]).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match="case1_day0_slice_0002 large_bowel.*beyond"):
        prepare_cache(tmp_path, tmp_path / "cache", splits=("train",), n_folds=1)


def test_load_labels_errors(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("id,class,segmentation\ncase1_day0_slice_0001,liver,\n")
    with pytest.raises(DataError, match="row 2.*liver"):
        load_labels(p)
    p.write_text("id,class,segmentation\nfoo,stomach,\n")
    with pytest.raises(DataError, match="row 2.*foo"):
        load_labels(p)


def test_synthetic_layout(synth_root):
    train = discover_split(synth_root, "train")
    geoms = {(int(w), int(h)) for w, h in train[["width", "height"]].drop_duplicates().to_numpy()}
    assert len(geoms) == 4  # all four geometries, shrunk
    # 360x310 (W x H) stays wider than high; the 276 geometry has fewer slices (80 vs 144 unscaled).
    assert any(w > h for w, h in geoms)
    depths = train.groupby("case_day").size()
    assert depths.min() < depths.max()
    lab = load_labels(synth_root / "train.csv")
    assert list(lab["class"].iloc[:3]) == list(CLASSES)
    assert len(lab) == 3 * len(train)
    sub = pd.read_csv(synth_root / "sample_submission.csv")
    assert list(sub.columns) == ["id", "class", "predicted"] and sub["predicted"].isna().all()
    truth = load_labels(synth_root / "test_truth.csv")
    assert set(truth["id"]) == set(discover_split(synth_root, "test")["id"])
    assert not set(truth["id"]) & set(lab["id"])
    # 16-bit images with real dynamic range
    img = cv2.imread(train["path"].iloc[len(train) // 2], cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and img.max() > 255


def test_synthetic_is_3d_coherent_and_truncated(synth_root, synth_cache):
    idx = Cache(synth_cache).index("train")
    # organs present on runs of consecutive slices (3D coherence), not isolated flickers
    cd = idx[idx.has_large_bowel == 1].groupby("case_day")["slice"]
    assert (cd.max() - cd.min() + 1 >= cd.count()).all()
    assert (cd.count() >= 3).all()
    # truncation: some case-day has organs in the image volume beyond its last annotated slice
    from kaggle_kit.data.synthetic import CaseDaySpec, render_case_day

    truncated = 0
    for seed in range(12):
        _, mask, (lo, hi) = render_case_day(CaseDaySpec(1, 0, seed % 4, seed, seed + 100, 0.2))
        pos = np.flatnonzero(mask.reshape(len(mask), -1).max(1))
        truncated += pos.size > 0 and (pos[-1] > hi or pos[0] < lo)
    assert truncated >= 2
    # empty organs: at least one (case-day, class) with no label at all across the set
    per = idx.groupby("case_day")[[f"has_{c}" for c in CLASSES]].max()
    assert (per == 0).any().any() or len(per) < 4


def test_cache_matches_labels_and_resumes(synth_root, synth_cache, tmp_path):
    c = Cache(synth_cache)
    idx = c.index("train")
    lab = load_labels(synth_root / "train.csv").set_index(["id", "class"])["segmentation"]
    cd = idx["case_day"].iloc[0]
    img, mask = c.image("train", cd), c.mask("train", cd)
    rows = idx[idx.case_day == cd]
    assert img.dtype == np.uint16 and mask.dtype == np.uint8 and img.shape == mask.shape
    assert img.shape == (len(rows), rows["height"].iloc[0], rows["width"].iloc[0])
    for z, id_ in enumerate(rows["id"]):
        for bit, cls in enumerate(CLASSES):
            np.testing.assert_array_equal((mask[z] >> bit) & 1, rle_decode(lab[(id_, cls)], img.shape[1:]))
    png = cv2.imread(rows["path"].iloc[3] if "path" in rows else
                     str(next((synth_root / "train").rglob(f"slice_{rows['slice'].iloc[3]:04d}_*"))), cv2.IMREAD_UNCHANGED)
    assert png is not None
    # resume: a copy with one case-day's meta removed and one array truncated gets rebuilt, rest skipped
    cache2 = tmp_path / "c2"
    shutil.copytree(synth_cache, cache2)
    (cache2 / "train" / cd / "meta.json").unlink()
    (cache2 / "train" / cd / "img.npy").write_bytes(b"garbage")
    s = prepare_cache(synth_root, cache2, n_folds=5, seed=0)
    assert s["train"]["written"] == 1 and s["train"]["skipped"] == s["train"]["case_days"] - 1
    np.testing.assert_array_equal(Cache(cache2).image("train", cd), img)
    assert not list(cache2.rglob("*.tmp"))


def test_folds_grouped_stratified_deterministic(synth_cache):
    idx = Cache(synth_cache).index("train")
    f1, f2 = make_folds(idx, 3, seed=7), make_folds(idx, 3, seed=7)
    pd.testing.assert_frame_equal(f1, f2)
    assert set(f1["fold"]) == {0, 1, 2}
    assert f1["case"].is_unique  # one fold per case: all its days together
    folds = Cache(synth_cache).folds()
    assert set(folds["case"]) == set(idx["case"])


def test_folds_balance_presence():
    rng = np.random.default_rng(0)
    rows = []
    for case in range(40):
        n = 144 if case % 3 else 80
        rich = case % 4 == 0  # a quarter of cases carry most stomach slices
        for s in range(n):
            rows.append((case, s, int(rng.random() < 0.4), int(rng.random() < 0.3), int(rich and rng.random() < 0.8)))
    idx = pd.DataFrame(rows, columns=["case", "slice", "has_large_bowel", "has_small_bowel", "has_stomach"])
    f = make_folds(idx, 5, seed=0)
    per = idx.merge(f, on="case").groupby("fold")["has_stomach"].sum()
    # the 10 stomach-rich cases spread evenly: each fold within 35 % of the mean
    assert per.min() > 0.65 * per.mean() and per.max() < 1.35 * per.mean()
    assert f.groupby("fold").size().min() >= 7


def test_subsets():
    idx = pd.DataFrame({
        "case_day": ["case7_day0"] * 10 + ["case1_day1"] * 10,
        "slice": list(range(1, 11)) * 2,
        "first_anno": [3] * 10 + [0] * 10,
        "last_anno": [4] * 10 + [0] * 10,
    })
    assert select_subset(idx, "anno_only")["slice"].tolist() == [3, 4]
    nt = select_subset(idx, "no_tail")
    assert nt[nt.case_day == "case7_day0"]["slice"].tolist() == [1, 2, 3, 4, 10]
    assert len(nt[nt.case_day == "case1_day1"]) == 10  # unlabelled case-day: nothing dropped
    assert set(select_subset(idx, "no_fault")["case_day"]) == {"case1_day1"}
    with pytest.raises(KeyError, match="options"):
        select_subset(idx, "bogus")


def test_import_is_cheap():
    code = ("import sys, kaggle_kit, kaggle_kit.data, kaggle_kit.registry, kaggle_kit.env; "
            "bad=[m for m in ('torch','ultralytics','mmseg','mmengine','cv2','timm') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_tools_cli(tmp_path):
    out = tmp_path / "d"
    p = run_tool("make_synthetic.py", out, "--train-cases", 2, "--test-cases", 0, "--size-scale", 0.15, "--seed", 5)
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["test"]["case_days"] == 0 and (out / "test").is_dir()
    assert pd.read_csv(out / "sample_submission.csv").empty
    p = run_tool("prepare.py", "--data-root", out, "--cache", tmp_path / "c", "--folds", 2)
    assert json.loads(p.stdout.strip().splitlines()[-1])["train"]["written"] >= 2
    # an error names the offender and exits non-zero
    bad = next((out / "train").rglob("*.png"))
    bad.rename(bad.with_name("slice_zz.png"))
    p = run_tool("prepare.py", "--data-root", out, "--cache", tmp_path / "c", check=False)
    assert p.returncode == 2 and "slice_zz.png" in p.stderr


def test_index_presence_is_per_bit():
    from kaggle_kit.data.cache import _index_rows

    mask = np.zeros((3, 4, 4), np.uint8)
    mask[0, 0, 0] = 1          # large bowel only
    mask[1, 0, 0] = 1          # large bowel and small bowel on one slice, different pixels
    mask[1, 2, 2] = 2
    mask[2, 1, 1] = 4 | 2      # small bowel + stomach on one pixel
    sl = pd.DataFrame({"id": [f"case1_day0_slice_{k:04d}" for k in (1, 2, 3)], "case": 1, "day": 0,
                       "case_day": "case1_day0", "slice": [1, 2, 3], "z": [0, 1, 2], "height": 4, "width": 4,
                       "spacing_x": 1.5, "spacing_y": 1.5, "path": ""})
    idx = _index_rows(sl, mask, ())
    assert idx["has_large_bowel"].tolist() == [1, 1, 0]
    assert idx["has_small_bowel"].tolist() == [0, 1, 1]
    assert idx["has_stomach"].tolist() == [0, 0, 1]


def test_bitmask_round_trip_and_hand_case():
    from kaggle_kit.data.bitmask import bits_to_channels, channels_to_bits

    bits = np.array([[0, 1, 2], [3, 4, 7]], np.uint8)  # hand-checked: 5 = large bowel + stomach, ...
    ch = bits_to_channels(bits, 3)
    assert ch.shape == (3, 2, 3)
    assert ch[:, 1, 2].tolist() == [1, 1, 1] and ch[:, 1, 1].tolist() == [0, 0, 1] and ch[:, 0, 2].tolist() == [0, 1, 0]
    assert np.array_equal(channels_to_bits(ch), bits)
    last = bits_to_channels(bits, 3, axis=-1)
    assert last.shape == (2, 3, 3) and np.array_equal(np.moveaxis(last, -1, 0), ch)
    assert np.array_equal(channels_to_bits(last, axis=-1), bits)
    rng = np.random.default_rng(0)
    for shape in [(1,), (5, 7), (2, 3, 4)]:
        b = rng.integers(0, 8, shape).astype(np.uint8)
        assert np.array_equal(channels_to_bits(bits_to_channels(b, 3).astype(bool)), b)
