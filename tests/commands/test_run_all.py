"""The main job (``kk run`` = kaggle_kit.pipeline): presets, typed stage results read from the tools' summary files,
and the whole job on a small synthetic folder (the demo's code path)."""
import json

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, fake_oof_store, run_tool

#: the keys of kk run's final JSON line (make demo's last line): fixed, whatever the stages do inside
FINAL_KEYS = {"oof", "tuned_oof", "test", "test_from_maps", "submission", "baselines", "classifier_auc",
              "classifier_auc_z5", "detector_box_recall", "box_pad", "held_out", "held_out_plain_average_05",
              "held_out_single_members", "capped_outputs", "plain_average_05", "inference_seconds_per_case_day",
              "notebook_failures", "seconds", "tuned_oof_by_metric", "tuning_metric", "held_out_by_metric",
              "mlebench_layout"}


# ------------------------------------------------------------------------------------------------ presets
def test_shipped_presets_load_and_keep_the_demo_members():
    from kaggle_kit.pipeline import load_preset, preset_names

    assert {"tiny", "tiny_all", "gpu"} <= set(preset_names())
    tiny = load_preset("tiny")
    assert tiny.configs == ["det_yolo/tiny_cpu.yaml", "seg25d/tiny_cpu_boxes.yaml", "seg3d/tiny_cpu.yaml"]
    assert tiny.n_folds == 3
    assert load_preset("gpu").n_folds == 5 and len(load_preset("tiny_all").members) == 4
    for name in preset_names():
        p = load_preset(name)
        assert p.search.is_file() and all(m.path.is_file() and m.why for m in p.members)


@pytest.mark.parametrize("body, match", [
    ({"n_folds": 3, "search": "ensemble/search_default.yaml", "member": []}, "unknown key 'member'.*'members'"),
    ({"n_folds": 3, "search": "ensemble/search_default.yaml",
      "members": [{"config": "seg25d/tiny_cpu.yaml"}]}, r"members\[0\]: 'why' is required"),
    ({"n_folds": 3, "search": "ensemble/search_default.yaml",
      "members": [{"config": "seg25d/tiny_cpu.yaml", "why": "x", "epochs": 2}]}, "unknown key 'epochs'"),
    ({"n_folds": 3, "search": "ensemble/search_default.yaml",
      "members": [{"config": "seg25d/nosuch.yaml", "why": "x"}]}, r"members\[0\].config: 'seg25d/nosuch.yaml' is not"),
    ({"n_folds": 1, "search": "ensemble/search_default.yaml",
      "members": [{"config": "seg25d/tiny_cpu.yaml", "why": "x"}]}, "n_folds: expected an int >= 2"),
    ({"n_folds": 3, "members": [{"config": "seg25d/tiny_cpu.yaml", "why": "x"}]}, "missing key 'search'"),
])
def test_a_bad_preset_is_named(tmp_path, body, match):
    from kaggle_kit.config import ConfigError
    from kaggle_kit.pipeline import load_preset

    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=match) as e:
        load_preset(p)
    assert str(p) in str(e.value)


def test_unknown_preset_name_suggests(capsys):
    from kaggle_kit.pipeline import PresetError, load_preset

    with pytest.raises(PresetError, match="did you mean 'tiny'"):
        load_preset("tinny")


def test_run_all_presets_table_comes_from_the_yaml_files():
    from kaggle_kit.commands import run_all
    from kaggle_kit.pipeline import load_preset

    assert run_all.PRESETS["tiny"] == load_preset("tiny").configs


# ------------------------------------------------------------------------------------------------ summaries
def test_a_renamed_summary_key_fails_loudly(tmp_path):
    """A stage reads a tool's summary file into a dataclass: a key the tool no longer writes is an error naming
    the file and the key, not an n/a in the report."""
    from kaggle_kit.pipeline.results import ScoreSummary, StageError, TuneSummary, read_summary

    f = tmp_path / "score.json"
    f.write_text(json.dumps({"score": 0.5, "dice": 0.4}))
    assert read_summary(f, ScoreSummary, "kk score") == ScoreSummary(0.5)
    f.write_text(json.dumps({"total_score": 0.5}))
    with pytest.raises(StageError, match=r"score.json \(kk score\): no key 'score'"):
        read_summary(f, ScoreSummary, "kk score")
    with pytest.raises(StageError, match="wrote no summary"):
        read_summary(tmp_path / "none.json", TuneSummary, "kk tune")


@pytest.fixture(scope="module")
def oof_store(tmp_path_factory):
    return fake_oof_store(tmp_path_factory.mktemp("pipe_tune"), data_seed=3, noise_seed=0, blobs=3,
                          smooth_noise=True, classifier=False)


