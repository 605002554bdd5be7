"""Slice classifier family: timm builds on toy inputs, local weights, loss, report maths, and a tiny
train -> OOF -> report run on the synthetic cache (CPU)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from kaggle_kit.env import setup_offline

from .conftest import ROOT, run_tool

setup_offline()

BACKBONES = ["resnet18", "efficientnet_b0", "convnext_atto", "mobilenetv3_small_050"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_build_forward_backward(backbone, k=5):  # k != 3: the stem is built for the 2.5D stack
    from kaggle_kit.families.cls.model import build_cls_model

    torch.manual_seed(0)
    net = build_cls_model(backbone, in_chans=k, classes=3)
    x = torch.randn(2, k, 64, 64)
    y = net(x)
    assert y.shape == (2, 3) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_build_errors():
    from kaggle_kit.families.cls.model import build_cls_model

    with pytest.raises(KeyError, match="resnet18"):
        build_cls_model("resnet_18")
    with pytest.raises(ValueError, match="download"):
        build_cls_model("resnet18", pretrained=True)
    with pytest.raises(FileNotFoundError):
        build_cls_model("resnet18", weights_path="/nonexistent/model.safetensors")


def test_local_weights_adapt_stem_and_drop_head(tmp_path):
    """A local timm file (RGB, 10 classes) loads into a 5-channel, 3-class model: stem adapted, head fresh."""
    import timm
    from timm.models import adapt_input_conv

    from kaggle_kit.families.cls.model import build_cls_model

    torch.manual_seed(0)
    src = timm.create_model("resnet18", pretrained=False, num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    net = build_cls_model("resnet18", in_chans=5, classes=3, weights_path=path)
    sd = net.state_dict()
    torch.testing.assert_close(sd["conv1.weight"], adapt_input_conv(5, src.state_dict()["conv1.weight"]))
    torch.testing.assert_close(sd["layer4.1.conv2.weight"], src.state_dict()["layer4.1.conv2.weight"])
    assert sd["fc.weight"].shape == (3, 512)


def test_presence_loss_is_bce():
    from kaggle_kit.families.cls.model import build_cls_loss

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(4, 3, generator=g), (torch.rand(4, 3, generator=g) > 0.5).float()
    got = build_cls_loss([{"type": "bce", "weight": 1.0}])(logits, y)
    torch.testing.assert_close(got, torch.nn.functional.binary_cross_entropy_with_logits(logits, y))
    with pytest.raises(ValueError, match="B, C"):
        build_cls_loss([{"type": "bce"}])(logits[:, :, None], y)


def _ap_reference(y, s):
    """Average precision as the mean over positives of the precision at their rank (no ties)."""
    order = np.argsort(-s)
    y = y[order]
    tp = np.cumsum(y)
    return float(np.mean((tp / np.arange(1, len(y) + 1))[y.astype(bool)]))


def test_report_maths():
    from kaggle_kit.engine.metrics import roc_auc
    from kaggle_kit.families.cls.report import class_report, classification_report, pr_curve

    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    s = np.clip(y * 0.3 + rng.random(200) * 0.8, 0, 1)
    s += np.arange(200) * 1e-9  # no ties
    cur = pr_curve(y, s)
    assert cur["ap"] == pytest.approx(_ap_reference(y, s))
    assert cur["recall"][-1] == pytest.approx(1.0) and np.all(np.diff(cur["recall"]) >= 0)
    rep = class_report(y, s, threshold=0.5)
    pred = s >= 0.5
    assert rep["at_threshold"]["precision"] == pytest.approx((pred & y).sum() / pred.sum())
    assert rep["at_threshold"]["recall"] == pytest.approx((pred & y).sum() / y.sum())
    assert rep["auc"] == pytest.approx(roc_auc(y, s))
    assert rep["best_f1"]["f1"] >= rep["at_threshold"]["f1"] - 1e-12
    # perfect scores and an absent class
    t = np.stack([y, y, np.zeros_like(y)], 1).astype(np.uint8)
    full = classification_report(t, np.stack([y * 0.9 + 0.05, s, s], 1))
    assert full["classes"]["large_bowel"]["auc"] == 1.0 and full["classes"]["large_bowel"]["ap"] == 1.0
    assert np.isnan(full["classes"]["stomach"]["auc"]) and "best_f1" not in full["classes"]["stomach"]
    assert full["macro_auc"] == pytest.approx((1.0 + rep["auc"]) / 2)


def test_slice_presence_is_an_or_over_pixels():
    from kaggle_kit.families.cls.report import slice_presence

    m = np.zeros((3, 4, 4), np.uint8)
    m[0, 0, 0], m[0, 1, 1] = 1, 2  # large and small bowel side by side: a max over flags would drop bit 0
    m[1, 2, 2] = 5  # large bowel overlapping stomach
    assert slice_presence(m).tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 0]]


def test_configs_validate():
    from kaggle_kit.config import load_config

    for name in ("tiny_cpu", "gpu_effnet_b2", "default"):
        cfg = load_config(ROOT / "configs/cls" / f"{name}.yaml")
        assert cfg["family"] == "cls"
    seg = load_config(ROOT / "configs/seg25d/default.yaml")
    cls = load_config(ROOT / "configs/cls/default.yaml")
    assert set(cls["data"]) == set(seg["data"]) and set(cls["train"]) == set(seg["train"])


def test_import_is_lazy():
    code = ("import sys; from kaggle_kit.registry import resolve; f = resolve('family', 'cls'); "
            "assert f.name == 'cls' and f.kind == 'classifier'; "
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


TINY = ["data.size=[32, 32]", "train.batch_size=32", "train.epochs=1", "train.log_interval=5",
        "train.val_batch_size=64", "data.augment=none", "model.backbone=resnet10t"]


def test_train_predict_oof_report(synth_cache, tmp_path):
    """tools/train.py + tools/predict.py on one fold: (D, C) OOF maps in slice order, report files, safe load."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.engine.checkpoint import load_inference_checkpoint
    from kaggle_kit.io.probmaps import ProbMapStore

    cfg = ROOT / "configs/cls/tiny_cpu.yaml"
    ov = [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}", *TINY]
    run_tool("train.py", cfg, *ov, "--fold", 0)
    wd = tmp_path / "work/cls/cls_tiny_cpu/fold0"
    for f in ("best.pth", "last.pth", "metrics.csv", "config.yaml", "report/report.json", "report/pr_curves.png"):
        assert (wd / f).is_file(), f
    _, meta = load_inference_checkpoint(wd / "best.pth")
    assert meta["task"] == "cls" and meta["fold"] == 0 and meta["model"]["backbone"] == "resnet10t"
    assert "val/auc_stomach" in meta["val"]
    fold_rep = json.loads((wd / "report/report.json").read_text())
    assert set(fold_rep["classes"]) == {"large_bowel", "small_bowel", "stomach"}

    p = run_tool("predict.py", cfg, *ov, "--split", "oof", "--folds", 0)
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert "macro_auc" in summary
    cache = Cache(synth_cache)
    store = ProbMapStore(tmp_path / "preds")
    f = cache.fold_of_case()
    val = [cd for cd in cache.case_days("train") if f[int(cd.split("_")[0][4:])] == 0]
    assert sorted(store.case_days("cls_tiny_cpu", "oof")) == sorted(val)
    for cd in val:
        arr = store.read("cls_tiny_cpu", "oof", cd)
        assert arr.shape == (cache.image("train", cd).shape[0], 3) and arr.dtype == np.uint8
    man = store.manifest("cls_tiny_cpu", "oof")
    assert man["kind"] == "classifier" and man["family"] == "cls" and man["folds"] == [0]
    rep_dir = tmp_path / "preds/cls_tiny_cpu/oof/report"
    assert (rep_dir / "report.json").is_file() and (rep_dir / "pr_curves.png").stat().st_size > 1000

    p = run_tool("predict.py", cfg, *ov, "--split", "test", "--folds", 0)
    for cd in cache.case_days("test"):
        assert store.read("cls_tiny_cpu", "test", cd).shape == (cache.image("test", cd).shape[0], 3)
    from kaggle_kit.families.cls.api import make_predictor  # the notebook's entry point

    cd = cache.case_days("test")[0]
    probs = make_predictor(wd / "best.pth", device="cpu")(cache, "test", cd)
    assert probs.dtype == np.float32 and probs.shape == (cache.image("test", cd).shape[0], 3)
    np.testing.assert_allclose(probs, store.read("cls_tiny_cpu", "test", cd) / 255.0, atol=1 / 255)


