"""The exact re-runs of a tuning run in one pass (kaggle_kit.tune.metric_reruns.rerun): per-job metric lists,
worker threads, the order of the sums, the bound on case-days in flight, and tune_oof's merged pass against
the sequential path it replaces (each number re-computed by verify_setting, the ensemble's own path, one
mapping and one metric at a time)."""
import json
import threading
import time
from dataclasses import asdict

import numpy as np
import pytest

import kaggle_kit.tune.metric_reruns as mr
import kaggle_kit.tune.search as search_mod
from kaggle_kit.data.cache import Cache
from kaggle_kit.metric.scorer import MetricConfig
from kaggle_kit.tune.evaluate import load_oof, verify_setting
from kaggle_kit.tune.search import parse_search_space

from tests.conftest import fake_oof_store
from tests.tune.test_tune import SEARCH

MLE_HD_ONLY = {"hd_variant": "mlebench", "w_dice": 0.0, "w_hd": 1.0}


@pytest.fixture(scope="module")
def early(tmp_path_factory):
    """A store on which, tuned for mlebench's Hausdorff part alone (MLE_HD_ONLY), the exact choice keeps an
    earlier step than the tuned setting, without the fallback."""
    return fake_oof_store(tmp_path_factory.mktemp("early"), data_seed=5, noise_seed=1, blobs=4, smooth_noise=False,
                          classifier=True)


@pytest.fixture(scope="module")
def loses(tmp_path_factory):
    """A store on which the tuned pipeline loses to the plain average on the held-out folds (fallback_plain)."""
    return fake_oof_store(tmp_path_factory.mktemp("loses"), data_seed=11, noise_seed=0, blobs=0, smooth_noise=False,
                          classifier=True)


def _dump(x) -> str:  # Scorer results hold NaN (mlebench has no per-class Hausdorff): compare as JSON text
    return json.dumps(x, sort_keys=True)


def _ens(thr, w=(1.0, 1.0), **post):
    return {"members": [{"exp": "sharp", "kind": "pixel", "weight": w[0]},
                        {"exp": "smooth", "kind": "pixel", "weight": w[1]}], "threshold": thr, **post}


# ------------------------------------------------------------------------------------------- rerun
def test_rerun_with_per_job_metrics_equals_one_mapping_at_a_time(early):
    cache, preds = early["cache"], early["preds"]
    names = Cache(cache).case_days("train")
    uc = MetricConfig.from_name("3d_unit_cube")
    weighted = MetricConfig(hd_variant="mlebench", w_dice=0.25, w_hd=0.75)
    jobs = {"a": (_ens(0.4), names),  # the default list (METRICS)
            "a check": ({**_ens(0.4), "metric": "mlebench"}, names, [uc]),  # same mapping: fused once
            "b": (_ens(0.6, (1.0, 0.0), min_area_2d=4), names[1::2], ["2d+empty_dice_one", weighted]),
            "c": (_ens(0.5, (0.0, 1.0)), names[::-1][:3], ["default"])}
    ref = {}
    for label, (ens, cds, *ms) in jobs.items():
        for m in (ms[0] if ms else mr.METRICS):
            name, obj = (m.name, asdict(m)) if isinstance(m, MetricConfig) else (m, m)
            ref.setdefault(label, {})[name] = verify_setting({**ens, "metric": obj}, cache, preds,
                                                             [cd for cd in names if cd in cds])
    for w in (1, 2, 3):
        assert _dump(mr.rerun(jobs, cache, preds, workers=w)) == _dump(ref), w
    assert set(ref["b"]) == {"2d+empty_dice_one", "mlebench"} and set(ref["a check"]) == {"3d_unit_cube"}
    # `order`: case-days added in the order given, as verify_setting adds its list
    back = names[::-1]
    got = mr.rerun({"r": (_ens(0.4), back, [uc])}, cache, preds, workers=2, order=back)
    assert _dump(got["r"]["3d_unit_cube"]) == _dump(verify_setting({**_ens(0.4), "metric": "3d_unit_cube"}, cache,
                                                                   preds, back))
    with pytest.raises(ValueError, match="not in `order`"):
        mr.rerun({"r": (_ens(0.4), names)}, cache, preds, order=names[1:])
    with pytest.raises(KeyError, match="not in the cache"):
        mr.rerun({"r": (_ens(0.4), names + ["case99_day9"])}, cache, preds)
    with pytest.raises(ValueError, match="names a metric twice"):
        mr.rerun({"r": (_ens(0.4), names, ["3d", MetricConfig()])}, cache, preds)


