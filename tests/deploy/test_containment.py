"""The hidden run contains every fault to the unit it touches; the public (strict) run raises on each.

One tiny trained 2.5D member (the session's ``trained_seg25d``, nothing new is trained) is bundled with its
fold-0 checkpoint copied to four folds. A run that lost folds is compared with the run of the same bundle
listing only the folds left (the same sums in the same order: equal bit for bit). The faults: (a) a slice missing from one case-day's numbering,
(b) sample_submission.csv ids without an image (a whole unknown case-day and one slice past a case-day's
end), (c) one unreadable PNG, (d) one fold file missing and one replaced by a valid checkpoint of other
weights (its sha256 no longer the one bundle.json records).
"""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import run_tool

FOLDS = [f"checkpoints/tiny_cpu/fold{k}.pth" for k in range(4)]
MISSING_CD, UNREADABLE_CD, CLEAN_CD = "case148_day33", "case148_day9", "case37_day6"
EXTRA_IDS = ["case999_day0_slice_0001", "case999_day0_slice_0002", f"{CLEAN_CD}_slice_0099"]


def _sha(path):
    from kaggle_kit.utils import sha256_file

    return sha256_file(path)


@pytest.fixture(scope="module")
def four_fold_bundle(trained_seg25d, tmp_path_factory):
    """The tiny member as a 4-fold bundle (identical folds), its sha256 map recorded as bundle.py does."""
    tmp = tmp_path_factory.mktemp("bundle4")
    ens = tmp / "ensemble.yaml"
    ens.write_text(yaml.safe_dump({
        "members": [{"exp": "tiny_cpu", "kind": "pixel", "weight": 1.0},
                    {"exp": "tiny_cpu_aux", "kind": "classifier", "weight": 1.0}],
        "threshold": 0.5, "gating": {"prob": 0.05}, "min_area_2d": 2}))
    out = tmp / "bundle"
    run_tool("bundle.py", "--out", out, "--ensemble", ens, "--work-root", trained_seg25d["work_root"],
             "--preds", trained_seg25d["pred_root"], "--no-wheels")
    man = json.loads((out / "bundle.json").read_text())
    for ck in FOLDS[1:]:
        shutil.copyfile(out / FOLDS[0], out / ck)
        man["sha256"][ck] = _sha(out / ck)
    next(m for m in man["members"] if m["name"] == "tiny_cpu")["checkpoints"] = FOLDS
    (out / "bundle.json").write_text(json.dumps(man))
    return out


def _alter_fold(bundle, ck):
    """Replace ``ck`` by a loadable checkpoint with other weights (the convolution kernels negated)."""
    import torch

    obj = torch.load(bundle / ck, map_location="cpu", weights_only=True)
    sd_key = next(k for k, v in obj.items() if isinstance(v, dict) and any(torch.is_tensor(t) for t in v.values()))
    obj[sd_key] = {k: (-v if torch.is_tensor(v) and v.ndim == 4 else v) for k, v in obj[sd_key].items()}
    torch.save(obj, bundle / ck)


def _only_folds(bundle, tmp_path, keep):
    """The bundle with its member listing only the folds ``keep`` (indices): the reference run."""
    b = tmp_path / f"bundle_folds{''.join(map(str, keep))}"
    shutil.copytree(bundle, b)
    man = json.loads((b / "bundle.json").read_text())
    next(m for m in man["members"] if m["name"] == "tiny_cpu")["checkpoints"] = [FOLDS[k] for k in keep]
    (b / "bundle.json").write_text(json.dumps(man))
    return b


def _faulty_bundle(bundle, tmp_path, missing=True, altered=True):
    b = tmp_path / "bundle_faulty"
    shutil.copytree(bundle, b)
    if missing:
        (b / FOLDS[3]).unlink()
    if altered:
        _alter_fold(b, FOLDS[2])
    return b


def _pngs(root, cd):
    case = cd.split("_")[0]
    return sorted((root / "test" / case / cd / "scans").glob("*.png"))


def _faulty_data(synth_root, tmp_path, gap=True, extra=True, unreadable=True):
    """A copy of the synthetic folder with the data faults; returns (root, {fault: id})."""
    root = tmp_path / "data_faulty"
    shutil.copytree(synth_root, root)
    ids = {}
    if gap:  # (a) a slice in the middle of a case-day disappears: a gap in its numbering
        p = _pngs(root, MISSING_CD)[10]
        ids["gap"] = f"{MISSING_CD}_slice_{p.name.split('_')[1]}"
        p.unlink()
    if unreadable:  # (c) a PNG that does not decode
        p = _pngs(root, UNREADABLE_CD)[5]
        ids["unreadable"] = f"{UNREADABLE_CD}_slice_{p.name.split('_')[1]}"
        p.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    if extra:  # (b) ids with no image, in the middle of the sample (the order must be kept)
        sample = pd.read_csv(root / "sample_submission.csv", dtype=str, keep_default_na=False)
        add = pd.DataFrame([(i, c, "") for i in EXTRA_IDS for c in ("large_bowel", "small_bowel", "stomach")],
                           columns=sample.columns)
        k = len(sample) // 2
        pd.concat([sample.iloc[:k], add, sample.iloc[k:]]).to_csv(root / "sample_submission.csv", index=False)
    return root, ids


