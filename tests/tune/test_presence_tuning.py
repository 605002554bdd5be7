"""Presence per volume, tuned on OOF: on a hand-built store where classes are absent from whole case-days,
the tuner's ``presence.prob`` removes invented organs (truth empty, prediction not) that ``never_empty`` and
the component filters keep, without deleting present ones (truth set, prediction empty)."""
import numpy as np
from scipy import ndimage

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.post.ensemble import fuse_case_day, parse_ensemble_config
from kaggle_kit.tune.search import OOFData, parse_search_space, tune_oof

D, H, W = 14, 36, 36
N_CASE_DAYS = 12


def _ellipsoid(centre, radii):
    z, y, x = np.ogrid[:D, :H, :W]
    return (((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
            + ((x - centre[2]) / radii[2]) ** 2) <= 1


def _store(seed: int = 0):
    """12 case-days (D, H, W) = (14, 36, 36), 3 classes, two pixel members ``a`` and ``b``. Each class is
    absent from a case-day with probability 0.3 (at least 6 such (case-day, class) in all). A present organ
    is an ellipsoid both members see, blurred, at a confidence of 0.7-1.0 each; in every case-day, present or
    not, each class also gets one or two small look-alike blobs both members call at 0.45-0.75 (the
    confusions that become invented organs where the class is absent), plus noise."""
    rng = np.random.default_rng(seed)
    absent = rng.random((N_CASE_DAYS, 3)) < 0.3
    assert absent.sum() >= 6 and (~absent).sum() >= 18
    items, truths, maps = [], [], []
    for i in range(N_CASE_DAYS):
        truth = np.zeros((D, H, W), np.uint8)
        pix = np.zeros((2, D, 3, H, W), np.float32)
        for c in range(3):
            if not absent[i, c]:
                organ = _ellipsoid((rng.uniform(4, 10), rng.uniform(10, 26), rng.uniform(10, 26)),
                                   (rng.uniform(2.5, 4), rng.uniform(4, 7), rng.uniform(4, 7)))
                truth |= organ.astype(np.uint8) << c
                for m, (blur, shift) in enumerate(((0.8, 0), (1.4, 1))):
                    seen = ndimage.gaussian_filter(np.roll(organ, shift, axis=2).astype(np.float32), (0.5, blur, blur))
                    pix[m, :, c] += seen / max(seen.max(), 1e-6) * rng.uniform(0.7, 1.0)
            for _ in range(rng.integers(1, 3)):
                blob = _ellipsoid((rng.uniform(1, 13), rng.uniform(3, 33), rng.uniform(3, 33)),
                                  (rng.uniform(0.8, 1.5), rng.uniform(1, 2.5), rng.uniform(1, 2.5)))
                q = rng.uniform(0.45, 0.75)
                for m in range(2):
                    pix[m, :, c] = np.maximum(pix[m, :, c], blob * (q + rng.normal(0, 0.04)))
        pix += rng.normal(0, 0.04, pix.shape)
        pix = np.rint(np.clip(pix, 0, 1) * 255).astype(np.uint8)
        name = f"case{i + 1}_day0"
        items.append((name, i % 3, truth, pix, None))
        truths.append(truth)
        maps.append(pix)
    return items, truths, maps, absent


def _organ_counts(ens: dict, items) -> tuple[int, int]:
    """(invented, deleted) over (case-day, class) of the tuned mapping run through the ensemble's own path."""
    cfg = parse_ensemble_config(ens, "<tuned>")
    invented = deleted = 0
    for name, _, truth, pix, _ in items:
        maps = {m.name: pix[["a", "b"].index(m.exp)] for m in cfg.members}
        bits, _ = fuse_case_day(cfg, maps, name, truth.shape)
        for c in range(3):
            t, p = bool(((truth >> c) & 1).any()), bool(((bits >> c) & 1).any())
            invented += p and not t
            deleted += t and not p
    return invented, deleted


def _tune(items, presence):
    space = parse_search_space({
        "members": [{"exp": "a", "kind": "pixel"}, {"exp": "b", "kind": "pixel"}],
        "weights": {"step": 0.5, "refine_step": 0.25},
        "threshold": [0.3, 0.4, 0.5, 0.6],
        "min_area_2d": [None, 4, 12],
        "min_relative_volume_3d": [0, 0.1, 0.3],
        "never_empty": [True],
        "presence": {"prob": presence},
        "search": {"rounds": 2, "nested": False},
    }, "s")
    data = OOFData.from_arrays(items, ["a", "b"], floor_thr=space.floor_thr, classes=CLASSES)
    return tune_oof(space, data, workers=1, verify=False, log=lambda *a: None)


def test_tuned_presence_removes_invented_organs_and_deletes_none(capsys):
    items, _, _, absent = _store()
    off = _tune(items, [None])
    on = _tune(items, [None, 0.5, 0.6, 0.7, 0.8, 0.9])
    inv_off, del_off = _organ_counts(off["ensemble"], items)
    inv_on, del_on = _organ_counts(on["ensemble"], items)
    s_off, s_on = off["summary"]["in_sample_search"], on["summary"]["in_sample_search"]
    with capsys.disabled():
        print(f"\npresence per volume on {N_CASE_DAYS} case-days x 3 classes, {int(absent.sum())} absent: "
              f"invented {inv_off} -> {inv_on}, deleted {del_off} -> {del_on}, "
              f"score {s_off:.4f} -> {s_on:.4f}, tuned presence.prob {on['ensemble'].get('presence')}")
    assert inv_off >= 3  # the guard and the filters keep a look-alike where the class is absent
    assert inv_on < inv_off and del_on <= del_off
    assert s_on > s_off
    assert "presence" not in off["ensemble"] and "prob" in on["ensemble"]["presence"]