def test_tune_summary_file_holds_each_members_own_score(oof_store, tmp_path):
    """kk tune --summary-json has every key the pipeline reads (TuneSummary), and its per-member scores are the
    numbers the main job used to compute by re-scoring each member through a one-member YAML with kk ensemble
    (so dropping that duplicate changed no reported number)."""
    from kaggle_kit.pipeline.results import EnsembleSummary, TuneSummary, read_summary

    s = oof_store
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({"members": "auto", "threshold": [0.4, 0.5], "min_area_2d": [None, 4],
                                      "weights": {"step": 0.5}, "search": {"rounds": 1}}))
    summary = tmp_path / "tune.json"
    run_tool("tune_oof.py", search, "--data-root", s["data"], "--cache", s["cache"], "--pred-root", s["preds"],
             "--out", tmp_path / "tuned.yaml", "--summary-json", summary)
    ts = read_summary(summary, TuneSummary, "kk tune")
    assert set(ts.single_members) == {"sharp", "smooth"} and ts.held_out_mean is not None
    assert ts.target_metric is None  # present (null) for the default metric
    for exp, score in ts.single_members.items():
        one = tmp_path / f"single_{exp}.yaml"
        one.write_text(yaml.safe_dump({"members": [{"exp": exp, "kind": "pixel", "weight": 1.0}], "threshold": 0.5}))
        es = tmp_path / f"ens_{exp}.json"
        run_tool("ensemble.py", one, "--data-root", s["data"], "--split", "oof", "--out", tmp_path / f"{exp}.csv",
                 "--pred-root", s["preds"], "--cache", s["cache"], "--summary-json", es)
        assert read_summary(es, EnsembleSummary, "kk ensemble").metric["score"] == pytest.approx(score, abs=1e-9)


# ------------------------------------------------------------------------------------------------ the job
def _tiny_preset(tmp_path):
    """A preset of one fast 2.5D member (1 epoch at 32x32) without the detector."""
    cfg = tmp_path / "seg_fast.yaml"
    cfg.write_text(yaml.safe_dump({"_base_": str(ROOT / "configs/seg25d/tiny_cpu.yaml"), "data": {
        "size": [32, 32], "augment": "none"}, "train": {"epochs": 1, "batch_size": 32, "val_batch_size": 64,
                                                       "log_interval": 5}}))
    preset = tmp_path / "fast.yaml"
    preset.write_text(yaml.safe_dump({"n_folds": 2, "search": "ensemble/search_default.yaml",
                                      "members": [{"config": str(cfg), "why": "the fastest member that trains"}]}))
    return preset


def test_pipeline_stage_results_on_a_tiny_folder(tmp_path):
    """kk run with a one-member preset: every stage writes its typed result under WORK/pipeline/, the final
    JSON line has exactly the demo's keys, and the member's OOF score is the tuner's (reuse of trained folds:
    test_run_all_one_family_small)."""
    work = tmp_path / "run"
    args = ["--work", work, "--preset", _tiny_preset(tmp_path), "--train-cases", 3, "--test-cases", 1,
            "--size-scale", 0.25]
    p = run_tool("run_all.py", *args)
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(last) == FINAL_KEYS
    exp = "seg25d_seg_fast"
    stages = {f.stem: json.loads(f.read_text()) for f in (work / "pipeline").glob("*.json")}
    assert {"data", "members", "scores", "tune", "submission", "result"} <= set(stages)
    assert stages["data"]["n_folds"] == 2 and stages["data"]["tuning_metric"] == "default"
    assert stages["members"] == [{"exp": exp, "family": "seg25d", "config": stages["members"][0]["config"],
                                  "trained_folds": [0, 1], "reused_folds": []}]
    tune = json.loads((work / "pipeline" / "tools" / "tune.json").read_text())  # what kk tune wrote
    assert last["oof"] == tune["single_members"] == stages["tune"]["summary"]["single_members"]
    assert last["held_out"] == tune["held_out_mean"] and last["plain_average_05"] == tune["plain_average_05"]
    assert "score " + exp not in p.stdout  # no re-scoring of members outside the tuner
    assert last["tuned_oof"] == stages["tune"]["tuned_oof"]
    assert last["test"] == json.loads((work / "pipeline/tools/score_submission.json").read_text())["score"]
    assert set(last["classifier_auc"]) == {f"{exp}_aux"}  # the aux head as a gating source
    assert last["notebook_failures"] == 0 and stages["submission"]["notebook"]["mode"] == "test"
    sub = pd.read_csv(last["submission"], dtype=str, keep_default_na=False)
    sample = pd.read_csv(work / "data" / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert sub[["id", "class"]].equals(sample[["id", "class"]])
    print(p.stdout[p.stdout.index("=== kaggle_kit main job"):])  # the report, for a failing run's log


@pytest.mark.slow
def test_run_all_one_family_small(tmp_path):
    """The CPU preset's own members (the 2.5D member cropped to the detector's boxes)."""
    work = tmp_path / "run"
    p = run_tool("run_all.py", "--work", work, "--train-cases", 4, "--test-cases", 1, "--size-scale", 0.25,
                 "--n-folds", 2, "--families", "seg25d")
    last = json.loads(p.stdout.strip().splitlines()[-1])  # the LAST line is the JSON summary
    assert set(last) == FINAL_KEYS
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
    # the notebook ran (the submission is its output) and agrees with kk ensemble on the stored maps
    assert "notebook" in p.stdout and (work / "kaggle_kit_inference.executed.ipynb").is_file()
    assert last["notebook_failures"] == 0 and set(last["inference_seconds_per_case_day"]) >= {seg}
    assert abs(last["test"] - last["test_from_maps"]) < 0.02
    # a second run reuses every trained fold, and says so in its stage result (the old --folds still parses)
    p2 = run_tool("run_all.py", "--work", work, "--train-cases", 4, "--test-cases", 1, "--size-scale", 0.25,
                  "--folds", 2, "--families", "seg25d")
    assert "trained already" in p2.stdout and "train seg25d" not in p2.stdout
    assert {m["exp"]: m["reused_folds"] for m in json.loads((work / "pipeline" / "members.json").read_text())} == {
        "det_tiny_cpu": [0, 1], seg: [0, 1]}
