"""Slice classifier family: timm builds on toy inputs, local weights, loss, report maths, and a tiny
train -> OOF -> report run on the synthetic cache (CPU)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from kaggle_kit.env import setup_offline

from tests.conftest import ROOT, run_tool

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


@pytest.mark.parametrize("backbone", BACKBONES)
def test_map_head_train_and_eval_outputs(backbone, k=5):
    """head=map: eval returns (B, C) presence logits, train mode also the per-class map; presence is the map's
    maximum, and gradients reach every parameter."""
    from kaggle_kit.families.cls.model import MapHeadClassifier, build_cls_model

    torch.manual_seed(0)
    net = build_cls_model(backbone, in_chans=k, classes=3, head="map", drop_rate=0.2)
    assert isinstance(net, MapHeadClassifier)
    x = torch.randn(2, k, 96, 64)  # not square: the map keeps the aspect (3x2 at stride 32)
    logits, m = net.train()(x)
    assert logits.shape == (2, 3) and m.shape[:2] == (2, 3) and m.shape[2] > m.shape[3] >= 1
    brute = torch.tensor([[float(m[b, c].detach().max()) for c in range(3)] for b in range(2)])
    torch.testing.assert_close(logits.detach(), brute)
    (logits.sum() + m.sum()).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    y = net.eval()(x)
    assert y.shape == (2, 3) and torch.isfinite(y).all()
    with torch.no_grad():  # channels_last (the predictor's default) is a layout change only
        y_nhwc = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y_nhwc, y.detach(), rtol=1e-4, atol=1e-4)


def test_map_head_errors_and_local_weights(tmp_path):
    import timm

    from kaggle_kit.families.cls.model import build_cls_model

    with pytest.raises(KeyError, match="map"):
        build_cls_model("resnet18", head="cam")
    vit = build_cls_model("vit_tiny_patch16_224", in_chans=3, classes=3, head="map", img_size=32)
    with pytest.raises(ValueError, match="feature map"):
        vit.eval()(torch.randn(1, 3, 32, 32))
    torch.manual_seed(0)
    src = timm.create_model("resnet18", pretrained=False, num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    net = build_cls_model("resnet18", in_chans=3, classes=3, head="map", weights_path=path)
    torch.testing.assert_close(net.backbone.state_dict()["layer4.1.conv2.weight"],
                               src.state_dict()["layer4.1.conv2.weight"])
    assert net.head.weight.shape == (3, 512, 1, 1)


def test_map_loss_is_presence_bce_plus_cellwise_mask_bce():
    """TaskModel's cls loss with a map head = BCE(presence) + w * BCE(map, cell target); a cell's target is 1
    when any mask pixel inside it is (checked cell by cell against hand-sliced blocks)."""
    from kaggle_kit.engine.model import TaskModel
    from kaggle_kit.families.cls.model import build_cls_loss, build_cls_model

    torch.manual_seed(0)
    net = build_cls_model("resnet18", in_chans=3, classes=3, head="map")
    x = torch.randn(2, 3, 64, 64)  # resnet18: stride 32 -> 2x2 map, cells of 32x32 pixels
    mask = torch.zeros(2, 3, 64, 64)
    mask[0, 0, 40, 5] = 1  # one pixel: only cell (1, 0) of class 0
    mask[1, 2, 10:20, 30:34] = 1  # straddles cells (0, 0) and (0, 1) of class 2
    presence = mask.amax(dim=(2, 3))
    model = TaskModel(net, build_cls_loss([{"type": "bce", "weight": 1.0}]), task="cls", aux_weight=0.5)
    model.train()
    torch.manual_seed(1)
    losses = model(x, mask=mask, presence=presence, mode="loss")
    torch.manual_seed(1)
    logits, m = net(x)  # same dropout draws (none here: drop_rate 0)
    target = torch.zeros_like(m)
    for b in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    target[b, c, i, j] = mask[b, c, 32 * i:32 * i + 32, 32 * j:32 * j + 32].max()
    assert target.sum() == 3
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch.testing.assert_close(losses["loss_cls"], bce(logits, presence))
    torch.testing.assert_close(losses["loss_map"], 0.5 * bce(m, target))
    # a pooling head has no map: only the presence loss
    pool = TaskModel(build_cls_model("resnet18", in_chans=3, classes=3), build_cls_loss([{"type": "bce"}]),
                     task="cls", aux_weight=0.5)
    assert set(pool(x, mask=mask, presence=presence, mode="loss")) == {"loss_cls"}


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
    from kaggle_kit.metric.presence import class_report, classification_report, pr_curve

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
    from kaggle_kit.metric.presence import slice_presence

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
    # NHWC (the default) is a layout change only: the NCHW net gives the same probabilities
    from kaggle_kit.families.cls.predict import ClsPredictor

    nchw = ClsPredictor(wd / "best.pth", device="cpu", channels_last=False)
    assert not nchw.channels_last and make_predictor(wd / "best.pth", device="cpu").channels_last
    np.testing.assert_allclose(nchw(cache, "test", cd), probs, atol=1e-5)


def test_report_on_any_classifier_exp(synth_cache, tmp_path):
    """The report reads any (D, C) classifier maps in the store, e.g. the 2.5D family's aux head (<exp>_aux)."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.metric.presence import main, oof_truth_and_probs, slice_presence
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
    # the z-window AUCs against scipy's moving mean (ends repeated), case-day by case-day
    from scipy.ndimage import uniform_filter1d

    from kaggle_kit.metric.presence import class_report

    depths = idx.groupby("case_day").size()[cds].to_numpy()
    parts = np.split(p, np.cumsum(depths)[:-1])
    sm = np.concatenate([uniform_filter1d(x.astype(np.float64), 5, axis=0, mode="nearest") for x in parts])
    sm = sm.astype(np.float32)  # the ensemble gates on float32 probabilities
    for i, c in enumerate(("large_bowel", "small_bowel", "stomach")):
        assert rep["z_window_auc"]["5"][c] == pytest.approx(class_report(t[:, i], sm[:, i])["auc"], abs=1e-9)
