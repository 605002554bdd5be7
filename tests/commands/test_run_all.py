"""The main job end to end (tools/run_all.py) on a small synthetic folder: the demo's code path."""
import json

import pandas as pd
import pytest

from tests.conftest import run_tool


@pytest.mark.slow
def test_run_all_one_family_small(tmp_path):
    work = tmp_path / "run"
    p = run_tool("run_all.py", "--work", work, "--train-cases", 4, "--test-cases", 1, "--size-scale", 0.25,
                 "--folds", 2, "--families", "seg25d")
    last = json.loads(p.stdout.strip().splitlines()[-1])  # the LAST line is the JSON summary
    assert set(last) >= {"oof", "tuned_oof", "test", "submission"}
    # the CPU preset's 2.5D member crops with the detector's boxes, so --families seg25d brings the detector
    seg = "seg25d_tiny_cpu_boxes"
    assert "train det_yolo" in p.stdout and p.stdout.index("train det_yolo") < p.stdout.index("train seg25d")
    assert list(last["oof"]) == [seg] and 0.0 <= last["oof"][seg] <= 1.0
    assert last["test"] is not None and 0.0 <= last["test"] <= 1.0  # synthetic data has test_truth.csv
    # the 2.5D aux head is reported as a gating source, with a ROC-AUC per class
    assert set(last["classifier_auc"][f"{seg}_aux"]) == {"large_bowel", "small_bowel", "stomach"}
    assert set(last["classifier_auc_z5"]) == set(last["classifier_auc"])
    sub = pd.read_csv(last["submission"], dtype=str, keep_default_na=False)
    sample = pd.read_csv(work / "data" / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert sub[["id", "class"]].equals(sample[["id", "class"]])
    # the notebook ran (the submission is its output) and agrees with tools/ensemble.py on the stored maps
    assert "notebook" in p.stdout and (work / "kaggle_kit_inference.executed.ipynb").is_file()
    assert last["notebook_failures"] == 0 and set(last["inference_seconds_per_case_day"]) >= {seg}
    assert abs(last["test"] - last["test_from_maps"]) < 0.02
    # a second run reuses every trained fold
    p2 = run_tool("run_all.py", "--work", work, "--train-cases", 4, "--test-cases", 1, "--size-scale", 0.25,
                  "--folds", 2, "--families", "seg25d")
    assert "trained already" in p2.stdout and "train seg25d" not in p2.stdout
