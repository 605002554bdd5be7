"""Honest OOF maps and the detector's boxes in use: every shipped config predicts from the final (EMA) weights,
not from the epoch chosen on the fold it predicts; a ``crop: boxes`` 2.5D config trains on ground-truth boxes
made like its detector's and validates and predicts with the detector's own boxes."""
import json

import numpy as np
import pytest

from tests.conftest import ROOT

FAMILY_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name not in ("ensemble", "presets"))


def test_family_configs_exist():
    fams = {p.parent.name for p in FAMILY_CONFIGS}
    assert fams == {"cls", "det_yolo", "seg25d", "seg3d"} and len(FAMILY_CONFIGS) >= 12


@pytest.mark.parametrize("path", FAMILY_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_configs_never_predict_oof_from_best(path):
    """``best`` is chosen on the fold's own validation case-days, the very ones its OOF maps cover."""
    from kaggle_kit.config import load_config

    cfg = load_config(path)
    assert cfg["predict"]["checkpoint"] == "last", f"{path}: predict.checkpoint must be 'last' (honest OOF)"
    # best stays available explicitly
    assert load_config(path, ["predict.checkpoint=best"])["predict"]["checkpoint"] == "best"


def test_crop_configs_name_a_detector_that_runs_first():
    """Every config cropping with detector boxes names a detector experiment a shipped detector config makes
    (run_all names a config's experiment ``exp`` or ``<family>_<stem>``), and every run_all preset trains its
    detector before any other member."""

    from kaggle_kit.config import CONFIG_ROOT, load_config

    from kaggle_kit.commands.run_all import PRESETS

    cfgs = {p: load_config(p) for p in FAMILY_CONFIGS}
    det_exps = {c.get("exp") or f"det_yolo_{p.stem}" for p, c in cfgs.items() if c["family"] == "det_yolo"}
    crops = [c for c in cfgs.values() if c["family"] != "det_yolo" and c["data"].get("crop") == "boxes"]
    assert crops, "no shipped config crops with detector boxes"
    assert all(c["data"]["boxes_exp"] in det_exps for c in crops)
    for preset, rels in PRESETS.items():
        fams = [load_config(CONFIG_ROOT / r)["family"] for r in rels]
        assert fams[0] == "det_yolo" and "det_yolo" not in fams[1:], preset


def _fake_detector(cache, pred_root, exp="det_fake", margin=0.08):
    """A detector's OOF/test box tables written by hand: a fixed box (the left 3/4 x the top 2/3) on every slice,
    and a manifest saying its boxes were made in mode organs with ``margin``. Returns the OOF table."""
    import pandas as pd

    from kaggle_kit.io.boxes import boxes_frame

    out = {}
    for split, name in (("train", "oof"), ("test", "test")):
        parts = []
        for cd in cache.case_days(split):
            D, H, W = cache.image(split, cd).shape
            parts.append(boxes_frame(cd, np.tile([0, 2 * H // 3, 0, 3 * W // 4], (D, 1)), score=0.9, detected=1))
        table = pd.concat(parts, ignore_index=True)
        d = pred_root / exp / name
        d.mkdir(parents=True)
        table.to_csv(d / "boxes.csv", index=False)
        man = {"family": "det_yolo", "exp": exp, "split": name, "kind": "boxes", "folds": [0, 1, 2, 3, 4],
               "params": {"margin": margin, "checkpoint": "last"}, "data": {"mode": "organs", "body_frac": 0.1}}
        (d / "boxes.json").write_text(json.dumps(man))
        out[split] = table.set_index(["case_day", "z"])
    return out["train"]


def test_train_boxes_need_the_detector(synth_cache, tmp_path):
    from kaggle_kit.config import load_config
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.io.boxes import train_boxes_for

    cfg = load_config(ROOT / "configs/seg25d/tiny_cpu_boxes.yaml",
                      [f"cache={synth_cache}", f"pred_root={tmp_path / 'preds'}"])
    with pytest.raises(FileNotFoundError, match="det_tiny_cpu"):
        train_boxes_for(cfg, Cache(synth_cache))
    assert train_boxes_for(load_config(ROOT / "configs/seg25d/tiny_cpu.yaml"), Cache(synth_cache)) == (None, None)


def test_crop_config_trains_on_truth_boxes_and_predicts_with_detector_boxes(synth_cache, tmp_path, monkeypatch):
    """The CPU preset's crop config, shrunk: training sees ground-truth boxes built with the detector's mode and
    margin (read from its manifest) and validation the detector's OOF boxes; the OOF maps are 0 outside the
    detector's boxes and not inside (an untrained net's sigmoid is near 0.5)."""
    from kaggle_kit.config import load_config
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.families.seg25d import train as seg_train
    from kaggle_kit.families.seg25d.api import family
    from kaggle_kit.io.boxes import truth_boxes
    from kaggle_kit.io.probmaps import ProbMapStore

    cache = Cache(synth_cache)
    det = _fake_detector(cache, tmp_path / "preds")
    cfg = load_config(ROOT / "configs/seg25d/tiny_cpu_boxes.yaml",
                      [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}",
                       "data.boxes_exp=det_fake", "data.size=[32, 64]", "train.epochs=1", "train.batch_size=64",
                       "train.val_batch_size=64", "data.augment=none", "model.aux_head=false"])
    seen = {}
    real = seg_train.make_datasets

    def spy(cfg_, cache_, fold, boxes=None, val_boxes=None):
        seen["train"], seen["val"] = boxes, val_boxes
        return real(cfg_, cache_, fold, boxes=boxes, val_boxes=val_boxes)

    monkeypatch.setattr(seg_train, "make_datasets", spy)
    family.train(cfg, 0, "seg_crop")
    # train: truth boxes with the detector's margin (0.08), not the 5 % default, and not the detector's boxes
    want = truth_boxes(cache, "train", mode="organs", margin=0.08)
    assert seen["train"].equals(want)
    assert not seen["train"].equals(truth_boxes(cache, "train"))
    # validation: the detector's OOF boxes
    assert seen["val"].loc[det.index, ["y0", "y1", "x0", "x1"]].equals(det[["y0", "y1", "x0", "x1"]])

    family.predict(cfg, "seg_crop", "oof", folds=[0])
    store = ProbMapStore(tmp_path / "preds")
    cds = store.case_days("seg_crop", "oof")
    assert cds and store.manifest("seg_crop", "oof")["checkpoint"] == "last"
    # box_pad auto: a number learnt at train time, kept in the checkpoint's meta; the predicted crops are the
    # detector's boxes grown by it (the fake boxes cut organs off, so the pad is above 0)
    from kaggle_kit.engine.checkpoint import load_inference_checkpoint
    from kaggle_kit.io.boxes import expand_box

    pad = load_inference_checkpoint(tmp_path / "work/seg25d/seg_crop/fold0/last.pth")[1]["data"]["box_pad"]
    assert cfg["data"]["box_pad"] == "auto" and isinstance(pad, float) and 0 < pad <= 0.15

    from kaggle_kit.commands.run_all import crop_pads

    assert crop_pads(tmp_path / "work") == {"seg_crop": {0: pad}}  # what run_all's report shows
    for cd in cds:
        maps = store.read("seg_crop", "oof", cd)
        D, H, W = cache.image("train", cd).shape
        assert maps.shape == (D, 3, H, W)
        y0, y1, x0, x1 = expand_box((0, 2 * H // 3, 0, 3 * W // 4), (H, W), pad)
        assert not maps[:, :, y1:, :].any() and not maps[:, :, :, x1:].any() and (y0, x0) == (0, 0)
        assert maps[:, :, :y1, :x1].any() and maps[:, :, y1 - 1, :x1].any() and maps[:, :, :y1, x1 - 1].any()


def test_union_boxes_per_case_day_by_hand():
    import pandas as pd

    from kaggle_kit.data.dataset25d import union_boxes_per_case_day

    t = pd.DataFrame({"case_day": ["case1_day1"] * 3 + ["case2_day1"] * 2, "z": [0, 1, 2, 0, 1],
                      "y0": [5, 3, 9, 0, 2], "y1": [10, 8, 12, 4, 6], "x0": [7, 6, 8, 1, 0], "x1": [9, 20, 11, 3, 5],
                      "score": [0.1, 0.2, 0.3, 0.4, 0.5]}).set_index(["case_day", "z"])
    u = union_boxes_per_case_day(t)
    assert u.loc["case1_day1"][["y0", "y1", "x0", "x1"]].drop_duplicates().values.tolist() == [[3, 12, 6, 20]]
    assert u.loc["case2_day1"][["y0", "y1", "x0", "x1"]].drop_duplicates().values.tolist() == [[0, 6, 0, 5]]
    assert u["score"].tolist() == t["score"].tolist() and t.loc[("case1_day1", 0), "y0"] == 5  # input untouched


def test_box_scope_case_day_crops_every_slice_alike(synth_cache):
    """box_scope case_day: one crop (the union of the case-day's boxes) for every slice; slice: each its own."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.data.dataset25d import SliceDataset25D, StackSpec
    from kaggle_kit.io.boxes import truth_boxes

    cache = Cache(synth_cache)
    cd = cache.case_days("train")[0]
    tb = truth_boxes(cache, "train", case_days=[cd])
    want = (int(tb.y0.min()), int(tb.y1.max()), int(tb.x0.min()), int(tb.x1.max()))
    img = cache.image("train", cd)
    kw = dict(stack=StackSpec(3, 1), size=(32, 64), crop="boxes", boxes=tb, with_labels=False)
    per_case = SliceDataset25D(cache, [cd], box_scope="case_day", **kw)
    per_slice = SliceDataset25D(cache, [cd], **kw)
    assert {per_case.geometry(cd, z, img).crop for z in range(len(tb))} == {want}
    assert len({per_slice.geometry(cd, z, img).crop for z in range(len(tb))}) > 1
    with pytest.raises(KeyError, match="box_scope"):
        SliceDataset25D(cache, [cd], box_scope="volume", **kw)