def _run(bundle, root, out, **kw):
    from kaggle_kit.deploy.infer import run_inference

    return run_inference(bundle, root, out, device="cpu", **kw)


def _read(p):
    return pd.read_csv(p, dtype=str, keep_default_na=False)


def test_hidden_run_contains_each_fault_to_its_unit(four_fold_bundle, synth_root, tmp_path):
    """(a)-(d) together in the hidden run: every sample row in order, a valid file, the faults' rows empty,
    every row of the untouched case-day bit for bit the clean run's, the faulty case-days' other rows still
    predicted, and the report naming each unit dropped with its reason and the rows it cost."""
    clean = _run(_only_folds(four_fold_bundle, tmp_path, [0, 1]), synth_root, tmp_path / "clean.csv")
    assert clean.get("contained", []) == [] and clean["dropped"] == [] and not clean["strict"]
    root, ids = _faulty_data(synth_root, tmp_path)
    b = _faulty_bundle(four_fold_bundle, tmp_path)
    s = _run(b, root, tmp_path / "faulty.csv")
    from kaggle_kit.data.png_volumes import scan_split
    from kaggle_kit.data.rle import rle_decode, rle_parse
    from kaggle_kit.io.submission import validate_submission

    ref, sub = _read(tmp_path / "clean.csv"), _read(tmp_path / "faulty.csv")
    sample = _read(root / "sample_submission.csv")
    assert sub[["id", "class"]].equals(sample[["id", "class"]])  # every row, sample order
    validate_submission(tmp_path / "faulty.csv", root, "test", slices=scan_split(root, "test")[0],
                        rows=sample[["id", "class"]], no_image_ok=True)
    geo = scan_split(root, "test")[0].set_index("id")
    for i, rle in zip(sub["id"], sub["predicted"]):
        if rle:
            rle_parse(rle, int(geo.loc[i, "height"]) * int(geo.loc[i, "width"]))

    faulty_rows = sub["id"].isin([ids["gap"], ids["unreadable"], *EXTRA_IDS])
    assert (sub.loc[faulty_rows, "predicted"] == "").all()
    merged = sub.merge(ref, on=["id", "class"], how="left", suffixes=("", "_clean"))
    cd = merged["id"].str.rsplit("_slice_", n=1).str[0]
    same_cd = merged[(cd == CLEAN_CD) & ~faulty_rows]
    assert len(same_cd) > 0 and same_cd["predicted"].notna().all()
    assert (same_cd["predicted"] == same_cd["predicted_clean"]).all()  # bit for bit, the two folds left included
    assert (same_cd["predicted"] != "").any()
    for fcd in (MISSING_CD, UNREADABLE_CD):  # the rest of a faulty slice's case-day keeps its predictions:
        rest = merged[(cd == fcd) & ~faulty_rows]  # the same masks but for the hole's effect on its volume
        h, w = int(geo.loc[rest["id"].iloc[0], "height"]), int(geo.loc[rest["id"].iloc[0], "width"])
        got = np.stack([rle_decode(r, (h, w)) for r in rest["predicted"]])
        ref_m = np.stack([rle_decode(r, (h, w)) for r in rest["predicted_clean"]])
        assert ref_m.sum() > 0 and 2 * (got & ref_m).sum() / (got.sum() + ref_m.sum()) > 0.99, fcd  # measured 0.999

    units = {(u["unit"], u["name"]): u for u in s["contained"]}
    assert units[("slice", ids["gap"])]["reason"] == "missing from the slice numbering"
    assert "unreadable PNG" in units[("slice", ids["unreadable"])]["reason"]
    assert units[("case_day", "case999_day0")]["rows_emptied"] == 6
    assert units[("slice", f"{CLEAN_CD}_slice_0099")]["rows_emptied"] == 3
    assert "missing" in units[("fold", f"tiny_cpu:{FOLDS[3]}")]["reason"]
    assert "sha256" in units[("fold", f"tiny_cpu:{FOLDS[2]}")]["reason"]
    n_sub = len(sub)
    for key in [("slice", ids["gap"]), ("slice", ids["unreadable"])]:
        assert units[key]["rows_emptied"] == 3 and units[key]["share"] == pytest.approx(3 / n_sub, abs=1e-6)
    assert s["rows_emptied"] == 3 + 3 + 6 + 3 and len(units) == 6
    report = json.loads((tmp_path / "faulty_report.json").read_text())
    assert report["contained"] == s["contained"] and s["members"] == ["tiny_cpu", "tiny_cpu_aux"]


