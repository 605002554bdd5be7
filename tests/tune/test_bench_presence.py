"""benchmarks/bench_presence.py: the (case-day, class) counting on a hand-built case, and the whole script on a
tiny finished work folder (the layout ``kk run`` leaves, built here with the stages' own pieces: the tools
in-process instead of trained members)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from kaggle_kit.data.raw import CLASSES, discover_split, labels_wide, load_labels

ROOT = Path(__file__).resolve().parents[2]


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_presence", ROOT / "benchmarks" / "bench_presence.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


B = _load_bench()


# ----------------------------------------------------------------------------------- hand-checked counting
def test_counts_on_a_hand_built_case(tmp_path):
    """Three case-days (3, 8, 8). Truth / prediction per class (large_bowel, small_bowel, stomach):

    case1_day0: truth (yes, yes, no); prediction (yes, yes, one pixel on slice 2) -> stomach invented;
    case2_day0: truth (yes, yes, yes on slice 1 only); prediction (yes, none at all, on slice 3 only) ->
                small_bowel deleted; stomach present in both (on other slices: neither invented nor deleted);
    case3_day0: truth (no, yes, yes); prediction (no, yes, yes) -> large_bowel absent in both.

    So 2 absent pairs (case1 stomach, case3 large_bowel), 7 present, 1 invented, 1 deleted."""
    from kaggle_kit.data.synthetic import write_scoring_folder

    def vol(spec):
        v = np.zeros((3, 8, 8), np.uint8)
        for c, zs in spec.items():
            for z in zs:
                v[z, 2:5, 2 + c:5 + c] |= np.uint8(1 << c)
        return v

    t1, p1 = vol({0: [0, 1], 1: [1, 2]}), vol({0: [0, 1], 1: [1, 2]})
    p1[2, 7, 7] |= 4  # the invented stomach: one pixel
    t2, p2 = vol({0: [0, 1, 2], 1: [0, 1], 2: [1]}), vol({0: [0, 1, 2], 2: [2]})
    t3, p3 = vol({1: [0], 2: [0, 1]}), vol({1: [0], 2: [1, 2]})
    truth_csv, pred_csv = write_scoring_folder(tmp_path, [(1, 0, t1, p1), (2, 0, t2, p2), (3, 0, t3, p3)])
    r = B.evaluate_csv(truth_csv, pred_csv, tmp_path, "train")
    assert (r["case_days"], r["absent"], r["present"]) == (3, 2, 7)
    assert (r["invented"], r["deleted"]) == (1, 1)
    assert r["invented_pairs"] == [["case1_day0", "stomach"]]
    assert r["deleted_pairs"] == [["case2_day0", "small_bowel"]]
    assert r["invented_rate"] == pytest.approx(1 / 2) and r["deleted_rate"] == pytest.approx(1 / 7)
    assert r["per_class"]["stomach"] == {"absent": 1, "present": 2, "invented": 1, "deleted": 0}
    assert r["per_class"]["small_bowel"] == {"absent": 0, "present": 3, "invented": 0, "deleted": 1}
    assert r["per_class"]["large_bowel"] == {"absent": 1, "present": 2, "invented": 0, "deleted": 0}
    # the prediction equal to the truth: nothing invented or deleted, score 1
    same = B.evaluate_csv(truth_csv, truth_csv, tmp_path, "train")
    assert (same["invented"], same["deleted"], same["score"]) == (0, 0, 1.0)


# ----------------------------------------------------------------------------------- a tiny finished run
#: per (split, case-day position): the class blanked in the truth, so that classes are absent from whole
#: case-days whatever the generator drew
BLANK = {"train": {0: "stomach", 1: "small_bowel", 3: "stomach"}, "test": {0: "stomach"}}
SEARCH = {
    "members": "auto",
    "weights": {"step": 0.5, "refine_step": 0.25},
    "threshold": [0.4, 0.5],
    "presence": {"prob": [None, 0.7, 0.8]},
    "min_area_2d": [None],
    "min_relative_volume_3d": [0, 0.2],
    "never_empty": [True],
    "z_smoothing": [False],
    "search": {"rounds": 2, "nested": False, "min_gain": 1.0e-4},
}


def _blank(csv: Path, which: dict) -> None:
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    cds = list(dict.fromkeys(df["id"].str.split("_slice_").str[0]))
    for i, cls in which.items():
        df.loc[df["id"].str.startswith(cds[i] + "_slice_") & (df["class"] == cls), "segmentation"] = ""
    df.to_csv(csv, index=False)


def _maps(rng, truth: np.ndarray) -> list[np.ndarray]:
    """Two members' uint8 (D, C, H, W) maps: each present organ blurred at a confidence 0.85-1.0, and in every
    case-day one look-alike blob per class at 0.5-0.65 that both members call (an invented organ where the
    class is absent), plus noise."""
    d, h, w = truth.shape
    pix = np.zeros((2, d, 3, h, w), np.float32)
    z, y, x = np.ogrid[:d, :h, :w]
    for c in range(3):
        organ = ((truth >> c) & 1).astype(np.float32)
        if organ.any():
            for m, blur in enumerate((0.7, 1.2)):
                seen = ndimage.gaussian_filter(organ, (0.4, blur, blur))
                pix[m, :, c] = seen / seen.max() * rng.uniform(0.85, 1.0)
        cz, cy, cx = rng.uniform(2, d - 2), rng.uniform(4, h - 4), rng.uniform(4, w - 4)
        blob = ((z - cz) / 1.2) ** 2 + ((y - cy) / 2.0) ** 2 + ((x - cx) / 2.0) ** 2 <= 1
        q = rng.uniform(0.5, 0.65)
        pix[:, :, c] = np.maximum(pix[:, :, c], blob * q)
    pix += rng.normal(0, 0.03, pix.shape)
    return list(np.rint(np.clip(pix, 0, 1) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """WORK with data/, cache/, preds/ (members ``a``, ``b``: OOF and test maps), ensembles/{search,tuned}.yaml
    and pipeline/{data,tune,submission}.json, made as the stages make them (write_search, kk tune, kk ensemble
    --split oof, kk ensemble --split test, kk score), the tools called in-process. Returns (work, maps, truths):
    {split: {case_day: [map of a, map of b]}}, {split: {case_day: truth bit flags}}."""
    import yaml

    from kaggle_kit.commands.score import main as score_main
    from kaggle_kit.commands.tune_oof import main as tune_main
    from kaggle_kit.data.cache import Cache, prepare_cache
    from kaggle_kit.data.synthetic import make_synthetic
    from kaggle_kit.data.volumes import load_mask_volume
    from kaggle_kit.io.probmaps import ProbMapStore
    from kaggle_kit.pipeline.results import (DataResult, ScoreSummary, SubmissionResult, TuneResult, TuneSummary,
                                             read_summary, save_result)
    from kaggle_kit.pipeline.stages import write_search
    from kaggle_kit.post.ensemble import load_ensemble_config, run_ensemble

    work = tmp_path_factory.mktemp("presence_run") / "w_tiny"
    data, cache, preds, ens, tools = (work / "data", work / "cache", work / "preds", work / "ensembles",
                                      work / "pipeline" / "tools")
    make_synthetic(data, train_cases=4, test_cases=2, seed=7, size_scale=0.2, max_days=2)
    _blank(data / "train.csv", BLANK["train"])
    _blank(data / "test_truth.csv", BLANK["test"])
    prepare_cache(data, cache, splits=("train",), n_folds=3, seed=0)
    c, st, rng = Cache(cache), ProbMapStore(preds), np.random.default_rng(0)
    test_wide = labels_wide(load_labels(data / "test_truth.csv"))
    maps, truths = {}, {}
    for split, pred_split in (("train", "oof"), ("test", "test")):
        for exp in ("a", "b"):
            st.write_manifest(exp, pred_split, family="fake", kind="pixel", classes=CLASSES, folds=[0, 1, 2])
        maps[pred_split], truths[pred_split] = {}, {}
        for cd, g in discover_split(data, split).groupby("case_day", sort=False):
            g = g.sort_values("slice")
            truth = np.asarray(c.mask("train", cd)) if split == "train" else load_mask_volume(g, test_wide)
            pair = _maps(rng, truth)
            for exp, m in zip(("a", "b"), pair):
                st.write(exp, pred_split, cd, m, g["slice"].tolist())
            maps[pred_split][cd], truths[pred_split][cd] = pair, truth
    ens.mkdir(parents=True)
    template = ens / "template.yaml"
    template.write_text(yaml.safe_dump(SEARCH))
    search, tuned = write_search(template, ens / "search.yaml", preds), ens / "tuned.yaml"
    tools.mkdir(parents=True)
    assert tune_main([str(search), "--cache", str(cache), "--pred-root", str(preds), "--out", str(tuned),
                      "--workers", "1", "--summary-json", str(tools / "tune.json")]) == 0
    oof = run_ensemble(load_ensemble_config(tuned), data, "oof", work / "oof" / "tuned.csv", preds, cache)
    save_result(work, "tune", TuneResult(str(tuned), str(search), read_summary(tools / "tune.json", TuneSummary, "t"),
                                         oof["metric"]["score"], str(work / "oof" / "tuned.csv")))
    save_result(work, "data", DataResult(str(data), str(cache), 3, True, None, "default"))
    sub_maps = work / "submission_from_maps.csv"
    run_ensemble(load_ensemble_config(tuned), data, "test", sub_maps, preds)
    assert score_main(["--truth", str(data / "test_truth.csv"), "--pred", str(sub_maps), "--data-root", str(data),
                       "--split", "test", "--summary-json", str(tools / "score_maps.json")]) == 0
    test_score = read_summary(tools / "score_maps.json", ScoreSummary, "s").score
    save_result(work, "submission", SubmissionResult(None, str(sub_maps), None, test_score, None))
    return work, maps, truths


def _fused_counts(yaml_path, maps: dict, truths: dict) -> dict:
    """absent / present / invented / deleted of one setting through the ensemble's in-memory path
    (fuse_case_day, the notebook's), against the truth volumes: no CSV, no RLE."""
    from kaggle_kit.post.ensemble import fuse_case_day, load_ensemble_config

    cfg = load_ensemble_config(yaml_path)
    n = {"absent": 0, "present": 0, "invented": 0, "deleted": 0}
    for cd, truth in truths.items():
        bits, _ = fuse_case_day(cfg, {m.name: maps[cd][("a", "b").index(m.exp)] for m in cfg.members}, cd,
                                truth.shape)
        for k in range(3):
            t, p = bool(((truth >> k) & 1).any()), bool(((bits >> k) & 1).any())
            n["absent" if not t else "present"] += 1
            n["invented"] += p and not t
            n["deleted"] += t and not p
    return n


def test_script_end_to_end_on_a_tiny_run(run_folder, tmp_path, capsys):
    work, maps, truths = run_folder
    out, keep = tmp_path / "presence.json", tmp_path / "files"
    assert B.main([str(work), "--out", str(out), "--workers", "1", "--keep", str(keep)]) == 0
    printed = capsys.readouterr().out
    r = json.loads(out.read_text())["folders"][0]
    # the table: one row per split, both settings side by side
    rows = [ln for ln in printed.splitlines() if ln.startswith("w_tiny ")]
    assert [ln.split()[1] for ln in rows[:2]] == ["oof", "test"]
    # the settings: before has the step off, after is the run's YAML (the fixture's members make the tuner
    # keep presence on some class)
    assert r["settings"]["after"]["yaml"] == str(work / "ensembles" / "tuned.yaml")
    assert not any(v for p in r["settings"]["before"]["presence"].values() for v in p.values())
    assert any(v for v in r["settings"]["after"]["presence"]["prob"].values())
    # the counts agree with the in-memory ensemble path against the truth volumes, both settings, both splits
    for split in ("oof", "test"):
        for s in ("before", "after"):
            got = {k: r[split][s][k] for k in ("absent", "present", "invented", "deleted")}
            assert got == _fused_counts(r["settings"][s]["yaml"], maps[split], truths[split]), (split, s)
            assert r[split][s]["case_days"] == len(truths[split])
    # every blanked class is absent (the generator may have drawn more absences)
    assert r["oof"]["after"]["absent"] >= len(BLANK["train"]) and r["test"]["after"]["absent"] >= len(BLANK["test"])
    # the look-alike blobs are invented where the class is absent, and the tuned presence removes some
    assert r["oof"]["before"]["invented"] >= len(BLANK["train"])
    assert r["oof"]["after"]["invented"] < r["oof"]["before"]["invented"]
    # scores: the OOF ones equal the tuner's own exact re-run (default metric), the after ones the run's record
    before_summary = json.loads((keep / "0_w_tiny" / "before_summary.json").read_text())
    assert r["oof"]["before"]["score"] == pytest.approx(before_summary["in_sample"], abs=1e-12)
    tune = json.loads((work / "pipeline" / "tune.json").read_text())
    assert r["oof"]["after"]["score"] == pytest.approx(tune["summary"]["in_sample"], abs=1e-12)
    assert r["checks"] == {"oof_matches_tuned_oof": True, "test_matches_test_from_maps": True, "warnings": []}
