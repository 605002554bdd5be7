"""Crop-detector family: ground-truth boxes, post-processing, the 8-bit conversion and letterbox, the crop ->
predict -> paste-back round trip, and one short YOLO training + box prediction on the synthetic cache (CPU)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.env import setup_offline

from tests.conftest import ROOT

setup_offline()


@pytest.fixture(scope="module")
def cache(synth_cache):
    from kaggle_kit.data.cache import Cache

    return Cache(synth_cache)


def test_truth_boxes_cover_organs(cache):
    from kaggle_kit.io.boxes import truth_boxes
    from kaggle_kit.metric.boxes import box_recall

    for mode in ("organs", "body"):
        tb = truth_boxes(cache, "train", mode=mode)
        idx = cache.index("train")
        assert len(tb) == len(idx) and tb.index.names == ["case_day", "z"]
        assert list(tb.columns) == ["y0", "y1", "x0", "x1"] and all(tb[c].dtype == np.int64 for c in tb)
        h = idx.set_index(["case_day", "z"]).loc[tb.index]
        assert ((tb.y0 >= 0) & (tb.y1 <= h.height) & (tb.x0 >= 0) & (tb.x1 <= h.width)).all()
        assert ((tb.y1 > tb.y0) & (tb.x1 > tb.x0)).all()
        rec = box_recall(cache, tb)
        assert rec["recall"] == 1.0 and rec["organ_pixels"] > 0
    tight = box_recall(cache, truth_boxes(cache, "train", mode="organs", margin=0.0))
    assert tight["recall"] == 1.0 and tight["area_fraction_organ_slices"] < rec["area_fraction_organ_slices"]
    with pytest.raises(FileNotFoundError):  # no labels in test: organs mode cannot work there
        truth_boxes(cache, "test")
    assert len(truth_boxes(cache, "test", mode="body")) == len(cache.index("test"))


def test_finalise_boxes_smoothing_fallback():
    from kaggle_kit.families.det_yolo.boxes import finalise_boxes

    D, H, W = 9, 100, 120
    raw = np.tile([20.0, 60.0, 30.0, 90.0], (D, 1))
    raw[4] = [0, 100, 0, 120]  # one outlier slice
    scores = np.full(D, 0.9)
    scores[[0, 8]] = 0.1  # undetected ends
    boxes, det = finalise_boxes(raw, scores, (H, W), conf=0.25, smooth="median", window=5, margin=0.0)
    assert det.tolist() == [False] + [True] * 7 + [False]
    assert boxes[4].tolist() == [20, 60, 30, 90]  # the median removed the outlier
    assert boxes[0].tolist() == [20, 60, 30, 90]  # fallback: union of the detected (smoothed) boxes
    b2, _ = finalise_boxes(raw, scores, (H, W), smooth="envelope", window=3, margin=0.1)
    assert b2[3].tolist() == [0, 100, 0, 120] and b2[1].tolist() == [10, 70, 18, 102]
    b3, d3 = finalise_boxes(raw, np.zeros(D), (H, W), fallback_box=(5, 50, 6, 60))
    assert not d3.any() and (b3 == [5, 50, 6, 60]).all()
    b4, _ = finalise_boxes(np.full((2, 4), 50.0), np.ones(2), (H, W), margin=0.0)  # degenerate -> full image
    assert (b4 == [0, H, 0, W]).all()


def test_yolo_image_uses_volume_normalisation(cache):
    from kaggle_kit.data.dataset25d import normalise, volume_scale
    from kaggle_kit.families.det_yolo.dataset import letterbox, yolo_image

    cd = cache.case_days("train")[0]
    img = cache.image("train", cd)
    s = volume_scale(img)
    im = yolo_image(img, 0, s, "stack", 2)
    assert im.dtype == np.uint8 and im.shape == img.shape[1:] + (3,)
    ref = np.rint(normalise(np.asarray(img[[0, 0, 2]]), "volume", s) * 170).astype(np.uint8)
    np.testing.assert_array_equal(im.transpose(2, 0, 1), ref)
    np.testing.assert_array_equal(yolo_image(img, 1, s, "gray")[..., 0], yolo_image(img, 1, s, "gray")[..., 2])
    lb, (ry, rx, top, left) = letterbox(im, 64)
    assert lb.shape == (64, 64, 3)
    nh, nw = round(img.shape[1] * ry), round(img.shape[2] * rx)
    assert max(nh, nw) == 64 and abs(64 - nh - 2 * top) <= 1 and abs(64 - nw - 2 * left) <= 1
    assert (lb[:top] == 114).all() and (lb[:, :left] == 114).all()


@pytest.mark.parametrize("mode", ["pad", "resize"])
def test_crop_predict_paste_back_round_trip(cache, mode):
    """Identity model through SliceDataset25D(crop="boxes") and SliceGeometry.inverse: in raw geometry the
    pasted-back mask equals the original inside the box and is 0 outside; every organ pixel is inside."""
    from kaggle_kit.data.dataset25d import SliceDataset25D, StackSpec
    from kaggle_kit.data.geometry import pad_to_multiple
    from kaggle_kit.io.boxes import truth_boxes

    tb = truth_boxes(cache, "train")
    idx = cache.index("train")
    H, W = int(idx.height[0]), int(idx.width[0])
    cd = idx.case_day[0]
    # "pad" with a canvas at least as large as every box: no resampling, so the round trip is exact
    size = (pad_to_multiple(H), pad_to_multiple(W)) if mode == "pad" else (32, 32)
    ds = SliceDataset25D(cache, [cd], stack=StackSpec(3, 1), size=size, geometry_mode=mode, crop="boxes",
                         boxes=tb)
    mask = np.asarray(cache.mask("train", cd))
    checked = 0
    for i in range(len(ds)):
        item = ds[i]
        z = item["z"]
        g = ds.geometry(cd, z, cache.image("train", cd))
        y0, y1, x0, x1 = tb.loc[(cd, z)]
        assert g.crop == (y0, y1, x0, x1)
        back = g.inverse(item["mask"])  # (C, H, W): the "prediction" pasted back
        truth = ((mask[z][None] >> np.arange(3, dtype=np.uint8)[:, None, None]) & 1).astype(np.float32)
        outside = np.ones((H, W), bool)
        outside[y0:y1, x0:x1] = False
        assert not back[:, outside].any()
        assert truth[:, y0:y1, x0:x1].sum() == truth.sum()  # organ pixels inside the box
        if mode == "pad":
            np.testing.assert_array_equal(back, truth)  # exact in raw geometry
        checked += int(truth.any())
    assert checked > 0


def test_load_boxes_aliases_and_checks(tmp_path):
    from kaggle_kit.io.boxes import load_boxes

    with pytest.raises(FileNotFoundError, match="det_x"):
        load_boxes(tmp_path, "det_x", "oof")
    d = tmp_path / "det_x" / "oof"
    d.mkdir(parents=True)
    pd.DataFrame({"case_day": ["case1_day0"] * 2, "z": [0, 1], "y0": [0, 1], "y1": [5, 6], "x0": [0, 0],
                  "x1": [4, 4], "score": [0.9, 0.0]}).to_csv(d / "boxes.csv", index=False)
    b = load_boxes(tmp_path, "det_x", "train")  # the 2.5D family passes the cache split
    assert b.loc[("case1_day0", 1), "y0"] == 1 and b["y0"].dtype == np.int64
    pd.DataFrame({"case_day": ["case1_day0"], "z": [0], "y0": [3], "y1": [3], "x0": [0], "x1": [4]}).to_csv(
        d / "boxes.csv", index=False)
    with pytest.raises(ValueError, match="empty"):
        load_boxes(tmp_path, "det_x", "oof")


def test_configs_validate_and_lazy_import():
    from kaggle_kit.config import load_config

    for name in ("tiny_cpu", "gpu_yolov8s", "default"):
        assert load_config(ROOT / "configs/det_yolo" / f"{name}.yaml")["family"] == "det_yolo"
    code = ("import sys; from kaggle_kit.registry import resolve; f = resolve('family', 'det_yolo'); "
            "assert f.name == 'det_yolo'; assert 'torch' not in sys.modules and 'ultralytics' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _tiny_cfg(synth_cache, tmp_path, extra=()):
    from kaggle_kit.config import load_config

    return load_config(ROOT / "configs/det_yolo/tiny_cpu.yaml",
                       [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}",
                        "model.imgsz=64", "train.epochs=1", *extra])


def test_train_one_epoch_and_predict_boxes(synth_cache, cache, tmp_path):
    """One epoch of yolov8n from its yaml on the tiny synthetic set, then boxes for OOF (fold 0) and test."""
    import torch

    from kaggle_kit.engine.checkpoint import load_inference_checkpoint
    from kaggle_kit.families.det_yolo.api import family
    from kaggle_kit.metric.boxes import box_recall
    from kaggle_kit.families.det_yolo.predict import DetPredictor
    from kaggle_kit.io.boxes import load_boxes, read_boxes_manifest, truth_boxes_matching

    cfg = _tiny_cfg(synth_cache, tmp_path)
    wd = family.train(cfg, 0, "det_t")
    assert wd == tmp_path / "work/det_yolo/det_t/fold0"
    for f in ("best.pth", "last.pth", "data.yaml", "train.txt", "val.txt", "yolo/weights/last.pt", "yolo/results.csv"):
        assert (wd / f).is_file(), f
    assert (tmp_path / "work/det_yolo/det_t/data/meta.json").is_file()
    _, meta = load_inference_checkpoint(wd / "best.pth")  # weights_only=True
    assert meta["task"] == "det" and meta["imgsz"] == 64 and meta["model_cfg"]["yaml_file"] == "yolov8n.yaml"

    # the exported state dict rebuilt from the meta reproduces ultralytics' own network
    ck = torch.load(wd / "yolo/weights/best.pt", map_location="cpu", weights_only=False)
    ul = (ck["ema"] if ck.get("ema") is not None else ck["model"]).float().eval()
    pred = DetPredictor(wd / "best.pth", device="cpu")
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(pred.net(x)[0], ul(x)[0])

    s = family.predict(cfg, "det_t", "oof", folds=[0])
    assert 0.0 <= s["box_recall"] <= 1.0
    b = load_boxes(cfg["pred_root"], "det_t", "oof")
    f = cache.fold_of_case()
    val = [cd for cd in cache.case_days("train") if f[int(cd.split("_")[0][4:])] == 0]
    idx = cache.index("train").set_index(["case_day", "z"])
    assert sorted(b.index.get_level_values(0).unique()) == sorted(val)
    assert len(b) == int(idx.loc[val].shape[0])
    hw = idx.loc[b.index]
    assert ((b.y0 >= 0) & (b.y1 <= hw.height) & (b.x0 >= 0) & (b.x1 <= hw.width) & (b.y1 > b.y0) & (b.x1 > b.x0)).all()
    assert {"score", "detected", "slice"} <= set(b.columns)
    man = read_boxes_manifest(cfg["pred_root"], "det_t", "oof")
    assert man["folds"] == [0] and "box_recall" in man
    tm = truth_boxes_matching(cache, "train", cfg["pred_root"], "det_t")  # crops like this detector's boxes
    assert len(tm) == len(cache.index("train")) and box_recall(cache, tm)["recall"] == 1.0

    family.predict(cfg, "det_t", "test", folds=[0])
    bt = load_boxes(cfg["pred_root"], "det_t", "test")
    assert len(bt) == len(cache.index("test"))
    cd = cache.case_days("test")[0]
    rows = family.make_predictor(wd / "best.pth", device="cpu")(cache, "test", cd)  # the notebook's entry point
    np.testing.assert_array_equal(rows[["y0", "y1", "x0", "x1"]].to_numpy(), bt.loc[cd][["y0", "y1", "x0", "x1"]])
    # the 2.5D dataset accepts the predicted boxes
    from kaggle_kit.data.dataset25d import SliceDataset25D

    ds = SliceDataset25D(cache, cache.case_days("test")[:1], split="test", size=(32, 32), crop="boxes", boxes=bt,
                         with_labels=False)
    assert ds[0]["inputs"].shape == (3, 32, 32)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_train_and_predict_without_network(synth_cache, tmp_path):
    """tools/train.py + tools/predict.py for the detector under `unshare -n` (no network at all)."""
    if subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True).returncode != 0:
        pytest.skip("unshare -n not permitted here")
    env = dict(os.environ, KAGGLE_KIT_HOME=str(tmp_path / "home"))  # fresh home: nothing cached, font placed anew
    ov = [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}",
          "model.imgsz=64", "train.epochs=1", "train.plots=true"]
    for args in (["train.py", ROOT / "configs/det_yolo/tiny_cpu.yaml", *ov, "--fold", "0"],
                 ["predict.py", ROOT / "configs/det_yolo/tiny_cpu.yaml", *ov, "--split", "oof", "--folds", "0"]):
        p = subprocess.run(["unshare", "-n", sys.executable, str(ROOT / "tools" / args[0]), *map(str, args[1:])],
                           check=False, capture_output=True, text=True, env=env, cwd=ROOT)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert 0.0 <= summary["box_recall"] <= 1.0


@pytest.mark.slow
def test_seg25d_crops_with_detector_boxes(synth_cache, cache, tmp_path):
    """The 2.5D family end to end with crop=boxes: ground-truth boxes (jittered) to train, this detector's OOF
    boxes to predict; its maps come back in raw geometry and are 0 outside the detector's boxes."""
    from kaggle_kit.families.det_yolo.api import family
    from kaggle_kit.io.boxes import load_boxes
    from kaggle_kit.io.probmaps import ProbMapStore

    from tests.conftest import run_tool

    cfg = _tiny_cfg(synth_cache, tmp_path)
    family.train(cfg, 0, "det_t")
    family.predict(cfg, "det_t", "oof", folds=[0])
    seg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}",
          "exp=seg_boxes", "data.crop=boxes", "data.boxes_exp=det_t", "data.size=[32, 32]", "train.epochs=1",
          "train.batch_size=32", "data.augment=none", "model.aux_head=false"]
    run_tool("train.py", seg, *ov, "--fold", "0")
    run_tool("predict.py", seg, *ov, "--split", "oof", "--folds", "0")
    boxes = load_boxes(tmp_path / "preds", "det_t", "oof")
    store = ProbMapStore(tmp_path / "preds")
    cds = store.case_days("seg_boxes", "oof")
    assert sorted(cds) == sorted(boxes.index.get_level_values(0).unique())
    for cd in cds:
        maps = store.read("seg_boxes", "oof", cd)
        assert maps.shape[0] == len(boxes.loc[cd]) and maps.shape[2:] == cache.image("train", cd).shape[1:]
        for z, (y0, y1, x0, x1) in enumerate(boxes.loc[cd][["y0", "y1", "x0", "x1"]].to_numpy()):
            outside = np.ones(maps.shape[2:], bool)
            outside[y0:y1, x0:x1] = False
            assert not maps[z][:, outside].any()


def test_resume_of_the_detector_is_refused_and_runs_nothing(synth_cache, tmp_path):
    """ultralytics' last.pt is a pickled model: ``--resume`` refuses it by name instead of loading it (a crafted
    one would run its code), before anything is written."""
    from kaggle_kit.config import load_config
    from kaggle_kit.engine.checkpoint import CheckpointError
    from kaggle_kit.families.det_yolo.train import train

    from tests.engine.test_resume import _crafted

    cfg = load_config(ROOT / "configs/det_yolo/tiny_cpu.yaml", [f"cache={synth_cache}", f"work_root={tmp_path / 'w'}",
                                                                f"pred_root={tmp_path / 'p'}"])
    last = tmp_path / "w" / "det_yolo" / "det_tiny_cpu" / "fold0" / "yolo" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    _crafted(last, marker)
    with pytest.raises(CheckpointError, match=rf"{last}: --resume refused for the detector"):
        train(cfg, 0, "det_tiny_cpu", resume=True)
    assert not marker.exists() and sorted(p.name for p in last.parents[2].iterdir()) == ["yolo"]
