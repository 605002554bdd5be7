import numpy as np
import pytest

from kaggle_kit.data.dataset25d import SliceDataset25D, StackSpec, stack_indices
from kaggle_kit.data.cache import Cache
from kaggle_kit.data.geometry import SliceGeometry
from kaggle_kit.data.synthetic import CaseDaySpec, render_case_day


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


_MASKS = {}


def _mask(geometry):
    if geometry not in _MASKS:  # full-size render, once per geometry
        _MASKS[geometry] = render_case_day(CaseDaySpec(3, 1, geometry, 7, 8, 1.0))[1]
    return _MASKS[geometry]


@pytest.mark.parametrize("geometry", [0, 1, 2, 3])
@pytest.mark.parametrize("mode, size, box", [
    ("resize", (224, 224), None), ("letterbox", (256, 256), None), ("pad", (320, 384), None),
    ("resize", (192, 192), "box"),
])
def test_round_trip_raw_geometry(geometry, mode, size, box):
    """Truth mask -> canvas (as the dataset does) -> probabilities -> inverse: per-class Dice >= 0.99 over
    the volume's slices, in raw geometry (all four geometries, 360x310 included)."""
    mask = _mask(geometry)
    D, H, W = mask.shape
    zs = [z for z in range(D) if mask[z].any()][::6]
    inter, total = np.zeros(3), np.zeros(3)
    for z in zs:
        ch = ((mask[z][None] >> np.arange(3, dtype=np.uint8)[:, None, None]) & 1)
        b = None
        if box == "box":
            ys, xs = np.nonzero(mask.max(0))
            b = (max(0, ys.min() - 5), min(H, ys.max() + 6), max(0, xs.min() - 5), min(W, xs.max() + 6))
        g = SliceGeometry((H, W), size, b, mode)
        canvas = g.forward(np.ascontiguousarray(ch.transpose(1, 2, 0)).astype(np.float32))  # (h, w, C)
        assert canvas.shape[:2] == size
        back = g.inverse(canvas.transpose(2, 0, 1)) > 0.5
        assert back.shape == (3, H, W)
        inter += [(back[c] & (ch[c] > 0)).sum() for c in range(3)]
        total += [back[c].sum() + ch[c].sum() for c in range(3)]
    d = 2 * inter[total > 0] / total[total > 0]
    assert (d >= 0.99).all(), d


def test_360x310_shape():
    g = SliceGeometry((310, 360), (224, 224), None, "letterbox")
    top, left, h, w = g.placement
    assert (h, w) == (193, 224) and left == 0 and top == 15
    x = np.random.rand(310, 360).astype(np.float32)
    assert g.inverse(g.forward(x)[None]).shape == (1, 310, 360)


def test_bad_box():
    with pytest.raises(ValueError, match="box"):
        SliceGeometry((10, 10), (8, 8), (5, 5, 0, 3))
    with pytest.raises(KeyError, match="options"):
        SliceGeometry((10, 10), (8, 8), None, "stretch")


def test_stack_indices():
    s = StackSpec(k=3, stride=2, mode="centered")
    assert stack_indices(0, 10, s)[0].tolist() == [0, 0, 2]
    assert stack_indices(5, 10, s)[0].tolist() == [3, 5, 7]
    idx, valid = stack_indices(9, 10, StackSpec(k=3, stride=2, mode="forward", ends="zero"))
    assert idx.tolist() == [9, 9, 9] and valid.tolist() == [True, False, False]


def test_dataset_sample(synth_cache):
    c = Cache(synth_cache)
    cds = c.case_days("train")[:2]
    ds = SliceDataset25D(c, cds, stack=StackSpec(k=5, stride=1), size=(64, 96), ambiguous_margin=2)
    s = ds[3]
    assert s["inputs"].shape == (5, 64, 96) and s["inputs"].dtype == np.float32
    assert s["mask"].shape == (3, 64, 96) and set(np.unique(s["mask"])) <= {0.0, 1.0}
    # the centre channel is the target slice: equals the normalised raw slice mapped to the canvas
    img = c.image("train", s["case_day"])
    g = ds.geometry(s["case_day"], s["z"], img)
    ref = g.forward(np.clip(img[s["z"]].astype(np.float32) / ds._scale(s["case_day"], img), 0, 1.5))
    np.testing.assert_allclose(s["inputs"][2], ref, atol=1e-6)
    # ambiguous slices (just outside the annotated range) get weight 0
    idx = ds.items
    w = np.array([ds[i]["weight"] for i in range(len(ds))])
    s_, lo, hi = idx["slice"].to_numpy(), idx["first_anno"].to_numpy(), idx["last_anno"].to_numpy()
    amb = (hi > 0) & (((s_ >= lo - 2) & (s_ < lo)) | ((s_ > hi) & (s_ <= hi + 2)))
    np.testing.assert_array_equal(w == 0, amb)


