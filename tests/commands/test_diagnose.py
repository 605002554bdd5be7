"""Where each class is lost (kaggle_kit.metric.breakdown, tools/diagnose.py): a hand-checked case, a brute-force
reference on random volumes, and the tool on a fake OOF store."""
import json

import numpy as np
import pytest
import yaml

from kaggle_kit.metric.breakdown import LossBreakdown

from tests.conftest import fake_oof_store, run_tool


def test_hand_checked_case():
    """Class 0 has one truth voxel on slice 0 and one on slice 3 (4 slices, 4 height bins). The fused map passes
    0.5 only on slice 0's voxel (plus one false voxel), 0.25 on both; the final mask keeps slice 3's voxel only."""
    truth = np.zeros((4, 3, 3), np.uint8)
    truth[0, 1, 1] = truth[3, 2, 2] = 1
    fused = np.zeros((4, 3, 3, 3), np.float32)
    fused[0, 0, 1, 1] = 200
    fused[0, 0, 0, 0] = 128  # > 127.5: predicted, not true
    fused[3, 0, 2, 2] = 100  # only above 0.25 (63.75)
    final = np.zeros_like(truth)
    final[3, 2, 2] = 1
    bd = LossBreakdown(thresholds=(0.5, 0.25), bins=4)
    bd.add("case1_day1", truth, fused, final)
    r = bd.result()["large_bowel"]
    assert r["truth_voxels"] == 2
    assert r["raw_recall"] == {0.5: 0.5, 0.25: 1.0}
    assert r["raw_precision"] == 0.5
    assert r["final_recall"] == 0.5 and r["final_precision"] == 1.0
    assert (r["truth_slices"], r["slices_found_raw"], r["slices_kept_final"]) == (2, 1, 1)
    assert r["height"] == {"truth_voxels": [1, 0, 0, 1], "raw_recall": [1.0, None, None, 0.0],
                           "final_recall": [0.0, None, None, 1.0]}
    other = bd.result()["stomach"]
    assert other["truth_voxels"] == 0 and other["final_recall"] is None and other["raw_precision"] is None
    assert bd.case_days == [{"case_day": "case1_day1", "class": "large_bowel", "truth_voxels": 2, "raw_recall": 0.5,
                             "final_recall": 0.5}]


def test_against_brute_force():
    """Random volumes of odd shapes and depths: every number equals a voxel-by-voxel count."""
    rng = np.random.default_rng(7)
    thr, bins = (0.5, 0.3, 0.1), 5
    bd = LossBreakdown(thresholds=thr, bins=bins)
    n = {k: np.zeros(3) for k in ("t", "f", "fp", "s", "sr", "sf")}
    raw_tp = np.zeros((3, len(thr)))
    raw_pos = np.zeros(3)
    h_t, h_r, h_f = np.zeros((3, bins)), np.zeros((3, bins)), np.zeros((3, bins))
    for i, (d, h, w) in enumerate([(7, 5, 9), (3, 11, 4), (13, 6, 6), (1, 8, 5)]):
        truth = rng.integers(0, 8, (d, h, w)).astype(np.uint8) * (rng.random((d, h, w)) < 0.4)
        fused = rng.integers(0, 256, (d, 3, h, w)).astype(np.float32)
        final = rng.integers(0, 8, (d, h, w)).astype(np.uint8) * (rng.random((d, h, w)) < 0.5)
        bd.add(f"case{i}_day0", truth, fused, final)
        for c in range(3):
            for z in range(d):
                band = min(z * bins // d, bins - 1)
                any_t = any_r = any_f = False
                for y in range(h):
                    for x in range(w):
                        t = (truth[z, y, x] >> c) & 1
                        f = (final[z, y, x] >> c) & 1
                        r = fused[z, c, y, x] > 127.5
                        n["t"][c] += t
                        n["f"][c] += t and f
                        n["fp"][c] += f
                        raw_pos[c] += r
                        for k, tk in enumerate(thr):
                            raw_tp[c, k] += t and fused[z, c, y, x] > tk * 255
                        h_t[c, band] += t
                        h_r[c, band] += t and r
                        h_f[c, band] += t and f
                        any_t |= bool(t)
                        any_r |= bool(r)
                        any_f |= bool(f)
                n["s"][c] += any_t
                n["sr"][c] += any_t and any_r
                n["sf"][c] += any_t and any_f
    res = bd.result()
    for c, name in enumerate(("large_bowel", "small_bowel", "stomach")):
        r = res[name]
        assert r["truth_voxels"] == n["t"][c]
        assert r["raw_recall"] == pytest.approx({t: raw_tp[c, k] / n["t"][c] for k, t in enumerate(thr)})
        assert r["raw_precision"] == pytest.approx(raw_tp[c, 0] / raw_pos[c])
        assert r["final_recall"] == pytest.approx(n["f"][c] / n["t"][c])
        assert r["final_precision"] == pytest.approx(n["f"][c] / n["fp"][c])
        assert (r["truth_slices"], r["slices_found_raw"], r["slices_kept_final"]) == (n["s"][c], n["sr"][c], n["sf"][c])
        assert r["height"]["truth_voxels"] == h_t[c].tolist()
        assert r["height"]["raw_recall"] == pytest.approx([a / b for a, b in zip(h_r[c], h_t[c])])
        assert r["height"]["final_recall"] == pytest.approx([a / b for a, b in zip(h_f[c], h_t[c])])


def test_shapes_checked():
    with pytest.raises(ValueError, match="case9_day1: shapes"):
        LossBreakdown().add("case9_day1", np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3, 3, 4)), np.zeros((2, 3, 3)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fake_oof_store(tmp_path_factory.mktemp("diag"), data_seed=3, noise_seed=1, blobs=2, smooth_noise=False,
                          classifier=False)


def test_tool_on_oof_maps(store, tmp_path):
    """One member at 0.5 with no step: the final mask is the raw map at 0.5, so the two recalls agree; a large
    2D area filter lowers the final recall only. The plot is written; --split test without --truth fails
    naming the option."""
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"members": [{"exp": "sharp", "kind": "pixel", "weight": 1.0}], "threshold": 0.5}))
    p = run_tool("diagnose.py", plain, "--data-root", store["data"], "--preds", store["preds"], "--plot",
                 tmp_path / "h.png")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["case_days"] > 0 and (tmp_path / "h.png").stat().st_size > 1000
    for r in res["per_class"].values():
        if r["truth_voxels"]:
            assert r["final_recall"] == pytest.approx(r["raw_recall"]["0.5"])
            assert r["slices_kept_final"] == r["slices_found_raw"] <= r["truth_slices"]
            assert r["raw_recall"]["0.1"] >= r["raw_recall"]["0.25"] >= r["raw_recall"]["0.5"]
    filt = tmp_path / "filtered.yaml"
    filt.write_text(yaml.safe_dump({"members": [{"exp": "sharp", "kind": "pixel", "weight": 1.0}], "threshold": 0.5,
                                    "min_area_2d": 10 ** 6}))
    q = json.loads(run_tool("diagnose.py", filt, "--data-root", store["data"], "--preds", store["preds"])
                   .stdout.strip().splitlines()[-1])
    for name, r in q["per_class"].items():
        if r["truth_voxels"]:
            assert r["final_recall"] == 0.0 and r["slices_kept_final"] == 0
            assert r["raw_recall"] == res["per_class"][name]["raw_recall"]
    bad = run_tool("diagnose.py", plain, "--data-root", store["data"], "--preds", store["preds"], "--split", "test",
                   check=False)
    assert bad.returncode == 2 and "--truth" in bad.stderr