def test_hidden_run_altered_fold_is_dropped_not_used(four_fold_bundle, synth_root, tmp_path):
    """A fold file replaced by other weights: the hidden run drops that fold (named) and the others give
    the file of the bundle without it exactly; used unverified, the altered weights would change the predictions."""
    from kaggle_kit.deploy.members import load_bundle_members

    _run(_only_folds(four_fold_bundle, tmp_path, [0, 1, 3]), synth_root, tmp_path / "clean.csv")
    b = _faulty_bundle(four_fold_bundle, tmp_path, missing=False)
    s = _run(b, synth_root, tmp_path / "sub.csv")
    assert _read(tmp_path / "sub.csv").equals(_read(tmp_path / "clean.csv"))
    assert [u["name"] for u in s["contained"]] == [f"tiny_cpu:{FOLDS[2]}"]
    assert f"{FOLDS[2]}" in s["dropped"][0] and "sha256" in s["dropped"][0]
    man = json.loads((b / "bundle.json").read_text())  # the same bundle without the check uses the fold
    members, dropped, _ = load_bundle_members(b, man["members"], device="cpu", sha256=None)
    assert dropped == [] and len(members[0].predictors) == 4
    from kaggle_kit.data.png_volumes import PngVolumes

    vols = PngVolumes(synth_root, "test")
    cd = vols.case_days()[0]
    maps = [p(vols, "test", cd) for p in members[0].predictors]
    assert np.isfinite(maps[2]).all() and np.abs(maps[2] - maps[0]).max() > 0.1  # other weights, other maps


def test_one_member_bundle_missing_fold_keeps_its_other_folds(four_fold_bundle, synth_root, tmp_path):
    """A one-member bundle with one fold file gone: the member still predicts with its other folds (the
    file equals the run of those folds), where dropping the member would have emptied every mask."""
    _run(_only_folds(four_fold_bundle, tmp_path, [0, 1, 2]), synth_root, tmp_path / "clean.csv")
    b = _faulty_bundle(four_fold_bundle, tmp_path, altered=False)
    s = _run(b, synth_root, tmp_path / "sub.csv")
    sub = _read(tmp_path / "sub.csv")
    assert sub.equals(_read(tmp_path / "clean.csv")) and (sub["predicted"] != "").any()
    assert s["members"] == ["tiny_cpu", "tiny_cpu_aux"] and s["rows_emptied"] == 0


@pytest.mark.parametrize("fault", ["gap", "extra", "unreadable", "missing_fold", "altered_fold"])
def test_strict_run_raises_on_each_fault(four_fold_bundle, synth_root, tmp_path, fault):
    """The public run's policy (strict) on the same faults, one at a time: it raises naming the file, id or
    slice, and writes no submission."""
    data_faults = {"gap", "extra", "unreadable"}
    root = synth_root
    ids = {}
    if fault in data_faults:
        root, ids = _faulty_data(synth_root, tmp_path, gap=fault == "gap", extra=fault == "extra",
                                 unreadable=fault == "unreadable")
    b = four_fold_bundle
    if fault.endswith("_fold"):
        b = _faulty_bundle(four_fold_bundle, tmp_path, missing=fault == "missing_fold",
                           altered=fault == "altered_fold")
    expect = {"gap": "missing slice", "extra": "case999_day0_slice_0001", "unreadable": "unreadable PNG",
              "missing_fold": f"{FOLDS[3]}: file missing", "altered_fold": f"{FOLDS[2]}: sha256"}[fault]
    with pytest.raises(Exception, match=expect):
        _run(b, root, tmp_path / "sub.csv", strict=True)
    assert not (tmp_path / "sub.csv").exists()


def test_row_by_row_validation_empties_only_bad_rows():
    """bad_rows names each prediction that may not stand (outside H*W, unsorted, for an id without an
    image) and nothing else; empty rows are always valid."""
    from kaggle_kit.io.submission import bad_rows

    slices = pd.DataFrame({"id": ["a", "b"], "height": [4, 4], "width": [5, 5]})
    rows = pd.DataFrame({"id": ["a", "a", "b", "b", "c", "c"], "class": ["large_bowel", "stomach"] * 3})
    pred = ["1 3", "19 3", "5 2 1 2", "", "", "1 1"]  # 19 3 runs past 20 px; 5 2 1 2 unsorted; c has no image
    bad = bad_rows(rows, pred, slices)
    assert sorted(bad) == [1, 2, 5]
    assert "c" in bad[5] and "no image" in bad[5]