def test_rerun_holds_at_most_two_case_days_per_worker_in_flight(early, monkeypatch):
    """With the Scorers slowed down, the worker threads would run ahead; case-days whose maps were read and
    whose bits were not yet added stay within 2 * workers, and the adds still come in the cache's order."""
    cache, preds = early["cache"], early["preds"]
    names = Cache(cache).case_days("train")
    lock, started, added, peak = threading.Lock(), set(), [], [0]
    read = mr.read_probmap

    def counting_read(root, exp, split, cd, *a, **k):
        with lock:
            started.add(cd)
            peak[0] = max(peak[0], len(started) - len(set(added)))
        return read(root, exp, split, cd, *a, **k)

    class SlowScorer(mr.Scorer):
        def add(self, cd, pred, truth):
            time.sleep(0.02)
            with lock:
                added.append(cd)
            return super().add(cd, pred, truth)

    monkeypatch.setattr(mr, "read_probmap", counting_read)
    monkeypatch.setattr(mr, "Scorer", SlowScorer)
    mr.rerun({"a": (_ens(0.4), names, ["default"])}, cache, preds, workers=2)
    assert added == names and len(names) > 4
    assert 1 <= peak[0] <= 4


# ------------------------------------------------------------------------------------------- tune_oof
def _tune(store, monkeypatch, metric, workers=2, force_fallback=False):
    """tune_oof with verify, capturing what it hands to select_and_hold_out (the candidates' and folds'
    mappings) and counting its own verify_setting runs; returns (result, captured, the OOF data, the space)."""
    seen = {}
    real = mr.select_and_hold_out

    def spy(*a, **k):
        seen["args"], seen["kw"] = a, k
        return real(*a, **k)

    monkeypatch.setattr(search_mod, "select_and_hold_out", spy)
    real_verify = search_mod.verify_setting
    seen["verify_calls"] = 0

    def count(*a, **k):
        seen["verify_calls"] += 1
        return real_verify(*a, **k)

    monkeypatch.setattr(search_mod, "verify_setting", count)
    if force_fallback:
        monkeypatch.setattr(search_mod, "tuning_loses_held_out", lambda rows: True)
    space = parse_search_space({**SEARCH, "metric": metric}, "t")
    data = load_oof(store["cache"], store["preds"], space.pixel, space.classifier, space.floor_thr)
    res = search_mod.tune_oof(space, data, workers=workers, log=lambda m: None)
    return res, seen, data, space