def test_train_stride_draw(synth_cache):
    """stride_train: each training sample's stack is the stack at one of the listed slice steps, every step is
    drawn, and predict-time samples keep data.stride."""
    c = Cache(synth_cache)
    cd = c.case_days("train")[0]
    img = c.image("train", cd)
    z = img.shape[0] // 2
    kw = dict(size=(32, 48), with_labels=False)
    ref = {s: SliceDataset25D(c, [cd], stack=StackSpec(3, s), **kw) for s in (1, 2, 3, 4)}
    want = {s: ref[s].inputs(cd, z, img, ref[s].geometry(cd, z, img)) for s in ref}
    assert not np.array_equal(want[1], want[3])  # the steps give different stacks on this slice
    i = int(np.flatnonzero(ref[2].items["z"].to_numpy() == z)[0])
    train = SliceDataset25D(c, [cd], stack=StackSpec(3, 2), stride_train=[1, 3], augment=lambda x, m: (x, m),
                            seed=5, **kw)
    seen = []
    for _ in range(40):
        x = train[i]["inputs"]
        seen += [s for s in (1, 3) if np.array_equal(x, want[s])]
        assert any(np.array_equal(x, want[s]) for s in (1, 3))
    assert set(seen) == {1, 3}
    predict = SliceDataset25D(c, [cd], stack=StackSpec(3, 2), stride_train=[1, 3], **kw)
    np.testing.assert_array_equal(predict[i]["inputs"], want[2])
    with pytest.raises(ValueError, match="stride_train"):
        SliceDataset25D(c, [cd], stride_train=[0, 2], **kw)


def test_organ_shift_by_hand_and_in_training_samples(synth_cache):
    """shift_organs on a hand case; organ_shift: a training sample differs from the predict-time one by one
    constant per class on that class's pixels (every stacked slice, each with its own mask) and nowhere else."""
    from kaggle_kit.data.dataset25d import shift_organs

    x = np.array([[0.2, 0.4], [1.4, 0.0]], np.float32)
    bits = np.array([[1, 2], [1, 4]], np.uint8)
    np.testing.assert_allclose(shift_organs(x, bits, [0.3, -0.1, 0.0], 1.5), [[0.5, 0.3], [1.5, 0.0]], atol=1e-6)
    c = Cache(synth_cache)
    cd = c.case_days("train")[0]
    img, mask = c.image("train", cd), c.mask("train", cd)
    z = int(np.argmax(np.asarray(mask).reshape(len(mask), -1).astype(bool).sum(1)))  # the slice with most organ
    kw = dict(stack=StackSpec(3, 2), size=tuple(img.shape[1:]))  # canvas = raw size: the geometry is the identity
    plain = SliceDataset25D(c, [cd], **kw)
    i = int(np.flatnonzero(plain.items["z"].to_numpy() == z)[0])
    ref = plain[i]["inputs"]
    train = SliceDataset25D(c, [cd], organ_shift=0.2, augment=lambda a, m: (a, m), seed=1, **kw)
    ids, _ = stack_indices(z, img.shape[0], plain.stack)
    shifted = set()
    for _ in range(12):
        x = train[i]["inputs"]
        for j, k in enumerate(ids):
            b = np.asarray(mask[k])
            np.testing.assert_array_equal(x[j][b == 0], ref[j][b == 0])  # background untouched
            for cl in range(3):
                on = ((b >> cl) & 1 > 0) & (b == (1 << cl)) & (ref[j] > 0.25) & (ref[j] < 1.25)  # away from the clip
                if on.any():
                    d = x[j][on] - ref[j][on]
                    assert np.ptp(d) < 1e-5 and abs(d[0]) <= 0.2 + 1e-6  # one shift per class, within the bound
                    shifted.add((cl, bool(abs(d[0]) > 1e-6)))
    assert {s for s in shifted if s[1]} and {s for s in shifted if not s[1]}  # shifted and left alone both occur


def _first(batch):
    return batch[0]


