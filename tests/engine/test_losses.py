"""kaggle_kit.losses against independent numpy references on tiny tensors."""
import itertools

import numpy as np
import pytest
import torch

from kaggle_kit.losses import LOSSES, aux_bce, build_loss, lovasz_hinge_flat

ALL_SPECS = [{"type": "bce"}, {"type": "bce", "pos_weight": 2.0}, {"type": "dice"}, {"type": "dice", "per_image": True},
             {"type": "focal"}, {"type": "focal", "alpha": 0.25}, {"type": "tversky", "alpha": 0.7, "beta": 0.3},
             {"type": "tversky", "per_image": True}, {"type": "lovasz"}]


def _data(b=3, c=3, h=5, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g) * 2
    target = (torch.rand(b, c, h, w, generator=g) > 0.6).float()
    target[0, 1] = 0  # an empty class in one image
    return logits, target


def _np(x):
    return x.detach().double().numpy()


def _sig(x):
    return 1 / (1 + np.exp(-x))


def test_bce_matches_elementwise_formula():
    logits, target = _data()
    x, t = _np(logits), _np(target)
    p = _sig(x)
    ref = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
    assert build_loss("bce")(logits, target).item() == pytest.approx(ref, rel=1e-5)
    ref_pw = np.mean(-(2.0 * t * np.log(p) + (1 - t) * np.log(1 - p)))
    assert build_loss({"type": "bce", "pos_weight": 2.0})(logits, target).item() == pytest.approx(ref_pw, rel=1e-5)


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_matches_formula(alpha):
    logits, target = _data()
    x, t = _np(logits), _np(target)
    p = _sig(x)
    pt = np.where(t == 1, p, 1 - p)
    a = 1.0 if alpha is None else np.where(t == 1, alpha, 1 - alpha)
    ref = np.mean(-a * (1 - pt) ** 2 * np.log(pt))
    got = build_loss({"type": "focal", "gamma": 2.0, "alpha": alpha})(logits, target).item()
    assert got == pytest.approx(ref, rel=1e-5)
    # gamma = 0 and no alpha is plain BCE
    assert build_loss({"type": "focal", "gamma": 0.0})(logits, target).item() == pytest.approx(
        build_loss("bce")(logits, target).item(), rel=1e-6)


def _dice_ref(x, t, smooth, per_image):
    p = _sig(x)
    if per_image:
        i = (p * t).sum(axis=(2, 3))
        s = p.sum(axis=(2, 3)) + t.sum(axis=(2, 3))
        return np.mean(1 - (2 * i + smooth) / (s + smooth))
    i = (p * t).sum(axis=(0, 2, 3))
    s = p.sum(axis=(0, 2, 3)) + t.sum(axis=(0, 2, 3))
    return np.mean(1 - (2 * i + smooth) / (s + smooth))


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("smooth", [1.0, 0.01])
def test_dice_matches_numpy(per_image, smooth):
    logits, target = _data()
    ref = _dice_ref(_np(logits), _np(target), smooth, per_image)
    got = build_loss({"type": "dice", "smooth": smooth, "per_image": per_image})(logits, target).item()
    assert got == pytest.approx(ref, rel=1e-5)


def test_dice_limits():
    target = torch.zeros(2, 3, 8, 8)
    target[:, :, 2:5, 2:6] = 1
    perfect = (target * 2 - 1) * 50  # sigmoid ~ exactly the target
    assert build_loss("dice")(perfect, target).item() == pytest.approx(0, abs=1e-6)
    assert build_loss("dice")(-perfect, target).item() == pytest.approx(1, abs=0.05)
    empty = torch.zeros(2, 3, 8, 8)
    assert build_loss("dice")(torch.full_like(empty, -50), empty).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("per_image", [False, True])
def test_tversky_matches_numpy(per_image):
    logits, target = _data()
    x, t = _np(logits), _np(target)
    p = _sig(x)
    axes = (2, 3) if per_image else (0, 2, 3)
    tp, fp, fn = (p * t).sum(axes), (p * (1 - t)).sum(axes), ((1 - p) * t).sum(axes)
    ref = np.mean(1 - (tp + 1) / (tp + 0.7 * fp + 0.3 * fn + 1))
    got = build_loss({"type": "tversky", "alpha": 0.7, "beta": 0.3, "smooth": 1.0, "per_image": per_image})
    assert got(logits, target).item() == pytest.approx(ref, rel=1e-5)