def _check_against_sequential(res, seen, data, space, store):
    """Every exact number of the summary, re-computed the sequential way: each fold's tuned mapping, each
    candidate and the written mapping run through verify_setting on their own, one metric at a time."""
    cache, preds = store["cache"], store["preds"]
    s, both = res["summary"], res["summary"]["metric_reruns"]
    cands, folds, names = seen["args"][:3]
    assert names == [cd.name for cd in data.case_days]
    for h, (k, ens, cds) in zip(both["held_out"], folds, strict=True):
        assert (h["fold"], h["n_case_days"]) == (k, len(cds))
        for m in mr.METRICS:
            assert h[m] == verify_setting({**ens, "metric": m}, cache, preds, cds)["score"], (k, m)
    for m in mr.METRICS:
        assert both["held_out_mean"][m] == float(np.mean([h[m] for h in both["held_out"]]))
        assert both["held_out_std"][m] == float(np.std([h[m] for h in both["held_out"]]))
    assert s["held_out_by_metric"] == both["held_out_mean"]
    target = space.target or space.metric
    if target.hd_variant == "mlebench":
        uniq = {}
        for label, ens in cands:  # identical mappings: the later label
            key = json.dumps({k: v for k, v in ens.items() if k != "metric"}, sort_keys=True)
            uniq.pop(key, None)
            uniq[key] = (label, ens)
        want = list(uniq.values())[-mr.MAX_CANDIDATES:]
        assert [r["step"] for r in both["candidates"]] == [label for label, _ in want]
        for r, (_, ens) in zip(both["candidates"], want):
            for m in mr.METRICS:
                assert r[m] == verify_setting({**ens, "metric": m}, cache, preds, names)["score"], (r["step"], m)
        exact = [r[target.name] for r in both["candidates"]]
        best = max(i for i, v in enumerate(exact) if v >= max(exact) - 1e-12)  # ties: the later step
        assert both["chosen"] == want[best][0] and s["in_sample_target"] == exact[best]
        chosen = want[best][1]
    else:
        assert both["candidates"] == [] and both["chosen"] == cands[-1][0]
        chosen = cands[-1][1]
    written = cands[0][1] if s["fallback_plain"] else chosen
    assert res["ensemble"] == written
    check = {**written, "metric": asdict(space.metric)} if space.target is not None else written
    in_sample = verify_setting(check, cache, preds, names)["score"]
    assert s["in_sample"] == in_sample and s["skew"] == abs(in_sample - s["in_sample_search"]) == 0.0
    assert res["timing"]["verify_s"] > 0


@pytest.mark.parametrize("case, metric, force_fallback", [
    ("early", "default", False),
    ("early", "default", True),  # fallback_plain: the plain average is written and checked
    ("early", "mlebench", False),
    ("early", MLE_HD_ONLY, False),  # the exact choice keeps an earlier step than the tuned setting
    ("loses", "mlebench", False),  # fallback_plain after the exact choice
])
def test_tune_oof_merged_pass_equals_the_sequential_path(case, metric, force_fallback, early, loses, monkeypatch):
    store = {"early": early, "loses": loses}[case]
    res, seen, data, space = _tune(store, monkeypatch, metric, force_fallback=force_fallback)
    _check_against_sequential(res, seen, data, space, store)
    assert seen["verify_calls"] == 0  # the written mapping was checked in the pass, no second read of the maps
    s, both = res["summary"], res["summary"]["metric_reruns"]
    if metric == MLE_HD_ONLY:  # what this case is here for
        assert both["chosen"] != both["candidates"][-1]["step"] and not s["fallback_plain"]
    if case == "loses":
        assert s["fallback_plain"] and both["selected_exactly"]
    assert s["fallback_plain"] is (force_fallback or case == "loses")


def test_tune_oof_same_with_one_or_two_workers(early, monkeypatch):
    one, _, _, _ = _tune(early, monkeypatch, "mlebench", workers=1)
    two, _, _, _ = _tune(early, monkeypatch, "mlebench", workers=2)
    assert _dump(one["summary"]) == _dump(two["summary"]) and one["ensemble"] == two["ensemble"]


def test_a_written_mapping_the_pass_did_not_check_is_verified_on_its_own(early, monkeypatch):
    """The pass checks every mapping the run may write; were one missed, the check runs it on its own
    (verify_setting) and the numbers stay the same."""
    ref, _, _, _ = _tune(early, monkeypatch, "mlebench")
    monkeypatch.setattr(search_mod, "exact_choices", lambda *a, **k: [])
    res, seen, _, _ = _tune(early, monkeypatch, "mlebench")
    assert seen["verify_calls"] == 1 and _dump(res["summary"]) == _dump(ref["summary"])