def test_train_streams_seeded_per_worker_and_repeatable(synth_cache):
    """The train-time random streams (the augmentation's included) follow the dataset's seed: two runs with one
    seed give the same samples, another seed other samples; and two DataLoader workers asked for the same item
    draw different samples (they start from copies of one dataset)."""
    import torch
    from torch.utils.data import DataLoader

    from kaggle_kit.data.augment import build_augment

    c = Cache(synth_cache)
    cd = c.case_days("train")[0]
    z = int(np.argmax(np.asarray(c.mask("train", cd)).reshape(len(c.mask("train", cd)), -1).astype(bool).sum(1)))

    def make(seed):
        return SliceDataset25D(c, [cd], stack=StackSpec(3, 2), size=(48, 48), stride_train=[1, 2, 3], organ_shift=0.2,
                               augment=build_augment("light_int", 0.5, seed), seed=seed)

    i = int(np.flatnonzero(make(0).items["z"].to_numpy() == z)[0])

    def draws(seed, n=6):
        ds = make(seed)
        return [ds[i]["inputs"] for _ in range(n)]

    a, b, other = draws(4), draws(4), draws(5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, other))
    assert len({x.tobytes() for x in a}) > 1  # the draws vary within a run

    def loader_run():
        torch.manual_seed(0)
        dl = DataLoader(make(4), batch_size=1, sampler=[i] * 8, num_workers=2, collate_fn=_first)
        return [s["inputs"] for s in dl]  # batches alternate between worker 0 and worker 1

    run1, run2 = loader_run(), loader_run()
    for x, y in zip(run1, run2):
        np.testing.assert_array_equal(x, y)  # repeatable with workers too
    pairs = [(run1[k], run1[k + 1]) for k in range(0, 8, 2)]  # the k-th draw of worker 0 and of worker 1
    assert not any(np.array_equal(x, y) for x, y in pairs)


@pytest.mark.parametrize("recipe", ["light", "light_int", "baseline", "strong"])
def test_augment_recipes_flip_only_when_asked(recipe):
    """hflip=0 keeps laterality (a mark on the left never moves to the right); hflip=1 always mirrors it."""
    from kaggle_kit.data.augment import build_augment

    h, w = 64, 64
    img = np.zeros((h, w, 3), np.float32)
    img[24:40, 4:20] = 1.0  # a block on the image's left
    mask = np.zeros((h, w), np.uint8)
    mask[24:40, 4:20] = 1
    for hflip, left_wins in ((0.0, True), (1.0, False)):
        aug = build_augment(recipe, hflip)
        for _ in range(20):
            _, m = aug(img.copy(), mask.copy())
            xs = np.nonzero(m)[1]
            if xs.size:  # coarse dropout may hide it; affine moves it by at most a few pixels
                assert (xs.mean() < w / 2) == left_wins
    with pytest.raises(ValueError, match="probability"):
        build_augment("light", 1.5)


def test_intensity_by_hand_and_never_clipped():
    """intensity(): gamma, then contrast about the mean, then brightness, checked on a hand-computed case;
    the recipes that change intensities keep values above 1.0 (volume-normalised stacks reach ~1.5, and
    albumentations' RandomBrightnessContrast would cut them at 1.0)."""
    from kaggle_kit.data.augment import build_augment, intensity

    img = np.array([[0.0, 1.0], [4.0, -1.0]], np.float32)[..., None]
    # g = 0.5: [0, 1, 2, 0] (negatives clipped to 0 first), mean m = 0.75; c = 2, b = 0.1: (x - m) * 2 + m + b
    np.testing.assert_allclose(intensity(img, 0.5, 2.0, 0.1)[..., 0], [[-0.65, 1.35], [3.35, -0.65]], atol=1e-6)
    x = np.random.default_rng(0).uniform(0, 1.5, (16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(intensity(x), x, atol=1e-6)  # the identity at g=1, c=1, b=0 (float rounding)
    for recipe in ("light_int", "strong"):
        aug = build_augment(recipe, 0.0)
        changed = 0
        for _ in range(30):
            out, m = aug(x.copy(), np.zeros((16, 16, 3), np.uint8))
            assert out.dtype == np.float32 and out.shape == x.shape and not m.any()
            changed += not np.allclose(out, x)
            assert out.max() > 1.05, recipe  # a top at 1.0 would mean clipping
        assert changed >= 5, recipe  # p=0.5 (light_int also p=0.5 affine): most draws change something
