"""Crop boxes made robust where the detector is not: ``data.box_pad`` (a number, or ``auto``: learnt from the
detector's OOF boxes of the training folds) and ``data.box_full_prob`` (whole-image training samples)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT


def _pads_brute_force(table, cache, scope):
    """Every organ pixel of every slice, one by one: how far (rows, cols) it lies outside its slice's box."""
    out = {}
    for cd in table.index.get_level_values(0).unique():
        b = table.loc[cd].sort_index()[["y0", "y1", "x0", "x1"]].to_numpy()
        if scope == "case_day":
            b = np.tile([b[:, 0].min(), b[:, 1].max(), b[:, 2].min(), b[:, 3].max()], (len(b), 1))
        m = np.asarray(cache.mask("train", cd))
        D, H, W = m.shape
        need = 0.0
        for z, y, x in zip(*np.nonzero(m)):
            y0, y1, x0, x1 = b[z]
            dy = max(y0 - y, y - (y1 - 1), 0)
            dx = max(x0 - x, x - (x1 - 1), 0)
            need = max(need, dy / H, dx / W)
        out[cd] = need
    return pd.Series(out)


def _boxes(cache, case_days, shrink):
    """Exact organ boxes (margin 0) of ``case_days``, each slice's box shrunk by ``shrink[cd]`` pixels per side."""
    from kaggle_kit.io.boxes import truth_boxes

    t = truth_boxes(cache, "train", margin=0.0, case_days=case_days).copy()
    for cd, k in shrink.items():
        rows = t.index.get_level_values(0) == cd
        h = t.loc[rows, "y1"] - t.loc[rows, "y0"]
        w = t.loc[rows, "x1"] - t.loc[rows, "x0"]
        kk = np.minimum(k, np.minimum(h, w) // 2 - 1).clip(0)
        t.loc[rows, "y0"] += kk
        t.loc[rows, "y1"] -= kk
        t.loc[rows, "x0"] += kk
        t.loc[rows, "x1"] -= kk
    return t


def test_cover_pads_by_hand_and_brute_force(synth_cache):
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.engine.box_pad import cover_pads
    from kaggle_kit.io.boxes import expand_box, truth_boxes

    cache = Cache(synth_cache)
    cds = cache.case_days("train")
    exact = truth_boxes(cache, "train", margin=0.0)
    for scope in ("slice", "case_day"):
        assert (cover_pads(exact, cache, scope=scope) == 0).all()  # exact organ boxes hold every organ pixel
    # by hand: one case-day's union box cut by 3 rows at the top and 5 columns at the right
    cd = next(c for c in cds if np.asarray(cache.mask("train", c)).any())
    D, H, W = cache.image("train", cd).shape
    t = exact.loc[[cd]].copy()
    u = (t.y0.min(), t.y1.max(), t.x0.min(), t.x1.max())
    t[["y0", "y1", "x0", "x1"]] = [u[0] + 3, u[1], u[2], u[3] - 5]
    got = cover_pads(t, cache, scope="case_day")
    assert got[cd] == pytest.approx(max(3 / H, 5 / W))
    # random shrinks: the pixel-by-pixel reference, and the pad does make the boxes hold every organ pixel
    rng = np.random.default_rng(0)
    t = _boxes(cache, cds, {c: int(rng.integers(0, 12)) for c in cds})
    for scope in ("slice", "case_day"):
        got = cover_pads(t, cache, scope=scope)
        want = _pads_brute_force(t, cache, scope)
        assert np.allclose(got.loc[want.index].to_numpy(), want.to_numpy())
    got = cover_pads(t, cache, scope="slice")
    for c in cds[:4]:
        m = np.asarray(cache.mask("train", c))
        for z in range(len(m)):
            y0, y1, x0, x1 = expand_box(tuple(t.loc[(c, z)]), m.shape[1:], got[c])
            assert not m[z, :y0].any() and not m[z, y1:].any() and not m[z, :, :x0].any() and not m[z, :, x1:].any()


def _write_oof_boxes(table, pred_root, exp="det_pad"):
    d = pred_root / exp / "oof"
    d.mkdir(parents=True, exist_ok=True)
    table.reset_index().assign(score=0.9, detected=1).to_csv(d / "boxes.csv", index=False)
    man = {"family": "det_yolo", "exp": exp, "split": "oof", "kind": "boxes", "folds": [0, 1, 2, 3, 4],
           "params": {"margin": 0.0, "checkpoint": "last"}, "data": {"mode": "organs", "body_frac": 0.1}}
    (d / "boxes.json").write_text(json.dumps(man))


def test_auto_pad_is_learnt_from_the_training_folds_only(synth_cache, tmp_path):
    from kaggle_kit.config import load_config
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.data.dataset25d import fold_case_days
    from kaggle_kit.engine.box_pad import AUTO_PAD_MAX, AUTO_PAD_QUANTILE, resolve_box_pad

    cache = Cache(synth_cache)
    cds = cache.case_days("train")
    val, train = fold_case_days(cache, 0, "val"), fold_case_days(cache, 0, "train")
    rng = np.random.default_rng(1)
    shrink = {c: int(rng.integers(0, 6)) for c in train}
    pads = {}
    for val_shrink in (0, 40):  # fold 0's own boxes, good or awful, must not move fold 0's pad
        shrink.update({c: val_shrink for c in val})
        root = tmp_path / f"preds{val_shrink}"
        _write_oof_boxes(_boxes(cache, cds, shrink), root)
        cfg = load_config(ROOT / "configs/seg25d/tiny_cpu_boxes.yaml",
                          [f"cache={synth_cache}", f"pred_root={root}", "data.boxes_exp=det_pad"])
        assert cfg["data"]["box_pad"] == "auto"
        out = resolve_box_pad(cfg, cache, 0)
        assert cfg["data"]["box_pad"] == "auto" and out is not cfg  # the caller's config is untouched
        pads[val_shrink] = out["data"]["box_pad"]
        ref = _pads_brute_force(_boxes(cache, train, shrink), cache, "case_day")
        assert pads[val_shrink] == pytest.approx(min(AUTO_PAD_MAX, np.quantile(ref, AUTO_PAD_QUANTILE)), abs=1e-4)
    assert pads[0] == pads[40] and pads[0] > 0
    fixed = load_config(ROOT / "configs/seg25d/tiny_cpu_boxes.yaml", ["data.box_pad=0.05"])
    assert resolve_box_pad(fixed, cache, 0) is fixed
    nocrop = load_config(ROOT / "configs/seg25d/tiny_cpu.yaml", ["data.box_pad=auto"])
    with pytest.raises(ValueError, match="crop"):
        resolve_box_pad(nocrop, cache, 0)


def test_dataset_pads_boxes_and_shows_whole_images(synth_cache):
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.data.dataset25d import SliceDataset25D, StackSpec
    from kaggle_kit.data.pipeline25d import dataset_kwargs
    from kaggle_kit.io.boxes import expand_box, truth_boxes

    cache = Cache(synth_cache)
    cd = cache.case_days("train")[0]
    tb = truth_boxes(cache, "train", case_days=[cd])
    img = cache.image("train", cd)
    kw = dict(stack=StackSpec(3, 1), size=(32, 64), crop="boxes", boxes=tb, with_labels=False)
    padded = SliceDataset25D(cache, [cd], box_pad=0.1, **kw)
    for z in range(len(tb)):
        assert padded.geometry(cd, z, img).crop == expand_box(tuple(tb.loc[(cd, z)]), img.shape[1:], 0.1)
    always = SliceDataset25D(cache, [cd], box_full_prob=1.0, **kw)
    assert {always.geometry(cd, z, img, train=True).box for z in range(len(tb))} == {None}
    assert None not in {always.geometry(cd, z, img).box for z in range(len(tb))}  # predict: never the whole image
    half = SliceDataset25D(cache, [cd], box_full_prob=0.5, seed=3, **kw)
    share = np.mean([half.geometry(cd, 0, img, train=True).box is None for _ in range(400)])
    assert 0.4 < share < 0.6
    with pytest.raises(ValueError, match="auto"):
        dataset_kwargs({"k": 3, "stride": 1, "stack_mode": "centered", "ends": "clamp", "size": [32, 32],
                        "geometry": "resize", "norm": "volume", "crop": "boxes", "box_scope": "slice",
                        "box_pad": "auto"})
