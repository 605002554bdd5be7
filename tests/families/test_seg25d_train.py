"""Training engine + 2.5D family end to end on a tiny synthetic cache (CPU)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, run_tool

TINY = ["data.size=[32, 32]", "train.batch_size=32", "train.epochs=1", "train.log_interval=5",
        "train.val_batch_size=64", "data.augment=none"]


def _overrides(cache, tmp, extra=()):
    return [f"cache={cache}", f"work_root={tmp / 'work'}", f"pred_root={tmp / 'preds'}", *TINY, *extra]


def test_train_then_predict_oof_in_raw_geometry(synth_cache, trained_seg25d):
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.engine.checkpoint import load_inference_checkpoint
    from kaggle_kit.io.probmaps import ProbMapStore

    tmp_path = trained_seg25d["work_root"].parent
    wd = tmp_path / "work/seg25d/tiny_cpu/fold0"
    for f in ("best.pth", "last.pth", "metrics.csv", "config.yaml", "epoch_1.pth"):
        assert (wd / f).is_file(), f
    sd, meta = load_inference_checkpoint(wd / "best.pth")  # weights_only=True load
    assert meta["family"] == "seg25d" and meta["fold"] == 0 and meta["in_channels"] == 3
    assert "val" in meta and "val/score" in meta["val"]
    m = pd.read_csv(wd / "metrics.csv")
    assert list(m["epoch"]) == [1] and "val/score" in m.columns
    cache = Cache(synth_cache)
    store = ProbMapStore(tmp_path / "preds")
    val_cds = [cd for cd in cache.case_days("train")
               if cache.fold_of_case()[int(cd.split("_")[0][4:])] == 0]
    assert val_cds and sorted(store.case_days("tiny_cpu", "oof")) == sorted(val_cds)
    for cd in val_cds:
        arr = store.read("tiny_cpu", "oof", cd)
        assert arr.dtype == np.uint8 and arr.shape[1] == 3
        assert arr.shape[0] == cache.image("train", cd).shape[0]
        assert arr.shape[2:] == cache.image("train", cd).shape[1:]  # raw geometry, not the 32x32 canvas
    man = store.manifest("tiny_cpu", "oof")
    assert man["family"] == "seg25d" and man["folds"] == [0]
    # the aux presence head is written as a classifier map alongside
    assert store.read("tiny_cpu_aux", "oof", val_cds[0]).shape == (cache.image("train", val_cds[0]).shape[0], 3)
    # test maps: every test case-day, raw geometry
    assert sorted(store.case_days("tiny_cpu", "test")) == sorted(cache.case_days("test"))
    # the predictor runs NHWC by default; NCHW gives the same maps and aux presence (a layout change only),
    # with and without flip TTA
    from kaggle_kit.families.seg25d.predict import Predictor25D

    cd = val_cds[0]
    for tta in ("none", "hflip"):
        nhwc = Predictor25D(wd / "best.pth", device="cpu", tta=tta)
        nchw = Predictor25D(wd / "best.pth", device="cpu", tta=tta, channels_last=False)
        a, b = nhwc(cache, "train", cd), nchw(cache, "train", cd)
        assert nhwc.channels_last and a.flags.c_contiguous and a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4)
        np.testing.assert_allclose(nhwc.last_presence, nchw.last_presence, atol=1e-4)
    # and the default predictor reproduces the stored OOF map of its fold (uint8)
    np.testing.assert_allclose(Predictor25D(wd / "best.pth", device="cpu")(cache, "train", cd),
                               store.read("tiny_cpu", "oof", cd) / 255.0, atol=1 / 255 + 1e-4)


def _predict_test_as(trained, tmp_path, exp: str, *extra):
    """The fixture's fold-0 model copied to experiment ``exp`` and its test split predicted by the tool with
    ``extra`` overrides; returns the store of those maps (tmp_path/preds)."""
    import shutil

    from kaggle_kit.io.probmaps import ProbMapStore

    shutil.copytree(trained["work_root"] / "seg25d/tiny_cpu/fold0", tmp_path / f"work/seg25d/{exp}/fold0")
    ov = [o for o in trained["overrides"] if o.split("=")[0] not in ("pred_root", "work_root")]
    run_tool("predict.py", trained["config"], "--split", "test", "--folds", "0", *ov,
             f"pred_root={tmp_path / 'preds'}", f"work_root={tmp_path / 'work'}", f"exp={exp}", *extra)
    return ProbMapStore(tmp_path / "preds")


def test_stride_tta_is_the_mean_of_single_step_maps(synth_cache, trained_seg25d, tmp_path):
    """predict.strides: the map is the mean of the maps of stacks built with each slice step; [2] is the
    checkpoint's own step (data.stride 2); another step reaches the input; predict.py records the steps in the
    manifest and writes those averaged maps; the bundle's predictor factory takes the same keyword."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.families.seg25d.api import make_predictor
    from kaggle_kit.families.seg25d.predict import Predictor25D

    wd = trained_seg25d["work_root"] / "seg25d/tiny_cpu/fold0"
    cache = Cache(synth_cache)
    cd = cache.case_days("test")[0]
    base = Predictor25D(wd / "last.pth", device="cpu")
    p_def = base(cache, "test", cd)
    pres_def = base.last_presence
    s2 = Predictor25D(wd / "last.pth", device="cpu", strides=[2])
    s3 = Predictor25D(wd / "last.pth", device="cpu", strides=[3])
    both = make_predictor(wd / "last.pth", device="cpu", strides=[2, 3])
    p2, p3, p23 = s2(cache, "test", cd), s3(cache, "test", cd), both(cache, "test", cd)
    assert base.strides == (2,) and both.strides == (2, 3)
    np.testing.assert_array_equal(p2, p_def)
    assert np.abs(p3 - p2).max() > 1e-3  # the step reaches the stacks
    np.testing.assert_allclose(p23, 0.5 * (p2 + p3), atol=1e-5)
    np.testing.assert_allclose(both.last_presence, 0.5 * (pres_def + s3.last_presence), atol=1e-5)
    with pytest.raises(ValueError, match="strides"):
        Predictor25D(wd / "last.pth", device="cpu", strides=[0])
    # the tool: the same averaged maps (uint8), the steps in the manifest for the bundle and the notebook
    store = _predict_test_as(trained_seg25d, tmp_path, "tiny_z", "predict.strides=[2, 3]")
    assert store.manifest("tiny_z", "test")["predictor"]["strides"] == [2, 3]
    np.testing.assert_allclose(store.read("tiny_z", "test", cd) / 255.0, p23, atol=1 / 255 + 1e-4)


