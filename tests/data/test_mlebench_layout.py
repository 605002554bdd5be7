"""MLE-bench's folder layout: detection, and the validator's warning on an untouched placeholder file."""
import json
import shutil

import pandas as pd

from kaggle_kit.data.mlebench_layout import MLEBENCH_PLACEHOLDER, detect_mlebench_layout, placeholder_rle

from tests.conftest import run_tool

IDS = ["case1_day0_slice_0001", "case1_day0_slice_0002", "case2_day3_slice_0001"]
CLS = ["large_bowel", "small_bowel", "stomach"]


def _rows():
    return [(i, c) for i in IDS for c in CLS]


def _write(root, test_cols=("id", "class"), predicted=MLEBENCH_PLACEHOLDER):
    root.mkdir(parents=True, exist_ok=True)
    rows = _rows()
    test = pd.DataFrame(rows, columns=["id", "class"])
    if "segmentation" in test_cols:
        test["segmentation"] = ""
    test.to_csv(root / "test.csv", index=False)
    sub = pd.DataFrame(rows, columns=["id", "class"])
    sub["predicted"] = predicted
    sub.to_csv(root / "sample_submission.csv", index=False)
    return root


def test_placeholder_rle():
    assert placeholder_rle(["1 1 5 2"] * 4) == "1 1 5 2"
    assert placeholder_rle(["1 1 5 2", "1 1 5 2", ""]) is None
    assert placeholder_rle(["", ""]) is None and placeholder_rle([float("nan")] * 3) is None
    assert placeholder_rle(["1 1 5 2"]) is None  # one row proves nothing
    assert placeholder_rle(["3 4", "3 5"]) is None


def test_detect_mlebench_layout(tmp_path):
    info = detect_mlebench_layout(_write(tmp_path / "mle"))
    assert info["placeholder"] == "1 1 5 2" and info["n_rows"] == 9 and info["n_case_days"] == 2
    assert info["same_rows"] is True
    # the Kaggle layout (empty sample), a labelled test.csv, or no test.csv: not MLE-bench
    assert detect_mlebench_layout(_write(tmp_path / "kaggle", predicted="")) is None
    assert detect_mlebench_layout(_write(tmp_path / "lab", test_cols=("id", "class", "segmentation"))) is None
    (tmp_path / "mle" / "test.csv").unlink()
    assert detect_mlebench_layout(tmp_path / "mle") is None
    assert detect_mlebench_layout(tmp_path / "nowhere") is None


def test_validator_warns_on_a_placeholder_submission(synth_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str, keep_default_na=False)
    sample["predicted"] = MLEBENCH_PLACEHOLDER
    sample.to_csv(root / "sample_submission.csv", index=False)
    p = run_tool("validate_submission.py", root / "sample_submission.csv", "--data-root", root)
    assert "WARNING" in p.stderr and "placeholder" in p.stderr and "sample_submission.csv" in p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["placeholder"] == "1 1 5 2"
    assert detect_mlebench_layout(root)["same_rows"] is True
    # a real submission (here the truth itself) gets no warning
    truth = pd.read_csv(root / "test_truth.csv", dtype=str, keep_default_na=False)
    sub = sample[["id", "class"]].merge(truth, on=["id", "class"], how="left").fillna("")
    sub.rename(columns={"segmentation": "predicted"}).to_csv(tmp_path / "real.csv", index=False)
    p = run_tool("validate_submission.py", tmp_path / "real.csv", "--data-root", root)
    assert "WARNING" not in p.stderr and "placeholder" not in json.loads(p.stdout.strip().splitlines()[-1])


def test_run_all_detects_the_layout_without_training(tmp_path):
    from kaggle_kit.commands import run_all

    ra = vars(run_all)
    info, metric, line = ra["describe_layout"](_write(tmp_path / "mle"), None)
    assert info is not None and metric == "mlebench"
    assert "MLE-bench layout detected" in line and "'1 1 5 2'" in line and "9 (id, class) rows" in line
    assert ra["describe_layout"](tmp_path / "mle", "default")[1] == "default"  # --metric wins
    info, metric, line = ra["describe_layout"](_write(tmp_path / "kaggle", predicted=""), None)
    assert info is None and metric == "default" and "Kaggle" in line
    # the search YAML run_all writes carries the tuning metric
    tpl = tmp_path / "tpl.yaml"
    tpl.write_text("members: []\nthreshold: [0.5]\n")

    class _Store:
        def manifest(self, exp, split):
            return {"kind": "pixel"}

    ra["write_search"](tpl, tmp_path / "s.yaml", _Store(), tmp_path / "preds", "mlebench")
    import yaml

    assert yaml.safe_load((tmp_path / "s.yaml").read_text())["metric"] == "mlebench"