def test_report_on_any_classifier_exp(synth_cache, tmp_path):
    """The report reads any (D, C) classifier maps in the store, e.g. the 2.5D family's aux head (<exp>_aux)."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.families.cls.report import main, oof_truth_and_probs, slice_presence
    from kaggle_kit.io.probmaps import ProbMapStore

    cache = Cache(synth_cache)
    store = ProbMapStore(tmp_path)
    idx = cache.index("train")
    rng = np.random.default_rng(0)
    for cd, g in idx.groupby("case_day"):
        g = g.sort_values("z")
        truth = slice_presence(cache.mask("train", cd)).astype(np.float32)
        store.write("seg_aux", "oof", cd, np.clip(0.6 * truth + 0.4 * rng.random(truth.shape), 0, 1),
                    slices=g["slice"].to_numpy())
    t, p, cds, in_range = oof_truth_and_probs(cache, tmp_path, "seg_aux")
    assert t.shape == p.shape == (len(idx), 3) and len(cds) == idx["case_day"].nunique()
    assert in_range.shape == (len(idx),) and 0 < in_range.sum() < len(idx)
    assert not t[~in_range].any()  # no labels outside the annotated range
    assert main(["--cache", str(synth_cache), "--pred-root", str(tmp_path), "--exp", "seg_aux"]) == 0
    rep = json.loads((tmp_path / "seg_aux/oof/report/report.json").read_text())
    assert rep["macro_auc"] > 0.9 and (tmp_path / "seg_aux/oof/report/pr_curves.png").is_file()
    assert rep["in_annotated_range"]["n"] == int(in_range.sum())
