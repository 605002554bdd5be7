"""One ``predictor_settings(cfg)`` per family: the only source of ``predict()``'s predictors and of the
notebook's, recorded verbatim in the maps' manifest and in the bundle.

The parity test sets EVERY ``predict.*`` key of every family off its default, predicts with ``predict()``,
bundles, loads the bundle's members as the notebook does (``load_bundle_members`` + ``predict_case_day`` on
the decoded test PNGs) and requires the same maps, bit for bit after uint8 quantisation. A key wired into one
path only (the predictor ``predict()`` builds, but not the settings) changes one side's maps and fails it.
"""
import copy
import inspect
import json

import numpy as np
import pytest
import yaml

from kaggle_kit.config import load_config
from kaggle_kit.registry import resolve

from tests.conftest import ROOT
from tests.engine.test_checkpoint_format import _net, frozen_meta

FAMILIES = ("seg25d", "seg3d", "cls", "det_yolo")

#: an off-default value of every predict key of every family (default.yaml and tiny_cpu.yaml both differ)
OFF = {
    "seg25d": {"tta": "hflip", "strides": [1, 2], "batch_size": 5, "checkpoint": "best"},
    "seg3d": {"tta": "axes", "overlap": 0.6, "sw_batch_size": 3, "window": [8, 16, 16], "checkpoint": "best"},
    "cls": {"tta": "hflip", "batch_size": 5, "checkpoint": "best", "threshold": 0.3},
    "det_yolo": {"conf": 0.0, "smooth": "envelope", "smooth_window": 3, "margin": -0.1, "fallback": "full",
                 "batch_size": 5, "checkpoint": "best"},
}


def _overrides(family: str) -> list[str]:
    return [f"predict.{k}={json.dumps(v)}" for k, v in OFF[family].items()]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_predict_key_is_a_predictor_setting_or_named_elsewhere(family):
    """Each predict key of the family's default config has an off-default value above (a new key fails here
    until the parity test below sets it), and changing it changes ``predictor_settings`` unless the family
    names where else it acts. The settings are make_predictor's keyword arguments and survive JSON as they
    are (the manifest and bundle.json record them verbatim)."""
    fam = resolve("family", family)
    base = load_config(ROOT / f"configs/{family}/default.yaml")
    for name in ("default", "tiny_cpu"):
        cfg = load_config(ROOT / f"configs/{family}/{name}.yaml")
        assert set(OFF[family]) == set(cfg["predict"]), name
        assert all(cfg["predict"][k] != v for k, v in OFF[family].items()), name
    settings = fam.predictor_settings(base)
    assert json.loads(json.dumps(settings)) == settings
    params = inspect.signature(fam.make_predictor).parameters
    assert set(settings) <= set(params) - {"ckpt_path", "device"}
    for key, value in OFF[family].items():
        cfg = copy.deepcopy(base)
        cfg["predict"][key] = value
        changed = fam.predictor_settings(cfg) != settings
        assert changed != (key in fam.predict_elsewhere), key


def _checkpoints(work_root, family: str, exp: str, meta: dict) -> None:
    """Random-init fold-0 checkpoints ``best`` and ``last`` (different weights: ``checkpoint`` matters)."""
    import torch

    from kaggle_kit.engine.checkpoint import save_inference_checkpoint
    from kaggle_kit.paths import inference_checkpoint

    for seed, which in ((1, "best"), (2, "last")):
        torch.manual_seed(seed)
        path = inference_checkpoint(work_root, family, exp, 0, which)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_inference_checkpoint(path, _net(family, meta).state_dict(), dict(meta, exp=exp, fold=0))


def test_notebook_members_equal_predict_with_every_predict_key_off_default(synth_cache, synth_root, tmp_path):
    """seg25d (plain, and cropping with a det_yolo detector), seg3d and cls members, every predict key off its
    default: the bundle's members in the notebook's path give predict()'s stored test maps."""
    from kaggle_kit.data.png_volumes import PngVolumes
    from kaggle_kit.deploy.bundle import build_bundle
    from kaggle_kit.deploy.members import load_bundle_members, predict_case_day
    from kaggle_kit.io.probmaps import ProbMapStore, to_uint8

    work, preds = tmp_path / "work", tmp_path / "preds"
    common = [f"cache={synth_cache}", f"work_root={work}", f"pred_root={preds}"]
    members = {"s25": ("seg25d", []), "det": ("det_yolo", []), "s25crop": ("seg25d", ["data.crop=boxes",
               "data.boxes_exp=det"]), "s3d": ("seg3d", []), "clsm": ("cls", [])}
    cfgs = {}
    for exp, (family, extra) in members.items():  # the detector before the member cropping with its boxes
        cfg = load_config(ROOT / f"configs/{family}/tiny_cpu.yaml", [*common, f"exp={exp}", *extra, *_overrides(family)])
        meta = frozen_meta(family)
        if extra:
            meta["data"] = dict(meta["data"], crop="boxes", boxes_exp="det")
        _checkpoints(work, family, exp, meta)
        fam = resolve("family", family)
        for split in ("oof", "test"):
            fam.predict(cfg, exp, split, folds=[0])
        cfgs[exp] = cfg
    store = ProbMapStore(preds)
    pixel = ["s25", "s25crop", "s3d"]
    for exp in pixel + ["clsm"]:  # the manifest records the settings verbatim
        assert store.manifest(exp, "test")["predictor"] == resolve("family", members[exp][0]).predictor_settings(cfgs[exp])
    ens = tmp_path / "ensemble.yaml"
    ens.write_text(yaml.safe_dump({"members": [{"exp": e, "kind": "pixel"} for e in pixel] +
                                   [{"exp": e, "kind": "classifier"} for e in ("clsm", "s25_aux")], "threshold": 0.5}))
    bundle = tmp_path / "bundle"
    man = build_bundle(bundle, ens, work, preds, wheels=False)
    entries = {m["name"]: m for m in man["members"]}
    for exp in pixel + ["clsm", "det"]:
        settings = resolve("family", members[exp][0]).predictor_settings(cfgs[exp])
        assert entries[exp]["predictor"] == {k: v for k, v in settings.items() if k != "tta"}
        assert entries[exp]["tta"] == settings["tta"]
        assert entries[exp]["checkpoints"] == [f"checkpoints/{exp}/fold0.pth"]
    loaded, dropped, _ = load_bundle_members(bundle, man["members"], device="cpu", sha256=man["sha256"])
    assert dropped == [] and {m.name: m.boxes_from for m in loaded}["s25crop"] == "det"
    vols = PngVolumes(synth_root, "test")
    for cd in vols.case_days():
        maps, failures = predict_case_day(loaded, vols, cd)
        assert failures == []
        for exp in pixel + ["clsm", "s25_aux"]:
            np.testing.assert_array_equal(to_uint8(maps[exp]), store.read(exp, "test", cd), err_msg=f"{exp} {cd}")