# --- Lovász -----------------------------------------------------------------------------------------------------

def _jaccard_loss(mispredicted: set, truth: set) -> float:
    """Set function J(S) = 1 - |G \\ S| / |G u S| of the paper; J(empty) = 0."""
    union = truth | mispredicted
    return 0.0 if not union else 1 - len(truth - mispredicted) / len(union)


def _lovasz_ref(logits_row, target_row) -> float:
    """Lovász extension as a Choquet integral over thresholds (no permutation): sum over the distinct error
    levels v_1 > ... > v_k > 0 of (v_j - v_{j+1}) * J({i : m_i >= v_j})."""
    y = 2 * target_row - 1
    m = np.maximum(1 - logits_row * y, 0)
    truth = {i for i, t in enumerate(target_row) if t == 1}
    levels = sorted({v for v in m if v > 0}, reverse=True) + [0.0]
    return sum((levels[j] - levels[j + 1]) * _jaccard_loss({i for i, v in enumerate(m) if v >= levels[j]}, truth)
               for j in range(len(levels) - 1))


def test_lovasz_hand_values():
    t = torch.tensor([[1.0, 1, 0, 0]])
    # margins: pixel 0 right by 2 (error 0), pixels 1 and 2 at logit 0 (error 1), pixel 3 right (error 0):
    # an indicator of the mispredicted set A = {1, 2}, so the loss is J(A) = 1 - |{0}| / |{0, 1, 2}| = 2/3.
    assert lovasz_hinge_flat(torch.tensor([[2.0, 0, 0, -2]]), t).item() == pytest.approx(2 / 3)
    # every margin >= 1: no error, no loss
    assert lovasz_hinge_flat(torch.tensor([[1.5, 3, -1, -7]]), t).item() == pytest.approx(0)
    # empty truth: J(S) = 1 for any non-empty S, so the loss is the largest error
    assert lovasz_hinge_flat(torch.tensor([[-2.0, 1.0, -0.5, -3]]), torch.zeros(1, 4)).item() == pytest.approx(2.0)


def test_lovasz_matches_choquet_integral():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = rng.integers(1, 9)
        x = rng.normal(size=n) * 2
        x[rng.random(n) < 0.2] = 0.5  # ties
        t = (rng.random(n) < 0.5).astype(float)
        got = lovasz_hinge_flat(torch.tensor(x[None], dtype=torch.float32), torch.tensor(t[None], dtype=torch.float32))
        assert got.item() == pytest.approx(_lovasz_ref(x, t), rel=1e-5, abs=1e-6)


def test_lovasz_indicator_property_all_subsets():
    """On 0/1 error vectors the Lovász extension equals the set function itself, for every subset."""
    t = np.array([1.0, 0, 1, 0, 0])
    truth = {0, 2}
    for r in range(6):
        for subset in itertools.combinations(range(5), r):
            y = 2 * t - 1
            x = np.where(np.isin(np.arange(5), subset), 0.0, 2 * y)  # error 1 inside the subset, 0 outside
            got = lovasz_hinge_flat(torch.tensor(x[None], dtype=torch.float32), torch.tensor(t[None], dtype=torch.float32))
            assert got.item() == pytest.approx(_jaccard_loss(set(subset), truth), abs=1e-6)


def test_lovasz_loss_is_mean_per_image_and_class():
    logits, target = _data(b=2, c=2, h=3, w=3)
    x, t = _np(logits), _np(target)
    ref = np.mean([_lovasz_ref(x[b, c].ravel(), t[b, c].ravel()) for b in range(2) for c in range(2)])
    assert build_loss("lovasz")(logits, target).item() == pytest.approx(ref, rel=1e-5)


