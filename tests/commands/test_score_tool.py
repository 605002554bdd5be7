"""tools/score.py end to end on tiny competition folders written here (and on the synthetic one)."""
import json
import math

import cv2
import numpy as np
import pandas as pd
import pytest

from kaggle_kit.data.raw import CLASSES, DataError
from kaggle_kit.data.rle import rle_encode
from kaggle_kit.metric.scorer import Scorer
from kaggle_kit.metric.score_csv import read_rle_table, report_json, score_files

from tests.conftest import run_tool

# case-day -> (slices, H, W); non-square so that a W/H swap cannot go unnoticed
GEOMS = {"case1_day0": (4, 10, 12), "case2_day3": (3, 9, 9)}


def _blobs(rng, d, h, w):
    zz, yy, xx = np.mgrid[:d, :h, :w]
    vol = np.zeros((d, h, w), np.uint8)
    for c in range(3):
        cz, cy, cx = rng.uniform(0, d), rng.uniform(0, h), rng.uniform(0, w)
        m = ((zz - cz) / 1.5) ** 2 + ((yy - cy) / 3) ** 2 + ((xx - cx) / 3.5) ** 2 <= 1
        vol |= m.astype(np.uint8) << c
    return vol


def _write_csv(path, vols: dict, col: str) -> None:
    rows = []
    for cd, vol in vols.items():
        for z in range(len(vol)):
            for c, name in enumerate(CLASSES):
                rows.append((f"{cd}_slice_{z + 1:04d}", name, rle_encode((vol[z] >> c) & 1)))
    pd.DataFrame(rows, columns=["id", "class", col]).to_csv(path, index=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny split 'train' with two case-days of 16-bit PNGs, a truth CSV and a prediction CSV."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    truth, pred = {}, {}
    for cd, (d, h, w) in GEOMS.items():
        case = cd.split("_")[0]
        scans = root / "train" / case / cd / "scans"
        scans.mkdir(parents=True)
        for z in range(d):
            img = rng.integers(0, 4000, (h, w)).astype(np.uint16)
            assert cv2.imwrite(str(scans / f"slice_{z + 1:04d}_{w}_{h}_1.50_1.50.png"), img)
        truth[cd] = _blobs(rng, d, h, w)
        p = truth[cd].copy()
        p[0] |= _blobs(rng, 1, h, w)[0]  # some wrong pixels
        p[-1] = 0
        pred[cd] = p
    _write_csv(root / "truth.csv", truth, "segmentation")
    _write_csv(root / "pred.csv", pred, "predicted")
    return root, truth, pred


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _expected(truth, pred, cds=None, metric="3d"):
    s = Scorer(metric)
    for cd in cds or GEOMS:
        s.add(cd, pred[cd], truth[cd])
    return s.result()


def _assert_same(js: dict, ref: dict):
    for k in ("score", "dice", "hausdorff"):
        assert js[k] == pytest.approx(ref[k], abs=1e-12)
    for name in CLASSES:
        for k in ("dice", "hausdorff", "score", "iou", "precision", "recall"):
            v = ref["per_class"][name][k]
            g = js["per_class"][name][k]
            assert (g is None and math.isnan(v)) or g == pytest.approx(v, abs=1e-12), (name, k)


def test_score_tool_json_tables_and_plots(tiny, tmp_path):
    root, truth, pred = tiny
    p = run_tool("score.py", "--truth", root / "truth.csv", "--pred", root / "pred.csv", "--data-root", root,
                 "--split", "train", "--plots", tmp_path / "plots")
    js = _last_json(p.stdout)
    _assert_same(js, _expected(truth, pred))
    assert 0 < js["score"] < 1 and js["n_case_days"] == 2
    assert "large_bowel" in p.stdout and "case1_day0" in p.stdout and "worst" in p.stdout
    pngs = sorted(x.name for x in (tmp_path / "plots").iterdir())
    assert "per_class.png" in pngs and any(n.startswith("worst_1_") for n in pngs)


@pytest.mark.parametrize("metric", ["2d", "3d_directed", "3d_unit_cube+empty_dice_one"])
def test_score_files_metric_variants(tiny, metric):
    root, truth, pred = tiny
    scorer, _ = score_files(root / "truth.csv", root / "pred.csv", root, "train", metric, progress_bar=False)
    js = json.loads(report_json(scorer))
    assert js["metric"] == metric
    _assert_same(js, _expected(truth, pred, metric=metric))


def test_score_identical_and_empty(tiny, tmp_path):
    root, truth, _ = tiny
    scorer, _ = score_files(root / "truth.csv", root / "truth.csv", root, "train", progress_bar=False)
    assert scorer.result()["score"] == 1.0
    _write_csv(tmp_path / "empty.csv", {cd: np.zeros_like(v) for cd, v in truth.items()}, "predicted")
    scorer, _ = score_files(root / "truth.csv", tmp_path / "empty.csv", root, "train", progress_bar=False)
    assert scorer.result()["score"] == 0.0


def _bad_file(tmp_path, root, edit) -> str:
    df = pd.read_csv(root / "pred.csv", dtype=str, keep_default_na=False)
    df = edit(df)
    out = tmp_path / "bad.csv"
    df.to_csv(out, index=False)
    return out


@pytest.mark.parametrize("edit, expect", [
    (lambda df: df.drop(index=[4, 5]), ["2 (id, class) row(s) missing", "case1_day0_slice_0002, small_bowel"]),
    (lambda df: df[df["class"] != "stomach"], ["missing", "stomach"]),
    (lambda df: pd.concat([df, df.iloc[[7]]]), ["duplicated", "case1_day0_slice_0003, small_bowel", "lines [9,"]),
    (lambda df: df.assign(predicted=df["predicted"].where(df.index != 3, "100 50")),
     ["line 5 (case1_day0_slice_0002, large_bowel)", "beyond", "10x12"]),
    (lambda df: df.assign(predicted=df["predicted"].where(df.index != 0, "5 2 3")), ["line 2", "odd number"]),
    (lambda df: df.assign(id=df["id"].where(df.index != 1, "case7_day1_slice_0001")), ["line 3 (case7_day1"]),
    (lambda df: df.assign(id=df["id"].where(df.index != 1, "nonsense")), ["line 3", "'nonsense'"]),
    (lambda df: df.assign(**{"class": df["class"].where(df.index != 2, "liver")}), ["line 4", "'liver'"]),
])
def test_score_files_errors_name_rows(tiny, tmp_path, edit, expect):
    root, _, _ = tiny
    bad = _bad_file(tmp_path, root, edit)
    with pytest.raises(DataError) as e:
        score_files(root / "truth.csv", bad, root, "train", progress_bar=False)
    for s in expect:
        assert s in str(e.value), (s, str(e.value))


def test_score_tool_error_exit_code(tiny, tmp_path):
    root, _, _ = tiny
    bad = _bad_file(tmp_path, root, lambda df: pd.concat([df, df.iloc[[7]]]))
    p = run_tool("score.py", "--truth", root / "truth.csv", "--pred", bad, "--data-root", root, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout == ""  # nothing scored
    assert "duplicated" in p.stderr and "case1_day0_slice_0003, small_bowel" in p.stderr


def test_only_pred_case_days(tiny, tmp_path):
    root, truth, pred = tiny
    one = _bad_file(tmp_path, root, lambda df: df[df["id"].str.startswith("case2_day3")])
    with pytest.raises(DataError, match="missing.*case1_day0"):
        score_files(root / "truth.csv", one, root, "train", progress_bar=False)
    scorer, _ = score_files(root / "truth.csv", one, root, "train", only_pred_case_days=True, progress_bar=False)
    js = json.loads(report_json(scorer))
    assert js["n_case_days"] == 1
    _assert_same(js, _expected(truth, pred, ["case2_day3"]))


def test_read_rle_table_accepts_both_forms(tiny):
    root, _, _ = tiny
    t = read_rle_table(root / "truth.csv")
    p = read_rle_table(root / "pred.csv")
    assert list(t.rows.columns[:3]) == list(p.rows.columns[:3]) == ["id", "class", "rle"]


def test_unknown_metric_is_an_error(tiny, capsys):
    root, _, _ = tiny
    from kaggle_kit.commands.score import main
    with pytest.raises(SystemExit) as e:
        main(["--truth", str(root / "truth.csv"), "--pred", str(root / "pred.csv"), "--data-root", str(root),
              "--metric", "4d"])
    assert e.value.code == 2 and "options" in capsys.readouterr().err


def test_score_tool_on_synthetic(synth_root):
    truth = synth_root / "test_truth.csv"
    p = run_tool("score.py", "--truth", truth, "--pred", truth, "--data-root", synth_root, "--split", "test")
    assert _last_json(p.stdout)["score"] == 1.0
    scorer, _ = score_files(truth, synth_root / "sample_submission.csv", synth_root, "test", progress_bar=False)
    r = scorer.result()
    assert r["score"] == 0.0 and r["hausdorff"] == 1.0


# ------------------------------------------------------------------------------------------------------------
# --metric mlebench and the truth-file check


def test_score_tool_mlebench_equals_in_memory_variant(tiny, tmp_path):
    root, truth, pred = tiny
    p = run_tool("score.py", "--truth", root / "truth.csv", "--pred", root / "pred.csv", "--data-root", root,
                 "--metric", "mlebench")
    js = _last_json(p.stdout)
    ref = _expected(truth, pred, metric="mlebench")  # non-square 10x12 slices: the column-major view matters
    for k in ("score", "dice", "hausdorff"):
        assert js[k] == pytest.approx(ref[k], abs=1e-12)
    assert js["metric"] == "mlebench" and js["rows_paired_with_another_id"] == 0
    assert js["score"] != pytest.approx(_expected(truth, pred)["score"], abs=1e-6)
    # MLE-bench's answers form (predicted + image sizes) needs no images
    ans = pd.read_csv(root / "truth.csv", dtype=str, keep_default_na=False).rename(
        columns={"segmentation": "predicted"})
    hw = {cd: g[1:] for cd, g in GEOMS.items()}
    ans["image_height"] = [hw[i.split("_slice_")[0]][0] for i in ans["id"]]
    ans["image_width"] = [hw[i.split("_slice_")[0]][1] for i in ans["id"]]
    ans.to_csv(tmp_path / "answers.csv", index=False)
    p = run_tool("score.py", "--truth", tmp_path / "answers.csv", "--pred", root / "pred.csv", "--metric", "mlebench")
    assert _last_json(p.stdout)["score"] == pytest.approx(ref["score"], abs=1e-12)
    # one fold's OOF: only its case-days, rows paired by (id, class)
    one = _bad_file(tmp_path, root, lambda df: df[df["id"].str.startswith("case2_day3")].iloc[::-1])
    p = run_tool("score.py", "--truth", root / "truth.csv", "--pred", one, "--data-root", root,
                 "--metric", "mlebench", "--only-pred-case-days")
    assert _last_json(p.stdout)["score"] == pytest.approx(
        _expected(truth, pred, ["case2_day3"], metric="mlebench")["score"], abs=1e-12)


def test_score_tool_mlebench_rejects_what_the_grader_rejects(tiny, tmp_path):
    root, _, _ = tiny
    bad = _bad_file(tmp_path, root, lambda df: df.assign(predicted=df["predicted"].where(df.index != 3, "9 2 1 1")))
    p = run_tool("score.py", "--truth", root / "truth.csv", "--pred", bad, "--data-root", root,
                 "--metric", "mlebench", check=False)
    assert p.returncode == 2 and "line 5" in p.stderr and "not sorted" in p.stderr, p.stderr
    # a run past the image end is cut silently, as the grader does (the default metric refuses it)
    long = _bad_file(tmp_path, root, lambda df: df.assign(predicted=df["predicted"].where(df.index != 3, "100 50")))
    p = run_tool("score.py", "--truth", root / "truth.csv", "--pred", long, "--data-root", root,
                 "--metric", "mlebench")
    assert 0 < _last_json(p.stdout)["score"] < 1


def test_score_tool_refuses_a_submission_as_truth(tiny, tmp_path):
    root, _, _ = tiny
    for metric in ("3d", "mlebench"):
        p = run_tool("score.py", "--truth", root / "pred.csv", "--pred", root / "pred.csv", "--data-root", root,
                     "--metric", metric, check=False)
        assert p.returncode == 2, (metric, p.stdout, p.stderr)
        assert "pred.csv" in p.stderr and "'predicted' column and no 'segmentation'" in p.stderr
        assert p.stdout == ""
