"""3D family: builds, forward/backward per architecture, resampling round trips, augmentation, datasets,
sliding-window prediction back to raw geometry, and one tiny train -> OOF run (slow)."""
import copy
from pathlib import Path

import numpy as np
import pytest

from kaggle_kit.env import setup_offline

setup_offline()

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from kaggle_kit.families.seg3d import data as d3  # noqa: E402
from kaggle_kit.families.seg3d.model import ARCHS, build_net3d  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARCH_KW = {"segresnet": {}, "unet": {}, "dynunet": {}, "capsnet": {"kernel": 3}}


def test_import_is_cheap():
    import subprocess
    import sys

    code = ("import sys, kaggle_kit.families.seg3d, kaggle_kit.registry as r; r.options('family'); "
            "print(any(m in sys.modules for m in ('torch', 'monai', 'mmengine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_registry_resolves_family():
    from kaggle_kit.registry import resolve

    fam = resolve("family", "seg3d")
    assert fam.name == "seg3d" and fam.kind == "pixel" and callable(fam.train) and callable(fam.predict)


def test_unknown_arch_lists_options():
    with pytest.raises(KeyError, match="segresnet"):
        build_net3d("vnet")


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_forward_backward_any_size(arch):
    torch.manual_seed(0)
    net = build_net3d(arch, filters=4, levels=3, **ARCH_KW[arch])
    x = torch.randn(2, 1, 10, 13, 17)  # not a multiple of the divisor: padded, cropped back
    y = net(x)
    assert y.shape == (2, 3, 10, 13, 17) and torch.isfinite(y).all()
    y.float().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_channels_last_3d_is_a_layout_change(arch):
    """train.channels_last for 3D nets: every 5D weight goes NDHWC and the training loss, its gradients and
    the eval output equal the NCDHW ones on the same weights (TaskModel, as the Runner builds it)."""
    from kaggle_kit.engine.model import TaskModel
    from kaggle_kit.losses import build_loss

    torch.manual_seed(0)
    base = build_net3d(arch, filters=4, levels=3, **ARCH_KW[arch])
    x = torch.randn(2, 1, 10, 13, 17)
    y = (torch.rand(2, 3, 10, 13, 17) > 0.7).float()
    loss_fn = build_loss([{"type": "bce", "weight": 1.0}])
    out = {}
    for cl in (False, True):
        m = TaskModel(copy.deepcopy(base), loss_fn, task="seg", channels_last=cl)
        if cl:
            w5 = [p for p in m.net.parameters() if p.dim() == 5]
            assert w5 and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in w5)
        loss = m(x, mask=y, mode="loss")["loss_seg"]
        loss.backward()
        grads = [p.grad.clone() for p in m.net.parameters()]
        with torch.no_grad():
            ev = m.net.eval()(torch.randn(1, 1, 10, 13, 17, generator=torch.Generator().manual_seed(1)))
        out[cl] = (loss.detach(), grads, ev)
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(out[True][1], out[False][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(out[True][2], out[False][2], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_each_arch_fits_one_patch(arch):
    """Every architecture (capsnet included) trains: 40 AdamW steps on one synthetic patch lower the loss."""
    from kaggle_kit.losses import build_loss

    torch.manual_seed(0)
    loss_fn = build_loss([{"type": "bce", "weight": 0.5}, {"type": "dice", "weight": 0.5}])
    y = torch.zeros(1, 3, 16, 32, 32)
    y[:, 0, 4:12, 8:20, 6:16] = 1
    y[:, 1, 2:8, 18:28, 18:30] = 1
    y[:, 2, 8:14, 4:12, 20:28] = 1
    x = torch.randn(1, 1, 16, 32, 32) * 0.1 + (y * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1, 1)).sum(1, True)
    net = build_net3d(arch, filters=8, levels=3, **ARCH_KW[arch])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.85 * losses[0], losses[::10]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_eval_sliding_window_matches_shape(arch):
    net = build_net3d(arch, filters=4, levels=3, roi=(8, 16, 16), overlap=0.25, **ARCH_KW[arch]).eval()
    with torch.inference_mode():
        y = net(torch.randn(1, 1, 12, 20, 24))
    assert y.shape == (1, 3, 12, 20, 24) and torch.isfinite(y).all()


def test_capsnet_published_plan():
    from kaggle_kit.families.seg3d.capsnet import CapsNet3D, ConvCaps3D

    net = CapsNet3D(levels=4, atoms=16)
    caps = [m for m in net.modules() if isinstance(m, ConvCaps3D)]
    plan = [(m.ti, m.ai, m.to, m.ao) for m in caps]
    # Avesta et al.: primary 1x16->2x16, ..., bottom 8x32->8x64->8x32, ..., final 3x16->C x16
    assert plan[0] == (1, 16, 2, 16) and plan[1] == (2, 16, 4, 16)
    assert (8, 32, 8, 64) in plan and (8, 64, 8, 32) in plan
    assert plan[-1] == (3, 16, 3, 16) and caps[0].routings == 1


def test_squash_and_routing_bounds():
    from kaggle_kit.families.seg3d.capsnet import dynamic_routing, squash

    s = torch.randn(2, 4, 8, 3, 3, 3) * 5
    v = squash(s, dim=2)
    n = v.norm(dim=2)
    assert (n < 1).all() and torch.allclose(n, s.norm(dim=2) ** 2 / (1 + s.norm(dim=2) ** 2), atol=1e-5)
    assert torch.isfinite(squash(torch.zeros(1, 2, 4), dim=2)).all()
    out = dynamic_routing(torch.randn(1, 3, 2, 4, 2, 2, 2), torch.zeros(1, 2, 4, 1, 1, 1), 3)
    assert out.shape == (1, 2, 4, 2, 2, 2)


def test_shared_losses_take_5d():
    """The family trains with kaggle_kit.losses.build_loss: it must handle (B, C, D, H, W) and sample weights."""
    from kaggle_kit.losses import build_loss

    loss = build_loss([{"type": "bce", "weight": 0.5}, {"type": "dice", "weight": 0.5}])
    t = torch.zeros(2, 3, 4, 8, 8)
    t[:, :, 1:3, 2:6, 2:6] = 1
    good, bad = (t * 2 - 1) * 20, (1 - t * 2) * 20
    assert loss(good, t) < 0.01 < loss(bad, t)
    assert loss(torch.stack([good[0], bad[1]]), t, torch.tensor([1.0, 0.0])) < 0.01  # weight 0 drops a sample


def test_geometry_shapes():
    g = d3.Geometry3D("size", (None, 224, 224))
    assert g.shape((144, 310, 360)) == (144, 224, 224) and not g.fixed
    assert d3.Geometry3D("size", (80, 160, 160)).fixed
    s = d3.Geometry3D("spacing", (None, None, None), 1.5)
    assert s.shape((80, 276, 276), (1.63, 1.63)) == (80, 300, 300)
    assert s.shape((144, 310, 360), (1.5, 1.5)) == (144, 310, 360)
    with pytest.raises(KeyError, match="spacing"):
        d3.Geometry3D("iso")


def _round_trip_dice(mask: np.ndarray, size) -> list:
    m = d3.mask_to_training(mask, size)
    back = d3.to_raw(m.astype(np.float32), mask.shape)
    assert back.shape == (mask.shape[0], 3) + mask.shape[1:]
    t = d3.bits_to_channels(mask, 3).astype(bool)
    p = back.transpose(1, 0, 2, 3) >= 0.5
    return [2 * (t[c] & p[c]).sum() / (t[c].sum() + p[c].sum()) for c in range(3) if t[c].any()]


GPU_GEOMETRIES = [d3.Geometry3D("spacing", (None, None, None), 1.5), d3.Geometry3D("size", (None, 288, 288))]


@pytest.mark.parametrize("geometry", range(4))
def test_resample_round_trip_half_scale(geometry):
    """Truth -> training geometry -> raw: Dice >= 0.98 per present class, raw shape exact, for every synthetic
    geometry (half-size volumes: the GPU config's 1.5 mm/px scaled by the same factor, and a fixed size that
    enlarges some geometries and shrinks others)."""
    from kaggle_kit.data.synthetic import CaseDaySpec, render_case_day

    spec = CaseDaySpec(case=1, day=1, geometry=geometry, seed=11 + geometry, day_seed=3, size_scale=0.5)
    _, mask, _ = render_case_day(spec)
    assert mask.any()
    for g in (d3.Geometry3D("spacing", (None, None, None), 3.0), d3.Geometry3D("size", (None, 160, 160))):
        dice = _round_trip_dice(mask, g.shape(mask.shape, (spec.spacing, spec.spacing)))
        assert min(dice) >= 0.98, (g, dice)


@pytest.mark.slow
@pytest.mark.parametrize("geometry", range(4))
def test_resample_round_trip_full_size(geometry):
    """The same at the real sizes (266x266x144, 360x310x144, 276x276x80, 234x234x144) and the GPU geometries."""
    from kaggle_kit.data.synthetic import CaseDaySpec, render_case_day

    spec = CaseDaySpec(case=1, day=1, geometry=geometry, seed=11 + geometry, day_seed=3, size_scale=1.0)
    _, mask, _ = render_case_day(spec)
    for g in GPU_GEOMETRIES:
        dice = _round_trip_dice(mask, g.shape(mask.shape, (spec.spacing, spec.spacing)))
        assert min(dice) >= 0.98, (g, dice)


def test_to_raw_exact_shapes_and_identity():
    for raw in [(80, 276, 276), (144, 310, 360), (7, 31, 45)]:
        p = torch.rand(3, 16, 24, 20)
        assert d3.to_raw(p, raw).shape == (raw[0], 3, raw[1], raw[2])
    p = np.random.default_rng(0).random((3, 5, 9, 11)).astype(np.float32)
    np.testing.assert_allclose(d3.to_raw(p, (5, 9, 11)), p.transpose(1, 0, 2, 3), atol=1e-6)


def test_augment_seeded_and_consistent():
    rng0 = np.random.default_rng(0)
    img = rng0.random((1, 16, 24, 24)).astype(np.float32)
    mask = np.zeros((3, 16, 24, 24), np.uint8)
    mask[0, 4:12, 6:18, 5:15] = 1
    img[0][mask[0] == 1] += 2.0  # the organ is bright: image and mask must move together
    kw = d3.RECIPES["strong"]
    a = d3.augment3d(img, mask, np.random.default_rng(5), **kw)
    b = d3.augment3d(img, mask, np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    moved = 0
    for seed in range(12):
        x, m = d3.augment3d(img, mask, np.random.default_rng(seed), **dict(kw, dropout_p=0.0, intensity_p=0.0))
        assert x.shape == img.shape and m.shape == mask.shape and m.dtype == np.uint8
        if m[0].any():
            assert x[0][m[0] == 1].mean() > x[0][m[0] == 0].mean() + 1.0
        moved += not np.array_equal(m, mask)
    assert moved > 0


def test_crop_patch_and_pad():
    rng = np.random.default_rng(0)
    for _ in range(20):
        sl = d3.crop_patch((20, 30, 40), (8, 16, 16), rng, centre=rng.integers(0, 20, 3))
        assert [s.stop - s.start for s in sl] == [8, 16, 16]
        assert all(0 <= s.start and s.stop <= n for s, n in zip(sl, (20, 30, 40)))
    assert d3.pad_to(np.ones((1, 4, 5, 6)), (8, 5, 3)).shape == (1, 8, 5, 6)
    with pytest.raises(ValueError):
        d3.crop_patch((4, 4, 4), (8, 4, 4), rng)


def test_volume_dataset(synth_cache):
    from kaggle_kit.data.cache import Cache

    cache = Cache(synth_cache)
    cds = cache.case_days("train")[:3]
    g = d3.Geometry3D("size", (None, 24, 24))
    ds = d3.VolumeDataset3D(cache, cds, geometry=g, patch=(16, 24, 24), samples_per_volume=2, fg_prob=1.0,
                            augment="baseline", seed=1)
    assert len(ds) == 6
    it = ds[0]
    assert it["inputs"].shape == (1, 16, 24, 24) and it["mask"].shape == (3, 16, 24, 24)
    assert it["inputs"].dtype == np.float32 and it["presence"].shape == (3,)
    assert it["mask"].any()  # fg_prob=1: centred on foreground
    again = d3.VolumeDataset3D(cache, cds, geometry=g, patch=(16, 24, 24), samples_per_volume=2, fg_prob=1.0,
                               augment="baseline", seed=1)[0]
    np.testing.assert_array_equal(it["inputs"], again["inputs"])
    val = d3.VolumeDataset3D(cache, cds, geometry=g)
    assert len(val) == 3
    v = val[1]
    D = cache.image("train", cds[1]).shape[0]
    assert v["inputs"].shape == (1, D, 24, 24) and v["z"] == 0


def test_config_schema_and_overrides():
    from kaggle_kit.config import ConfigError, load_config

    for name in ("default", "tiny_cpu", "gpu_segresnet"):
        cfg = load_config(ROOT / f"configs/seg3d/{name}.yaml")
        assert cfg["family"] == "seg3d"
        build_net3d(cfg["model"]["arch"], filters=4, levels=cfg["model"]["levels"])
    with pytest.raises(ConfigError, match="patch"):
        load_config(ROOT / "configs/seg3d/tiny_cpu.yaml", ["data.pach=[8,8,8]"])


def _tiny_overrides(cache, tmp_path) -> list:
    return [f"cache={cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}",
            "model.filters=4", "model.levels=2", "data.volume=[null,24,24]", "data.patch=[16,24,24]",
            "data.samples_per_volume=1", "train.epochs=1", "train.val_interval=1", "train.log_interval=1"]


def _tiny_cfg(cache, tmp_path):
    from kaggle_kit.config import load_config

    return load_config(ROOT / "configs/seg3d/tiny_cpu.yaml", _tiny_overrides(cache, tmp_path))


def test_predictor_writes_raw_geometry(synth_cache, tmp_path):
    """Export a random-init checkpoint, predict one case-day per geometry with TTA: (D, C, H, W) raw shapes."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.engine.checkpoint import save_inference_checkpoint
    from kaggle_kit.families.seg3d.model import build_net
    from kaggle_kit.families.seg3d.predict import Predictor3D

    cfg = _tiny_cfg(synth_cache, tmp_path)
    net = build_net(cfg["model"], cfg["data"])
    ck = save_inference_checkpoint(tmp_path / "m.pth", net.state_dict(),
                                   {"family": "seg3d", "model": cfg["model"], "data": cfg["data"],
                                    "classes": ["large_bowel", "small_bowel", "stomach"]})
    cache = Cache(synth_cache)
    idx = cache.index("train")
    per_geom = idx.groupby(["height", "width", "depth"])["case_day"].first().tolist()
    pred = Predictor3D(ck, tta="axes", overlap=0.25, sw_batch_size=2)
    for cd in per_geom:
        shape = cache.image("train", cd).shape
        out = pred(cache, "train", cd)
        assert out.shape == (shape[0], 3, shape[1], shape[2]) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
    with pytest.raises(KeyError, match="hflip"):
        Predictor3D(ck, tta="rot90")


@pytest.mark.slow
def test_train_predict_oof_end_to_end(synth_cache, tmp_path):
    """tools/train.py + tools/predict.py on one fold of the tiny config (shrunk further), then score_maps."""
    from kaggle_kit.families.seg3d.predict import score_maps
    from kaggle_kit.io.probmaps import ProbMapStore
    from tests.conftest import run_tool

    ov = _tiny_overrides(synth_cache, tmp_path)
    run_tool("train.py", ROOT / "configs/seg3d/tiny_cpu.yaml", "--fold", "0", *ov)
    assert (tmp_path / "work" / "seg3d" / "seg3d_tiny" / "fold0" / "best.pth").is_file()
    run_tool("predict.py", ROOT / "configs/seg3d/tiny_cpu.yaml", "--split", "oof", "--folds", "0", *ov)
    man = ProbMapStore(tmp_path / "preds").manifest("seg3d_tiny", "oof")
    assert man["family"] == "seg3d" and man["kind"] == "pixel" and man["folds"] == [0]
    r = score_maps(synth_cache, tmp_path / "preds", "seg3d_tiny", "oof")
    assert r["case_days"] >= 1 and 0.0 <= r["score"] <= 1.0


def test_notebook_predictor_reproduces_stored_maps(synth_cache, tmp_path):
    """Train/serve skew: the notebook builds each member's predictor from the manifest (via the bundle); with the
    3D sliding-window settings recorded there it must give the maps tools/predict.py stored (up to uint8)."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.engine.checkpoint import save_inference_checkpoint
    from kaggle_kit.families.seg3d.api import family, predict
    from kaggle_kit.families.seg3d.model import build_net
    from kaggle_kit.io.probmaps import ProbMapStore
    from kaggle_kit.paths import inference_checkpoint

    cfg = _tiny_cfg(synth_cache, tmp_path)
    cfg["predict"]["overlap"] = 0.6  # not make_predictor's default: the manifest must carry it
    net = build_net(cfg["model"], cfg["data"])
    ck = inference_checkpoint(cfg["work_root"], "seg3d", "seg3d_tiny", 0)
    ck.parent.mkdir(parents=True)
    save_inference_checkpoint(ck, net.state_dict(), {"family": "seg3d", "model": cfg["model"], "data": cfg["data"],
                                                     "classes": ["large_bowel", "small_bowel", "stomach"], "fold": 0})
    predict(cfg, "seg3d_tiny", "oof", folds=[0])
    store = ProbMapStore(cfg["pred_root"])
    man = store.manifest("seg3d_tiny", "oof")
    assert man["predictor"]["overlap"] == 0.6
    pred = family.make_predictor(ck, **man["predictor"])  # the settings predict() built its predictors with
    cd = store.case_days("seg3d_tiny", "oof")[0]
    fresh = pred(Cache(synth_cache), "train", cd)
    stored = store.read("seg3d_tiny", "oof", cd).astype(np.float32) / 255.0
    assert np.abs(fresh - stored).max() <= 1 / 255 + 1e-6


def test_predictor_on_png_volumes(synth_root, synth_cache, tmp_path):
    """The notebook feeds members PngVolumes (decoded competition PNGs, no cache): the 3D predictor takes them
    and gives the same maps as from the cache."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.engine.checkpoint import save_inference_checkpoint
    from kaggle_kit.families.seg3d.model import build_net
    from kaggle_kit.families.seg3d.predict import Predictor3D
    from kaggle_kit.data.png_volumes import PngVolumes

    cfg = _tiny_cfg(synth_cache, tmp_path)
    net = build_net(cfg["model"], cfg["data"])
    ck = save_inference_checkpoint(tmp_path / "m.pth", net.state_dict(),
                                   {"family": "seg3d", "model": cfg["model"], "data": cfg["data"],
                                    "classes": ["large_bowel", "small_bowel", "stomach"]})
    pred = Predictor3D(ck, overlap=0.25, sw_batch_size=2)
    vols = PngVolumes(synth_root, "test")
    cd = vols.case_days()[0]
    from_png = pred(vols, "test", cd)
    from_cache = pred(Cache(synth_cache), "test", cd)
    assert from_png.shape == from_cache.shape
    np.testing.assert_allclose(from_png, from_cache, atol=1e-5)


def _first(batch):
    return batch[0]


def test_volume_dataset_streams_differ_across_workers_and_epochs(synth_cache):
    """Two DataLoader workers asked for the same patch index draw different patches (each starts from a copy of
    the dataset with its call count at 0), a second epoch of non-persistent workers draws others again, and
    the whole run repeats under the same torch seed."""
    import torch
    from torch.utils.data import DataLoader

    from kaggle_kit.data.cache import Cache

    cache = Cache(synth_cache)
    cds = cache.case_days("train")[:1]
    ds = d3.VolumeDataset3D(cache, cds, geometry=d3.Geometry3D("size", (None, 24, 24)), patch=(8, 16, 16),
                            fg_prob=0.5, augment="baseline", seed=1)

    def run():
        torch.manual_seed(0)
        dl = DataLoader(ds, batch_size=1, sampler=[0] * 6, num_workers=2, collate_fn=_first)
        return [[s["inputs"] for s in dl] for _ in range(2)]  # two epochs; batches alternate between the workers

    (e1, e2), (f1, f2) = run(), run()
    for x, y in zip(e1 + e2, f1 + f2):
        np.testing.assert_array_equal(x, y)
    assert not any(np.array_equal(e1[k], e1[k + 1]) for k in range(0, 6, 2))  # worker 0's k-th vs worker 1's
    assert not any(np.array_equal(x, y) for x, y in zip(e1, e2))  # epoch 2 repeats no draw of epoch 1
