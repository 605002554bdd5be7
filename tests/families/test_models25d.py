"""2.5D model factories (smp and mmseg UPerNet) on 64x64 inputs, local weights, and the mmcv.ops stand-in.

Every test runs with sockets refused (the autouse ``no_network`` fixture): building a model must not download.
"""
import importlib.util
import socket
import subprocess
import sys

import pytest

from kaggle_kit.env import setup_offline

setup_offline()

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def no_network():
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        yield


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models are overhead-bound; a second OpenMP thread spin-waits and, on a shared 2-core machine,
    made these tests 4-6x slower in wall time."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_network_is_refused():
    with socket.socket() as s, pytest.raises(OSError, match="offline test"):
        s.connect(("127.0.0.1", 9))


def test_family_packages_import_no_torch():
    code = ("import sys, kaggle_kit.registry as r; fams = [r.resolve('family', n) for n in r.options('family')]; "
            "heavy = [m for m in ('torch', 'segmentation_models_pytorch', 'mmseg', 'timm') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def _train_step(model, x, aux=False):
    model.train()
    out = model(x)
    seg, cls = out if aux else (out, None)
    loss = seg.square().mean() + (cls.square().mean() if aux else 0)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    return seg, cls


def _nhwc_matches(model, x):
    """Eval outputs with the net and input in channels_last (how the predictors and the Runner run 2D nets)
    equal the NCHW ones: a layout change, not another model."""
    model.eval()
    with torch.no_grad():
        want = model(x)
        model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    want, got = (want, got) if torch.is_tensor(want) else (want[0], got[0])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# --- smp ---------------------------------------------------------------------------------------------------------
ENCODERS = ["resnet18", "tu-efficientnet_b0", "tu-convnext_atto", "tu-pvt_v2_b0"]  # pvt_v2: a transformer
SLOW = pytest.mark.slow
SMP_CASES = [(a, e, {}) for a in ("unet", "unetplusplus", "upernet") for e in ENCODERS] + [
    pytest.param("unet", "efficientnet-b0", {}, marks=SLOW), pytest.param("unet", "mit_b0", {}, marks=SLOW),
    pytest.param("upernet", "mit_b0", {}, marks=SLOW),
    ("unet", "tu-swin_tiny_patch4_window7_224", {"strict_img_size": False}),
]


@pytest.mark.parametrize("arch,encoder,kw", SMP_CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_smp_forward_backward(arch, encoder, kw):
    from kaggle_kit.families.seg25d.model import build_seg_model

    torch.manual_seed(0)
    model = build_seg_model(arch, encoder, in_channels=5, classes=3, **kw)
    seg, _ = _train_step(model, torch.randn(2, 5, 64, 64))
    assert seg.shape == (2, 3, 64, 64)
    assert seg.min() < 0  # raw logits: no sigmoid inside
    _nhwc_matches(model, torch.randn(2, 5, 64, 64))


@pytest.mark.parametrize("arch,encoder", [("unet", "resnet18"), ("upernet", "tu-convnext_atto")])
def test_smp_aux_head_and_rgb_input(arch, encoder):
    from kaggle_kit.families.seg25d.model import build_seg_model

    model = build_seg_model(arch, encoder, in_channels=3, classes=3, aux_head=True)
    seg, cls = _train_step(model, torch.randn(2, 3, 64, 64), aux=True)
    assert seg.shape == (2, 3, 64, 64) and cls.shape == (2, 3)


def test_smp_errors():
    from kaggle_kit.families.seg25d.model import build_seg_model

    with pytest.raises(KeyError, match=r"unknown arch 'fpn'; options: \['unet', 'unetplusplus', 'upernet'\]"):
        build_seg_model("fpn")
    with pytest.raises(KeyError, match="'resnet18'"):
        build_seg_model("unet", "resnet181")
    with pytest.raises(KeyError, match="tu-convnext_atto"):
        build_seg_model("unet", "tu-convnxt_atto")
    with pytest.raises(ValueError, match="never downloads"):
        build_seg_model("unet", "resnet18", encoder_weights="imagenet")
    # the dataset pads to multiples of 32: UNet++ and UPerNet refuse other sizes (smp's Unet interpolates)
    with pytest.raises(RuntimeError, match="divisible by 32"):
        build_seg_model("unetplusplus", "resnet18").eval()(torch.randn(1, 3, 70, 64))


def _same_outputs(a, b, x):
    a.eval(), b.eval()
    with torch.no_grad():
        ya, yb = a(x), b(x)
    ya, yb = (ya, yb) if isinstance(ya, torch.Tensor) else (torch.cat([ya[0].flatten(), ya[1].flatten()]),
                                                          torch.cat([yb[0].flatten(), yb[1].flatten()]))
    return torch.equal(ya, yb)


def test_smp_whole_model_round_trip(tmp_path):
    from safetensors.torch import save_file

    from kaggle_kit.families.seg25d.model import build_seg_model, load_weights

    kw = {"arch": "unet", "encoder_name": "tu-efficientnet_b0", "in_channels": 5, "aux_head": True}
    torch.manual_seed(1)
    src = build_seg_model(**kw)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")  # DDP
    x = torch.randn(2, 5, 64, 64)
    for name in ("w.safetensors", "w.pth"):
        torch.manual_seed(2)
        loaded = build_seg_model(**kw, weights_path=tmp_path / name)
        assert _same_outputs(src, loaded, x), name
    torch.manual_seed(2)
    fresh = build_seg_model(**kw)
    assert not _same_outputs(src, fresh, x)
    report = load_weights(fresh, tmp_path / "w.pth")
    assert report.target == "model" and not report.missing and not report.unexpected and not report.mismatched
    assert _same_outputs(src, fresh, x)
    # another class count: the heads are reported as shape-mismatched and left random, the rest loads
    report = load_weights(build_seg_model(**{**kw, "classes": 4}), tmp_path / "w.pth")
    assert {k for k, _, _ in report.mismatched} == {"segmentation_head.0.weight", "segmentation_head.0.bias",
                                                    "classification_head.3.weight", "classification_head.3.bias"}


def test_smp_timm_encoder_file(tmp_path):
    """A timm classification checkpoint (what the timm hub ships) loads into a 5-channel tu- encoder."""
    import timm
    from safetensors.torch import save_file
    from timm.models import adapt_input_conv

    from kaggle_kit.families.seg25d.model import build_seg_model, load_weights

    full = timm.create_model("convnext_atto", pretrained=False)
    sd = full.state_dict()
    save_file(sd, str(tmp_path / "model.safetensors"))
    model = build_seg_model("upernet", "tu-convnext_atto", in_channels=5)
    report = load_weights(model, tmp_path / "model.safetensors")
    assert report.target == "encoder" and not report.missing and not report.mismatched
    assert set(report.unexpected) == {"head.fc.weight", "head.fc.bias", "head.norm.weight", "head.norm.bias"}
    assert report.adapted == ["stem_0.weight"]
    enc = model.encoder.model.state_dict()
    assert torch.equal(enc["stem_0.weight"], adapt_input_conv(5, sd["stem.0.weight"]))
    assert torch.equal(enc["stages_3.blocks.1.mlp.fc2.weight"], sd["stages.3.blocks.1.mlp.fc2.weight"])


def test_smp_torchvision_resnet_file(tmp_path):
    import torchvision

    from kaggle_kit.families.seg25d.model import build_seg_model, load_weights

    tv = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(tv, tmp_path / "resnet18.pth")
    model = build_seg_model("unet", "resnet18", in_channels=5)
    report = load_weights(model, tmp_path / "resnet18.pth", target="encoder")
    assert not report.missing and sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    assert report.adapted == ["conv1.weight"]
    assert torch.equal(model.encoder.layer4[1].conv2.weight, tv["layer4.1.conv2.weight"])
    # 3 RGB filters repeated over 5 channels and scaled by 3/5
    assert torch.allclose(model.encoder.conv1.weight[:, 3], tv["conv1.weight"][:, 0] * 3 / 5)


def test_read_state_dict_errors(tmp_path):
    from kaggle_kit.families.seg25d.model import read_state_dict

    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "nope.pth")
    torch.save({"a": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="state dict"):
        read_state_dict(tmp_path / "bad.pth")
    torch.save({"state_dict": {}, "meta": {"history": _Unsafe()}}, tmp_path / "pickle.pth")  # needs code to load
    with pytest.raises(ValueError, match="weights_only"):
        read_state_dict(tmp_path / "pickle.pth")


class _Unsafe:
    pass


# --- mmseg UPerNet -----------------------------------------------------------------------------------------------
MMSEG_CASES = [("resnet18", 5), ("convnext_atto", 3), pytest.param("resnet18", 3, marks=SLOW),
               pytest.param("convnext_atto", 5, marks=SLOW), ("swin_tiny", 5),
               pytest.param("tu-pvt_v2_b0", 5, marks=SLOW)]


@pytest.mark.parametrize("backbone,k", MMSEG_CASES)
def test_mmseg_upernet_forward_backward(backbone, k):
    from kaggle_kit.families.seg25d.mmseg_upernet import build_mmseg_upernet

    torch.manual_seed(0)
    model = build_mmseg_upernet(backbone, in_channels=k, classes=3, channels=32)
    seg, _ = _train_step(model, torch.randn(2, k, 64, 96))
    assert seg.shape == (2, 3, 64, 96)  # upsampled to the input size
    assert seg.min() < 0
    _nhwc_matches(model, torch.randn(2, k, 64, 96))


def test_mmseg_errors():
    from kaggle_kit.families.seg25d.mmseg_upernet import build_mmseg_upernet

    with pytest.raises(KeyError, match="options: .*resnet50.*convnext_tiny"):
        build_mmseg_upernet("convnext_tinyy")
    with pytest.raises(KeyError, match="convnext_atto"):
        build_mmseg_upernet("tu-convnext_attto")


def test_mmseg_weights_round_trip(tmp_path):
    import timm

    from kaggle_kit.families.seg25d.mmseg_upernet import build_mmseg_upernet, load_mmseg_weights

    kw = {"backbone": "convnext_atto", "in_channels": 5, "channels": 32}
    torch.manual_seed(1)
    src = build_mmseg_upernet(**kw)
    torch.save(src.state_dict(), tmp_path / "upernet.pth")
    torch.manual_seed(2)
    loaded = build_mmseg_upernet(**kw, weights_path=tmp_path / "upernet.pth")
    assert _same_outputs(src, loaded, torch.randn(2, 5, 64, 64))
    # backbone-only: a timm checkpoint
    full = timm.create_model("convnext_atto", pretrained=False)
    torch.save(full.state_dict(), tmp_path / "convnext_atto.pth")
    report = load_mmseg_weights(loaded, tmp_path / "convnext_atto.pth")
    assert report.target == "backbone" and not report.missing and report.adapted == ["stem_0.weight"]
    assert torch.equal(loaded.backbone.timm_model.stages_2.blocks[0].conv_dw.weight,
                       full.stages[2].blocks[0].conv_dw.weight)


# --- mmcv.ops stand-in -------------------------------------------------------------------------------------------

def test_mmcv_ops_standin_installed_and_clear():
    from kaggle_kit._compat import mmcv_ops

    if importlib.util.find_spec("mmcv._ext") is not None:
        pytest.skip("full mmcv with compiled ops: the stand-in is not used")

    mmcv_ops.install()
    assert mmcv_ops.installed() and mmcv_ops.install()  # idempotent
    from mmcv.ops import CrissCrossAttention

    with pytest.raises(NotImplementedError, match="mmcv-lite"):
        CrissCrossAttention(8)
    with pytest.raises(ImportError):
        from mmcv.ops import nms  # noqa: F401
    import mmcv.ops

    with pytest.raises(AttributeError, match="stand-in"):
        getattr(mmcv.ops, "nms")  # noqa: B009


def test_point_sample_matches_mmcv_reference():
    """Against mmcv's own pure-python bilinear sampler (mmcv/ops/point_sample.py loaded without mmcv._ext)."""
    import mmcv

    from kaggle_kit._compat.mmcv_ops import point_sample

    path = mmcv.__path__[0] + "/ops/point_sample.py"
    spec = importlib.util.spec_from_file_location("_mmcv_point_sample_ref", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    g = torch.Generator().manual_seed(0)
    im = torch.randn(2, 3, 7, 5, generator=g)
    pts = torch.rand(2, 11, 2, generator=g)
    for align in (False, True):
        expect = ref.bilinear_grid_sample(im, pts.unsqueeze(2) * 2 - 1, align_corners=align).squeeze(3)
        assert torch.allclose(point_sample(im, pts, align_corners=align), expect, atol=1e-5)
    assert point_sample(im, pts.view(2, 11, 1, 2)).shape == (2, 3, 11, 1)
    # a point at a pixel centre reads that pixel (align_corners=False: centres at (i + 0.5) / size)
    centre = torch.tensor([[[(2 + 0.5) / 5, (4 + 0.5) / 7]]]).expand(2, 1, 2)
    assert torch.allclose(point_sample(im, centre)[:, :, 0], im[:, :, 4, 2], atol=1e-6)


def test_sigmoid_focal_loss_matches_mmseg_python_version():
    from kaggle_kit._compat import mmcv_ops

    mmcv_ops.install()
    from mmseg.models.losses.focal_loss import py_sigmoid_focal_loss, sigmoid_focal_loss

    g = torch.Generator().manual_seed(0)
    pred = torch.randn(6, 3, generator=g)
    label = torch.tensor([0, 1, 2, 3, 1, 3])  # 3 = background
    one_hot = torch.nn.functional.one_hot(label, 4)[:, :3]
    for alpha in (0.25, 0.5):
        ours = sigmoid_focal_loss(pred, label, one_hot, gamma=2.0, alpha=alpha)  # calls mmcv.ops (the stand-in)
        theirs = py_sigmoid_focal_loss(pred, one_hot, None, gamma=2.0, alpha=alpha)
        assert torch.allclose(ours, theirs, atol=1e-6)
    assert mmcv_ops.sigmoid_focal_loss(pred, label, reduction="none").shape == (6, 3)


def test_mmseg_upernet_builds_whatever_the_default_scope():
    """A Runner earlier in the process leaves mmengine's default scope at "mmengine", where mmseg's backbones
    and heads are unknown: the builder must look them up in mmseg's registry all the same."""
    from mmengine.registry import DefaultScope

    from kaggle_kit.families.seg25d.mmseg_upernet import build_mmseg_upernet

    DefaultScope.get_instance("kk_test_foreign_scope", scope_name="mmengine")
    assert DefaultScope.get_current_instance().scope_name == "mmengine"
    model = build_mmseg_upernet("resnet18", in_channels=3, classes=3, channels=32)
    assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