def test_fold_all_trains_on_every_case_day_and_predicts_test(synth_cache, tmp_path):
    """``--fold all`` (README: one model on every case): every train case-day trains, none validates, and its
    test maps are written with ``trained_on_all`` (until session 12 fold_case_days crashed on "all")."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.data.dataset25d import fold_case_days
    from kaggle_kit.io.probmaps import ProbMapStore

    cache = Cache(synth_cache)
    assert fold_case_days(cache, "all", "train") == list(dict.fromkeys(cache.index("train")["case_day"]))
    assert fold_case_days(cache, "all", "val") == []
    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = _overrides(synth_cache, tmp_path)
    run_tool("train.py", cfg, "--fold", "all", *ov)
    assert (tmp_path / "work/seg25d/tiny_cpu/foldall/done.json").is_file()
    run_tool("predict.py", cfg, "--split", "test", "--folds", "all", *ov)
    store = ProbMapStore(tmp_path / "preds")
    assert store.manifest("tiny_cpu", "test")["trained_on_all"] is True
    assert sorted(store.case_days("tiny_cpu", "test")) == sorted(cache.case_days("test"))


def test_strict_config_errors_from_cli(synth_cache, tmp_path):
    p = run_tool("train.py", ROOT / "configs/seg25d/tiny_cpu.yaml", "--fold", 0, "train.epoch=2", check=False)
    assert p.returncode == 2 and "did you mean 'train.epochs'" in p.stderr


def _metrics_epochs(wd):
    f = wd / "metrics.csv"
    return list(pd.read_csv(f)["epoch"]) if f.is_file() else []


def test_kill_and_resume(synth_cache, tmp_path):
    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = _overrides(synth_cache, tmp_path, ["train.epochs=3"])
    wd = tmp_path / "work/seg25d/tiny_cpu/fold1"
    cmd = [sys.executable, str(ROOT / "tools/train.py"), str(cfg), "--fold", "1", *ov]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    t0 = time.time()
    # kill only once the checkpoint is complete: mmengine writes epoch_1.pth, then the ``last_checkpoint``
    # pointer that --resume reads (a kill between the two would resume from scratch and train epoch 1 twice)
    last = wd / "last_checkpoint"
    while not (last.is_file() and last.read_text().strip().endswith("epoch_1.pth")):
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() - t0 < 600
        time.sleep(0.05)
    time.sleep(0.5)  # let the files settle; epoch 2 is still running
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (wd / "epoch_3.pth").exists()
    before = _metrics_epochs(wd)
    p = run_tool("train.py", cfg, "--fold", 1, "--resume", *ov)
    after = _metrics_epochs(wd)
    # continued from the checkpoint: epochs after the kill are new rows; epoch 1 is never trained twice
    assert after[: len(before)] == before and after.count(1) <= 1
    assert after[-1] == 3 and sorted(set(after)) == after
    assert (wd / "epoch_3.pth").is_file()
    log = "".join(f.read_text() for f in wd.rglob("*.log"))
    assert "resumed epoch: 1" in log.lower() or "resumed" in log.lower(), log[-2000:]
    assert p.returncode == 0


@pytest.mark.slow
def test_torchrun_two_processes(synth_cache, tmp_path):
    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = _overrides(synth_cache, tmp_path)
    torchrun = Path(sys.executable).parent / "torchrun"
    p = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29531",
                        str(ROOT / "tools/train.py"), str(cfg), "--fold", "2", *ov],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    wd = tmp_path / "work/seg25d/tiny_cpu/fold2"
    assert (wd / "best.pth").is_file() and _metrics_epochs(wd) == [1]
    log = "".join(f.read_text() for f in wd.rglob("*.log"))
    assert "distributed training: true" in log.lower() and "gpu number: 2" in log.lower(), log[:3000]


def test_several_folds_in_one_process(synth_cache, tmp_path):
    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = _overrides(synth_cache, tmp_path)
    p = run_tool("train.py", cfg, "--fold", "2,1", *ov)
    assert p.stdout.index("fold2") < p.stdout.index("fold1")  # in the order given
    for k in (1, 2):
        wd = tmp_path / f"work/seg25d/tiny_cpu/fold{k}"
        from kaggle_kit.engine.checkpoint import load_inference_checkpoint
        _, meta = load_inference_checkpoint(wd / "best.pth")
        assert meta["fold"] == k
        assert _metrics_epochs(wd) == [1]
        logs = list(wd.glob("*/*.log"))  # each fold logs into its own folder, not into the first fold's
        assert logs and all(f"fold{k}" in str(f) for f in logs)
    bad = run_tool("train.py", cfg, "--fold", "1,1", *ov, check=False)
    assert bad.returncode == 2 and "distinct" in bad.stderr


def test_predict_rejects_unknown_split(synth_cache, tmp_path):
    p = run_tool("predict.py", ROOT / "configs/seg25d/tiny_cpu.yaml", "--split", "oof,val",
                 *_overrides(synth_cache, tmp_path), check=False)
    assert p.returncode == 2 and "expected oof, test or oof,test" in p.stderr


def test_csv_log_keeps_validation_columns_that_appear_later(tmp_path):
    """val_interval > 1: the first rows have no validation metrics; the file gains the columns later."""
    from types import SimpleNamespace

    from kaggle_kit.engine.hooks import CSVLogHook

    hook = CSVLogHook()
    runner = SimpleNamespace(work_dir=str(tmp_path), epoch=0, val_loop=object(),
                             train_loop=SimpleNamespace(val_interval=2, val_begin=1, max_epochs=5),
                             optim_wrapper=SimpleNamespace(get_lr=lambda: {"lr": [0.1]}))
    for epoch in range(5):  # validation after epochs 2, 4 and the last one (5), as mmengine's loop does
        runner.epoch = epoch
        hook.after_train_iter(runner, 0, outputs={"loss": 1.0 + epoch})
        hook.after_train_epoch(runner)
        if (epoch + 1) % 2 == 0 or epoch + 1 == 5:
            hook.after_val_epoch(runner, {"val/score": 0.5 + epoch / 10})
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert list(df["epoch"]) == [1, 2, 3, 4, 5] and list(df["train_loss"]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert df["val/score"].isna().tolist() == [True, False, True, False, False]
    assert df["val/score"].dropna().round(6).tolist() == [0.6, 0.8, 0.9]


def test_gamma_tta_is_the_mean_over_the_light_int_gammas(synth_cache, trained_seg25d, tmp_path):
    """predict.tta=gamma: maps and aux presence are the mean of the net's outputs on the stacks raised to the
    gammas 1, 1/1.25 and 1.25 (light_int's range), computed here by hand through the no-TTA predictor; the
    tool records the TTA in the manifest (the bundle and the notebook read it there)."""
    import torch

    from kaggle_kit.data.cache import Cache
    from kaggle_kit.families.seg25d.predict import Predictor25D, gamma_tta_values

    assert gamma_tta_values() == (1.0, 0.8, 1.25)
    wd = trained_seg25d["work_root"] / "seg25d/tiny_cpu/fold0"
    plain = Predictor25D(wd / "last.pth", device="cpu")
    gam = Predictor25D(wd / "last.pth", device="cpu", tta="gamma")
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.1, 1.4, (3, 3, 32, 32)).astype(np.float32))
    ref = [plain._forward(x.clamp(min=0) ** g if g != 1.0 else x) for g in (1.0, 0.8, 1.25)]
    p, a = gam._forward(x)
    np.testing.assert_allclose(p, np.mean([r[0] for r in ref], axis=0), atol=1e-6)
    np.testing.assert_allclose(a, np.mean([r[1] for r in ref], axis=0), atol=1e-6)
    assert np.abs(ref[1][0] - ref[0][0]).max() > 1e-4  # the gamma reaches the net's output
    with pytest.raises(KeyError, match="gamma"):
        Predictor25D(wd / "last.pth", device="cpu", tta="vflip")
    # whole volumes through the tool: the manifest names the TTA, the maps are the predictor's
    cache = Cache(synth_cache)
    cd = cache.case_days("test")[0]
    store = _predict_test_as(trained_seg25d, tmp_path, "tiny_g", "predict.tta=gamma")
    assert store.manifest("tiny_g", "test")["tta"] == "gamma"
    np.testing.assert_allclose(store.read("tiny_g", "test", cd) / 255.0, gam(cache, "test", cd), atol=1 / 255 + 1e-4)