# --- weights, composition, errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_zero_weight_sample_is_ignored(spec):
    loss = build_loss(spec)
    logits, target = _data(b=3, seed=1)
    keep = [0, 2]
    ref = loss(logits[keep], target[keep])
    garbage = logits.clone()
    garbage[1] = 30.0  # a confidently wrong ignored sample must not matter
    target2 = target.clone()
    target2[1] = 1 - target2[1]
    for w in (torch.tensor([1.0, 0, 1]), torch.tensor([1.0, 0, 1]).view(3, 1, 1, 1)):
        x = garbage.clone().requires_grad_(True)
        val = loss(x, target2, pixel_weight=w)
        assert val.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-7)
        val.backward()
        assert torch.all(x.grad[1] == 0)
        assert torch.isfinite(x.grad).all() and x.grad[keep].abs().sum() > 0


@pytest.mark.parametrize("spec", ALL_SPECS[::2], ids=lambda s: s["type"])
def test_per_class_weights_zero_the_gradient(spec):
    logits, target = _data(b=2, seed=2)
    w = torch.ones(2, 3)
    w[1, 2] = 0
    x = logits.clone().requires_grad_(True)
    build_loss(spec)(x, target, pixel_weight=w).backward()
    assert torch.all(x.grad[1, 2] == 0) and x.grad[1, :2].abs().sum() > 0


def test_all_zero_weights_give_zero_loss_and_grad():
    logits, target = _data()
    for spec in ALL_SPECS:
        x = logits.clone().requires_grad_(True)
        val = build_loss(spec)(x, target, pixel_weight=torch.zeros(3))
        val.backward()
        assert val.item() == 0 and torch.all(x.grad == 0), spec


def test_weighted_sum_equals_sum_of_parts():
    logits, target = _data()
    spec = [{"type": "bce", "weight": 0.3}, {"type": "dice", "weight": 0.7}, {"type": "lovasz", "weight": 0.25}]
    combined = build_loss(spec)
    parts = combined.components(logits, target)
    assert list(parts) == ["bce", "dice", "lovasz"]
    expected = 0.3 * build_loss("bce")(logits, target) + 0.7 * build_loss("dice")(logits, target) \
        + 0.25 * build_loss("lovasz")(logits, target)
    assert combined(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    w = torch.tensor([1.0, 0.5, 0.0])
    assert combined(logits, target, w).item() == pytest.approx(
        sum(s["weight"] * build_loss(s["type"])(logits, target, w).item() for s in spec), rel=1e-6)


def test_half_precision_logits_give_float32_loss():
    logits, target = _data()
    for spec in ALL_SPECS:
        val = build_loss(spec)(logits.half(), target)
        assert val.dtype == torch.float32
        assert val.item() == pytest.approx(build_loss(spec)(logits.half().float(), target).item(), rel=1e-5)


def test_volumes_work_too():
    logits, target = torch.randn(2, 3, 4, 5, 6), (torch.rand(2, 3, 4, 5, 6) > 0.5).float()
    for spec in ALL_SPECS:
        assert torch.isfinite(build_loss(spec)(logits, target))


def test_errors_name_the_problem():
    with pytest.raises(KeyError, match="options: .*'bce'.*'dice'.*'focal'.*'lovasz'.*'tversky'"):
        build_loss({"type": "jaccard"})
    with pytest.raises(TypeError, match="unknown keys \\['smoth'\\]"):
        build_loss([{"type": "bce"}, {"type": "dice", "smoth": 1.0}])
    with pytest.raises(ValueError, match="must both be"):
        build_loss("bce")(torch.zeros(2, 3, 4, 4), torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="pixel_weight"):
        build_loss("bce")(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), pixel_weight=torch.ones(3))
    assert sorted(LOSSES) == ["bce", "dice", "focal", "lovasz", "tversky"]


def test_aux_bce():
    g = torch.Generator().manual_seed(4)
    cls_logits, presence = torch.randn(4, 3, generator=g), (torch.rand(4, 3, generator=g) > 0.5).float()
    x, t = _np(cls_logits), _np(presence)
    p = _sig(x)
    per = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert aux_bce(cls_logits, presence).item() == pytest.approx(per.mean(), rel=1e-5)
    w = np.array([1.0, 0.0, 2.0, 1.0])
    assert aux_bce(cls_logits, presence, torch.tensor(w)).item() == pytest.approx(
        (per * w[:, None]).sum() / (w.sum() * 3), rel=1e-5)
