"""Tuning for MLE-bench's grader and reporting both metrics: the exact re-runs of kaggle_kit.tune.metric_reruns
against the ensemble's own path (verify_setting)."""
import numpy as np
import pytest

from kaggle_kit.metric.scorer import MetricConfig
from kaggle_kit.tune.metric_reruns import markdown, rerun, search_metric, select_and_hold_out
from kaggle_kit.tune.evaluate import load_oof, verify_setting

from tests.conftest import fake_oof_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tiny synthetic cache (3 folds) and the OOF maps of two fake pixel members (noisy with stray blobs;
    smooth and shifted)."""
    return fake_oof_store(tmp_path_factory.mktemp("tune_mle"), data_seed=7, noise_seed=1, blobs=3,
                          smooth_noise=False, classifier=False)


def _ens(thr, w=(1.0, 1.0), metric="default"):
    return {"members": [{"exp": "sharp", "kind": "pixel", "weight": w[0]},
                        {"exp": "smooth", "kind": "pixel", "weight": w[1]}], "threshold": thr, "metric": metric}


def test_search_metric_is_the_target_or_its_surrogate():
    assert search_metric(MetricConfig.from_name("mlebench")).name == "3d_unit_cube"
    assert search_metric(MetricConfig.from_name("2d+empty_dice_one")).name == "2d+empty_dice_one"


def test_rerun_equals_the_ensemble_path(store):
    data = load_oof(store["cache"], store["preds"], ["sharp", "smooth"], [], 0.3)
    names = [cd.name for cd in data.case_days]
    half = names[::2]
    res = rerun({"a": (_ens(0.4), names), "b": (_ens(0.6, (1.0, 0.0)), half)}, store["cache"], store["preds"])
    for label, ens, cds in (("a", _ens(0.4), names), ("b", _ens(0.6, (1.0, 0.0)), half)):
        for m in ("default", "mlebench"):
            ref = verify_setting({**ens, "metric": m}, store["cache"], store["preds"], cds)
            assert res[label][m]["score"] == ref["score"], (label, m)
    assert res["a"]["mlebench"]["score"] != res["a"]["default"]["score"]


def test_select_and_hold_out(store):
    data = load_oof(store["cache"], store["preds"], ["sharp", "smooth"], [], 0.3)
    names = [cd.name for cd in data.case_days]
    folds = sorted({cd.fold for cd in data.case_days})
    fold_cds = {k: [cd.name for cd in data.case_days if cd.fold == k] for k in folds}
    cands = [("plain average", _ens(0.5)), ("threshold", _ens(0.3)), ("weights", _ens(0.3, (0.0, 1.0))),
             ("same as weights", _ens(0.3, (0.0, 1.0)))]
    fold_ens = [(k, _ens(0.3 + 0.1 * k), fold_cds[k]) for k in folds]
    both = select_and_hold_out(cands, fold_ens, names, store["cache"], store["preds"],
                               MetricConfig.from_name("mlebench"))
    steps = [r["step"] for r in both["candidates"]]
    assert steps == ["plain average", "threshold", "same as weights"]  # duplicates: the later label kept
    exact = {r["step"]: r["mlebench"] for r in both["candidates"]}
    assert both["chosen"] == max(exact, key=exact.get)
    for r, (_, ens) in zip(both["candidates"], [cands[0], cands[1], cands[3]]):
        assert r["mlebench"] == verify_setting({**ens, "metric": "mlebench"}, store["cache"], store["preds"],
                                               names)["score"]
    for h, (k, ens, cds) in zip(both["held_out"], fold_ens):
        assert h["fold"] == k and h["n_case_days"] == len(cds)
        for m in ("default", "mlebench"):
            assert h[m] == verify_setting({**ens, "metric": m}, store["cache"], store["preds"], cds)["score"]
    assert both["held_out_mean"]["mlebench"] == pytest.approx(np.mean([h["mlebench"] for h in both["held_out"]]))
    text = "\n".join(markdown(both))
    assert "| mean |" not in text and "**mean**" in text and "(chosen)" in text and "mlebench" in text
    # tuned for the default metric: no exact selection, the tuned (last) setting is kept
    d = select_and_hold_out(cands, fold_ens, names, store["cache"], store["preds"], MetricConfig())
    assert d["chosen"] == "same as weights" and d["candidates"] == [] and not d["selected_exactly"]
    assert d["ensemble"] == cands[-1][1] and d["held_out"] == both["held_out"]
    assert "candidates of the final choice" not in "\n".join(markdown(d))


def test_tune_oof_for_mlebench_end_to_end(store, tmp_path, capsys):
    """metric: mlebench in the search YAML: the tool runs, the YAML says mlebench, tools/ensemble.py's OOF score
    equals the exact in-sample target score, and the report shows the held-out folds under both metrics."""
    import json

    import yaml

    from kaggle_kit.post.ensemble import load_ensemble_config

    from tests.conftest import run_tool

    from kaggle_kit.commands import tune_oof as mod
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({"members": "auto", "threshold": [0.3, 0.5], "min_area_2d": [None, 4],
                                      "weights": {"step": 0.5}, "search": {"rounds": 1}, "metric": "mlebench"}))
    out = tmp_path / "tuned.yaml"
    rc = mod.main([str(search), "--data-root", str(store["data"]), "--cache", str(store["cache"]),
                   "--preds", str(store["preds"]), "--out", str(out), "--check-ensemble"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    res = json.loads(captured.out.strip().splitlines()[-1])
    assert res["metric"] == "3d_unit_cube" and res["target_metric"] == "mlebench" and res["skew"] == 0.0
    assert set(res["held_out_by_metric"]) == {"default", "mlebench"}
    assert load_ensemble_config(out).metric.hd_variant == "mlebench"
    p = run_tool("ensemble.py", out, "--data-root", store["data"], "--split", "oof", "--out", tmp_path / "oof.csv",
                 "--preds", store["preds"], "--cache", store["cache"])
    assert json.loads(p.stdout.strip().splitlines()[-1])["score"] == res["in_sample_target"]
    # the OOF CSV under MLE-bench's CSV grader (what run_all reports): the same number
    p = run_tool("score.py", "--truth", store["data"] / "train.csv", "--pred", tmp_path / "oof.csv", "--data-root",
                 store["data"], "--only-pred-case-days", "--metric", "mlebench")
    assert json.loads(p.stdout.strip().splitlines()[-1])["score"] == pytest.approx(res["in_sample_target"], abs=1e-12)
    md = (tmp_path / "tuned_report" / "report.md").read_text()
    assert "Held-out score under both metrics" in md and "| default | mlebench |" in md and "(chosen)" in md
