"""OOF tuning: search-space parsing, the exactness of the search's scores, the tool end to end."""
import json
import random

import numpy as np
import pytest
import yaml

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.post.ensemble import load_ensemble_config, parse_ensemble_config
from kaggle_kit.tune.search import (
    ClassParams,
    Evaluator,
    GlobalParams,
    SearchError,
    load_oof,
    parse_search_space,
    setting_keys,
    setting_to_ensemble,
    simplex_grid,
    verify_setting,
)

from tests.conftest import ROOT, fake_oof_store, run_tool
from tests.post.step_values import random_value

SEARCH = {
    "members": [{"exp": "sharp", "kind": "pixel"}, {"exp": "smooth", "kind": "pixel"},
                {"exp": "cls", "kind": "classifier"}],
    "weights": {"step": 0.25, "refine_step": 0.125},
    "threshold": [0.3, 0.4, 0.5, 0.6],
    "gating": {"prob": [None, 0.3, 0.5], "min_pixels": [None, 5], "z_window": [1, 3]},
    "truncation": {"tail_margin": [None, 1], "tail_prob": [0.4]},
    "min_area_2d": [None, 4, 12],
    "min_relative_volume_3d": [0, 0.1, 0.3],
    "z_smoothing": [False, True],
    "search": {"rounds": 2},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tiny synthetic cache (8 case-days, 3 folds) and the OOF maps of three fake members: ``sharp``
    (the truth blurred a little, noisy, with false-positive blobs), ``smooth`` (blurred more, shifted by a
    pixel, no false positives) and ``cls`` (a slice classifier: blurred presence + noise)."""
    return fake_oof_store(tmp_path_factory.mktemp("tune"), data_seed=5, noise_seed=0, blobs=4, smooth_noise=True,
                          classifier=True)


@pytest.fixture(scope="module")
def tight_store(tmp_path_factory):
    """As ``store``, but the ``sharp`` member is zeroed outside each class's truth box grown by 2 voxels (no
    noise there): the tuner's crops are then much smaller than the volumes, so a step that sets voxels outside
    its crop changes the score (with noise everywhere, every crop is the whole volume)."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.io.probmaps import ProbMapStore

    st = fake_oof_store(tmp_path_factory.mktemp("tune_tight"), data_seed=5, noise_seed=1, blobs=0,
                        smooth_noise=False, classifier=True)
    cache, maps = Cache(st["cache"]), ProbMapStore(st["preds"])
    index = cache.index("train")
    for cd in cache.case_days("train"):
        truth = np.asarray(cache.mask("train", cd))
        slices = index[index.case_day == cd].sort_values("z")["slice"].tolist()
        sharp = maps.read("sharp", "oof", cd).astype(np.float32) / 255
        for c in range(len(CLASSES)):
            keep = np.zeros(truth.shape, bool)
            on = ((truth >> c) & 1).astype(bool)
            if on.any():
                (z0, z1), (y0, y1), (x0, x1) = ((int(a[0]), int(a[-1])) for a in
                                                (np.flatnonzero(on.any(ax)) for ax in ((1, 2), (0, 2), (0, 1))))
                keep[max(z0 - 1, 0):z1 + 2, max(y0 - 2, 0):y1 + 3, max(x0 - 2, 0):x1 + 3] = True
            sharp[:, c][~keep] = 0
        maps.write("sharp", "oof", cd, sharp, slices)
    return st


# ------------------------------------------------------------------------------------------ space
@pytest.mark.parametrize("patch, msg", [
    ({"threshold": [0.5, 1.0]}, r"threshold\[1\]: expected a threshold strictly in \(0, 1\)"),
    ({"treshold": [0.5]}, r"unknown key 'treshold' \(did you mean 'threshold'\?\)"),
    ({"threshold": {"stomach": [0.5]}}, r"missing class\(es\) \['large_bowel', 'small_bowel'\]"),
    ({"gating": {"prob": ["high"]}}, r"gating.prob\[0\]: expected a number"),
    ({"min_area_2d": [-1]}, r"min_area_2d\[0\]: expected an integer >= 0"),
    ({"connectivity": [6]}, r"connectivity\[0\]: expected 4 or 8"),
    ({"weights": {"step": 0.3}}, r"weights.step: expected a step 1/n"),
    ({"members": []}, "members: expected a non-empty list"),
    ({"members": [{"exp": "c", "kind": "classifier"}]}, "at least one member of kind 'pixel'"),
    ({"members": "auto"}, "'auto' needs the experiments"),
    ({"metric": "3d+nope"}, "metric: unknown metric name part 'nope'"),
    ({"search": {"rounds": 0}}, r"search.rounds: expected an integer >= 1"),
    ({"gating": {"z_window": [1, 4]}}, r"gating.z_window\[1\]: expected an odd integer >= 1"),
    ({"search": {"per_class": False}, "threshold": {"large_bowel": [0.4], "small_bowel": [0.5], "stomach": [0.5]}},
     r"per_class is false, but \['threshold'\] have per-class candidate lists"),
])
def test_search_space_errors(patch, msg):
    with pytest.raises(SearchError, match=msg):
        parse_search_space({**SEARCH, **patch}, "s")


def test_search_space_auto_members_and_defaults():
    sp = parse_search_space({"members": "auto"}, "s", available={"b": "pixel", "a": "pixel", "c": "classifier"})
    assert sp.pixel == ["a", "b"] and sp.classifier == ["c"]
    assert sp.options["threshold"] == ([0.5],) * 3 and sp.floor_thr == 0.5
    default = yaml.safe_load((ROOT / "configs" / "ensemble" / "search_default.yaml").read_text())
    sp = parse_search_space(default, "default", available={"a": "pixel", "b": "pixel", "c": "classifier"})
    assert sp.floor_thr == 0.25 and sp.nested and sp.later_rounds == "neighbours"


def test_simplex_grid():
    g = simplex_grid(3, 0.25)
    assert len(g) == 15 and all(abs(sum(w) - 1) < 1e-12 for w in g)
    assert (1.0, 0.0, 0.0) in g and simplex_grid(1, 0.1) == [(1.0,)]


def test_candidates_and_choice():
    from kaggle_kit.tune.search import _pick, _weight_candidates, candidate_values

    assert candidate_values(0.5, [0.3, 0.4, 0.5, 0.6], full=True) == [0.5, 0.3, 0.4, 0.6]
    assert candidate_values(0.4, [0.3, 0.4, 0.5, 0.6], full=False) == [0.4, 0.3, 0.5]
    assert candidate_values(None, [None, 10, 25], full=False) == [None, 10]
    assert candidate_values(0.45, [0.3, 0.5], full=False) == [0.45, 0.3, 0.5]  # off-list start
    assert _pick([0.5, 0.50001, 0.4], min_gain=1e-4) == 0  # a gain below min_gain keeps the current value
    assert _pick([0.5, 0.6, 0.6], min_gain=1e-4) == 1  # exact ties: the earlier candidate
    moves = _weight_candidates((0.5, 0.5, 0.0), 0.25, 0.1, 100, first=False)
    assert moves[0] == (0.5, 0.5, 0.0) and (0.4, 0.6, 0.0) in moves and (0.5, 0.4, 0.1) in moves
    assert all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in moves)
    assert len(_weight_candidates((1.0,) * 6, 0.1, 0.05, 100, first=True)) == 6 * 11  # lines, not 3003 points


# ------------------------------------------------------------------------------------- exactness
def _random_setting(rng: random.Random, all_on: bool = False):
    """A setting with a random value of EVERY number of kaggle_kit.post.steps.PARAMS, drawn by its declared
    kind (a step declared tomorrow is exercised here the day it is declared); ``all_on``: none neutral."""
    from kaggle_kit.post.steps import PARAMS

    def draw(p):
        return random_value(p, rng, lowest_threshold=0.2, active=all_on)

    cps = tuple(ClassParams(weights=(rng.choice([0.0, 0.3, 1.0]), rng.choice([0.2, 1.0])),
                            classifier_weights=(1.0,), **{p.name: draw(p) for p in PARAMS if p.per_class})
                for _ in CLASSES)
    return cps, GlobalParams(**{p.name: draw(p) for p in PARAMS if not p.per_class})


def _exact(store, sp, data, settings) -> None:
    ev = Evaluator(data, sp.metric, workers=2)
    predicted = 0
    for setting in settings:
        mine = ev.score(setting_keys(setting), np.arange(len(data.case_days)), exact=True)
        ens = setting_to_ensemble(sp, setting)
        parse_ensemble_config(ens)
        ref = verify_setting(ens, store["cache"], store["preds"])
        assert mine == ref["score"], setting
        predicted += ref["hausdorff"] < 1.0
    assert 2 * predicted >= len(settings)  # most settings predict something: the comparison is not of empties


@pytest.mark.parametrize("metric", ["default", "2d+empty_dice_one", "3d_unit_cube"])
def test_search_scores_equal_the_ensemble_path(store, metric):
    """Per-class crops + memoised statistics give bit for bit the score of fuse_case_day + Scorer, with every
    post-processing number drawn at random by its kind: one setting with every step on, then random
    combinations (each number neutral a third of the time)."""
    sp = parse_search_space({**SEARCH, "metric": metric}, "s")
    data = load_oof(store["cache"], store["preds"], sp.pixel, sp.classifier, 0.2)
    rng = random.Random(metric)
    _exact(store, sp, data, [_random_setting(rng, all_on=True)] + [_random_setting(rng) for _ in range(4)])


def test_search_scores_equal_the_ensemble_path_on_tight_crops(tight_store):
    """The same on maps whose crops are smaller than the volumes (a step breaking the crop rule fails here)."""
    sp = parse_search_space(SEARCH, "s")
    data = load_oof(tight_store["cache"], tight_store["preds"], sp.pixel, sp.classifier, 0.2)
    full = sum(np.prod(cd.shape) for cd in data.case_days) * len(CLASSES)
    from kaggle_kit.tune.evaluate import whole_volumes

    assert whole_volumes() or sum(cr.size for cd in data.case_days for cr in cd.crops if cr) < full / 3
    rng = random.Random(11)
    _exact(tight_store, sp, data, [_random_setting(rng, all_on=True)] + [_random_setting(rng) for _ in range(5)])


def test_search_scores_equal_the_ensemble_path_where_presence_decides(store, tight_store):
    """Exactness where presence per volume clears classes: presence numbers near the members' volume peaks
    (the random draws rarely reach them), with and without the classifier's. Each setting is checked against
    the ensemble path, and the step must change the score of some settings (the comparison is not of a no-op)."""
    import dataclasses

    for st in (store, tight_store):
        sp = parse_search_space(SEARCH, "s")
        data = load_oof(st["cache"], st["preds"], sp.pixel, sp.classifier, 0.2)
        ev = Evaluator(data, sp.metric, workers=2)
        rng = random.Random(5)
        settings, changed = [], 0
        for _ in range(6):
            cps, gp = _random_setting(rng)
            cps = tuple(dataclasses.replace(cp, presence_prob=rng.choice([0.55, 0.65, 0.75, 0.85, 0.95]),
                                            presence_cls_prob=rng.choice([0.0, 0.0, 0.9, 0.97]))
                        for cp in cps)
            off = tuple(dataclasses.replace(cp, presence_prob=0.0, presence_cls_prob=0.0) for cp in cps)
            idx = np.arange(len(data.case_days))
            changed += ev.score(setting_keys((cps, gp)), idx) != ev.score(setting_keys((off, gp)), idx)
            settings.append((cps, gp))
        _exact(st, sp, data, settings)
        assert changed >= 2


def test_uncropped_evaluation_is_exact_too(store, monkeypatch):
    """A step declaring crop_safe=False makes the tuner evaluate whole volumes; that path is exact as well."""
    import dataclasses

    from kaggle_kit.tune import evaluate

    monkeypatch.setattr(evaluate, "_STEPS", evaluate._STEPS[:-1] + (
        dataclasses.replace(evaluate._STEPS[-1], crop_safe=False),))
    sp = parse_search_space(SEARCH, "s")
    data = load_oof(store["cache"], store["preds"], sp.pixel, sp.classifier, 0.2)
    assert all(cr.pix().shape[1:] == (d, 1, h, w) for cd in data.case_days for cr in cd.crops
               for d, h, w in [cd.shape])
    rng = random.Random(7)
    _exact(store, sp, data, [_random_setting(rng, all_on=True), _random_setting(rng)])


# ------------------------------------------------------------------------------------------- tool
def _tool_main():
    from kaggle_kit.commands.tune_oof import main

    return main


def test_tune_oof_end_to_end(store, tmp_path, capsys):
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({**SEARCH, "members": "auto"}))
    out = tmp_path / "tuned.yaml"
    rc = _tool_main()([str(search), "--data-root", str(store["data"]), "--cache", str(store["cache"]),
                       "--preds", str(store["preds"]), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    res = json.loads(captured.out.strip().splitlines()[-1])
    for key in ("in_sample", "held_out_mean", "held_out_std", "best_single_member", "plain_average_05",
                "members_kept"):
        assert key in res
    # coordinate ascent starts at the plain average and its first sweep holds every single member
    assert res["in_sample"] >= res["plain_average_05"]
    assert all(res["in_sample"] >= v for v in res["single_members"].values())
    assert res["skew"] == 0.0
    report = tmp_path / "tuned_report"
    tuning = json.loads((report / "tuning.json").read_text())
    assert sorted(f["fold"] for f in tuning["folds"]) == [0, 1, 2]
    assert all(0 <= f["held_out"] <= 1 for f in tuning["folds"])
    for png in ("thresholds.png", "weights.png", "folds.png", "steps.png", "sweeps.png"):
        assert (report / png).stat().st_size > 1000
    assert "held-out" in (report / "report.md").read_text()
    # the stray blobs of the fake 'sharp' member make the new step pay: the exactness check below runs with it on
    assert yaml.safe_load(out.read_text()).get("min_relative_volume_3d"), out.read_text()
    cfg = load_ensemble_config(out)  # the ensemble's own parser
    assert [m.exp for m in cfg.members] == res["members_kept"]
    # train/serve skew: tools/ensemble.py on the OOF split prints the tuner's in-sample score
    p = run_tool("ensemble.py", out, "--data-root", store["data"], "--split", "oof", "--out", tmp_path / "oof.csv",
                 "--preds", store["preds"], "--cache", store["cache"])
    assert json.loads(p.stdout.strip().splitlines()[-1])["score"] == res["in_sample"]


def test_tune_oof_bad_input(store, tmp_path, capsys):
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({**SEARCH, "members": [{"exp": "nope", "kind": "pixel"}]}))
    rc = _tool_main()([str(search), "--cache", str(store["cache"]), "--preds", str(store["preds"]),
                       "--out", str(tmp_path / "t.yaml")])
    assert rc == 2 and "nope" in capsys.readouterr().err
    assert not (tmp_path / "t.yaml").exists()


def test_numbers_shared_across_classes(store):
    """``per_class: false``: one value of every number for all classes (fewer choices for small OOF sets)."""
    from kaggle_kit.tune.search import tune_oof

    sp = parse_search_space({**SEARCH, "search": {"rounds": 2, "per_class": False}}, "s")
    data = load_oof(store["cache"], store["preds"], sp.pixel, sp.classifier, sp.floor_thr)
    res = tune_oof(sp, data, workers=2, log=lambda _: None)
    ens = res["ensemble"]
    assert not isinstance(ens["threshold"], dict)
    assert all(not isinstance(m["weight"], dict) for m in ens["members"])
    assert res["summary"]["skew"] == 0.0
    assert res["summary"]["in_sample"] >= res["summary"]["plain_average_05"]


# ------------------------------------------------------------------------------------- single source
def test_step_list_is_the_single_source():
    """The ensemble parser, the search space, the settings, the class key and the tuned YAML all take their
    numbers from kaggle_kit.post.steps: same names, same YAML paths, one key element per step."""
    from dataclasses import fields

    from kaggle_kit.post.ensemble import allowed_keys as ensemble_keys
    from kaggle_kit.post.postprocess import PostParams
    from kaggle_kit.post.steps import PARAMS, STEPS, yaml_layout
    from kaggle_kit.tune.evaluate import LEVELS, class_key
    from kaggle_kit.tune.search import _STAGES, STEP_GROUPS
    from kaggle_kit.tune.space import allowed_keys as search_keys

    names = [p.name for p in PARAMS]
    top = {p.path[0] for p in PARAMS}
    assert ensemble_keys() - {"members", "metric", "classes"} == top
    assert search_keys() - {"members", "weights", "classifier_weights", "metric", "search"} == top
    assert yaml_layout() == {"": top, "gating": {"prob", "min_pixels", "z_window"},
                             "truncation": {"first_k", "last_k", "tail_margin", "tail_prob"},
                             "presence": {"prob", "cls_prob"}}
    sp = parse_search_space(SEARCH, "s")
    assert list(sp.options) + list(sp.globals_) == [p.name for p in PARAMS if p.per_class] + \
        [p.name for p in PARAMS if not p.per_class]
    assert [f.name for f in fields(ClassParams)][2:] == [p.name for p in PARAMS if p.per_class]
    assert [f.name for f in fields(GlobalParams)] == [p.name for p in PARAMS if not p.per_class]
    assert list(PostParams(threshold=(0.5,) * 3).values) == names
    assert [s for s in _STAGES if s not in ("weights", "classifier_weights")] == names
    assert sorted(n for _, cf, gf in STEP_GROUPS for n in cf + gf) == sorted(names + ["weights", "classifier_weights"])
    key = class_key(ClassParams(weights=(1.0, 1.0)), GlobalParams())
    assert len(key) == len(STEPS) + 1 == LEVELS[-1] and key[2:] == (None,) * (len(STEPS) - 1)  # all neutral
    for s in STEPS:  # a kernel and its numpy twin, named as the house does
        assert s.twin.__name__ == s.kernel.__name__ + "_numpy"


def test_every_number_round_trips_through_the_tuned_yaml():
    """A setting with every number off its neutral value -> setting_to_ensemble -> the ensemble parser gives
    back the same numbers (each written under its declared path, read under the same)."""
    from kaggle_kit.post.steps import PARAMS

    sp = parse_search_space(SEARCH, "s")
    rng = random.Random(3)  # every number drawn by its kind, none neutral (a new step is covered as declared)
    cps = tuple(ClassParams(weights=(1.0, 0.5), classifier_weights=(1.0,),
                            **{p.name: random_value(p, rng, active=True) for p in PARAMS if p.per_class})
                for _ in CLASSES)
    glob = {p.name: random_value(p, rng, active=True) for p in PARAMS if not p.per_class}
    ens = setting_to_ensemble(sp, (cps, GlobalParams(**glob)))
    params = parse_ensemble_config(ens).params
    for p in PARAMS:
        want = tuple(getattr(cp, p.name) for cp in cps) if p.per_class else glob[p.name]
        assert getattr(params, p.name) == want, p.name


def test_member_ablation_tool(store, tmp_path, capsys):
    """tools/ablate_members.py: 'all' is tools/tune_oof.py's own nested held-out score on every member; each
    'without X' variant tunes the others only (X never kept) and equals tune_oof.py run on that member list;
    the marginal contribution is the difference."""

    from kaggle_kit.commands import ablate_members

    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({**SEARCH, "members": "auto"}))
    out = tmp_path / "ablation.json"
    rc = ablate_members.main([str(search), "--cache", str(store["cache"]), "--preds", str(store["preds"]),
                              "--out", str(out)])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and json.loads(out.read_text()) == res
    assert set(res["variants"]) == {"all", "without sharp", "without smooth", "without cls"}
    for name, row in res["variants"].items():
        if name != "all":
            assert name.removeprefix("without ") not in row["members_kept"]
    # 'all' and 'without smooth' against the tuning tool itself, run on the same member lists
    for name, members in (("all", "auto"), ("without smooth", [m for m in SEARCH["members"] if m["exp"] != "smooth"])):
        search.write_text(yaml.safe_dump({**SEARCH, "members": members}))
        rc = _tool_main()([str(search), "--cache", str(store["cache"]), "--preds", str(store["preds"]),
                           "--out", str(tmp_path / "t.yaml"), "--no-verify"])
        want = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert rc == 0 and res["variants"][name]["held_out_mean"] == want["held_out_mean"]
        assert res["variants"][name]["members_kept"] == want["members_kept"]
    v = res["variants"]
    assert res["marginal"]["smooth"] == v["all"]["held_out_mean"] - v["without smooth"]["held_out_mean"]


def test_fallback_to_plain_when_tuning_loses_held_out(store, tmp_path):
    """The rule by hand, then the tuner both ways on one store: with fallback_plain the written ensemble is the
    plain average exactly when the nested held-out fold mean of the tuned pipeline is below the plain
    average's; without it, always the tuned pipeline."""
    from kaggle_kit.tune.search import tune_oof, tuning_loses_held_out

    rows = [{"held_out": 0.70, "plain_average_05": 0.72}, {"held_out": 0.80, "plain_average_05": 0.77}]
    assert tuning_loses_held_out(rows[:1]) and not tuning_loses_held_out(rows[1:])
    assert tuning_loses_held_out([rows[0], {"held_out": 0.75, "plain_average_05": 0.74}])  # means 0.725 < 0.73
    assert not tuning_loses_held_out([])  # not nested: nothing held out, no fallback
    space_on = parse_search_space(SEARCH, "t")
    data = load_oof(store["cache"], store["preds"], space_on.pixel, space_on.classifier, space_on.floor_thr)
    res_off = tune_oof(parse_search_space({**SEARCH, "search": {"rounds": 2, "fallback_plain": False}}, "t"), data,
                       verify=False, log=lambda m: None)
    res_on = tune_oof(space_on, data, verify=False, log=lambda m: None)
    loses = tuning_loses_held_out(res_on["folds"])
    assert res_on["summary"]["fallback_plain"] is loses and res_off["summary"]["fallback_plain"] is False
    assert (res_on["ensemble"] == res_off["ensemble"]) is (not loses)
    if loses:
        assert res_on["summary"]["in_sample"] == res_on["summary"]["plain_average_05"]
    with pytest.raises(SearchError, match="fallback_plain: expected true/false"):
        parse_search_space({**SEARCH, "search": {"fallback_plain": "yes"}}, "t")


def test_fallback_writes_the_plain_average(store, monkeypatch):
    """Forced fallback: the written ensemble scores exactly the plain average @0.5 and keeps every step off."""
    import kaggle_kit.tune.search as search_mod

    monkeypatch.setattr(search_mod, "tuning_loses_held_out", lambda rows: True)
    space = parse_search_space(SEARCH, "t")
    data = load_oof(store["cache"], store["preds"], space.pixel, space.classifier, space.floor_thr)
    res = search_mod.tune_oof(space, data, verify=False, log=lambda m: None)
    s, ens = res["summary"], res["ensemble"]
    assert s["fallback_plain"] is True and s["in_sample"] == s["plain_average_05"]
    assert ens["threshold"] == 0.5 and not ens.get("min_area_2d") and not ens.get("min_relative_volume_3d")
    assert [m["exp"] for m in ens["members"] if m["kind"] == "pixel"] == ["sharp", "smooth"]


# ------------------------------------------------------------------------------- probability ceilings
def test_probability_ceilings_against_brute_force():
    """Each member's highest OOF value per (fold, class) with truth, from the cropped OOFData, equals the maximum
    over the whole maps; a ceiling under the crop floor is None; capped_outputs lists exactly the rows below a
    candidate threshold, and a fold whose truth lacks the class gives no row."""
    from kaggle_kit.tune.evaluate import OOFData, capped_outputs, probability_ceilings

    rng = np.random.default_rng(3)
    items, full = [], []
    for i, (d, h, w) in enumerate([(5, 9, 11), (4, 7, 13), (6, 10, 8), (3, 12, 9), (7, 5, 6)]):
        fold = i % 2
        truth = (rng.random((d, h, w)) < 0.3).astype(np.uint8) | ((rng.random((d, h, w)) < 0.3).astype(np.uint8) << 1)
        if fold == 0:
            truth |= (rng.random((d, h, w)) < 0.3).astype(np.uint8) << 2  # stomach only in fold 0's truth
        pix = rng.integers(0, 256, (2, d, 3, h, w)).astype(np.uint8)
        if fold == 1:
            pix[1, :, 1] = np.minimum(pix[1, :, 1], 140)  # member 1, fold 1, small bowel: capped at 0.549
        else:
            pix[0, :, 0] = np.minimum(pix[0, :, 0], 50)  # member 0, fold 0, large bowel: under the 0.3 floor
        items.append((f"case{i}_day0", fold, truth, pix, None))
        full.append((fold, truth, pix))
    data = OOFData.from_arrays(items, ["a", "b"], floor_thr=0.3)
    rows = probability_ceilings(data)
    lo = 77  # the smallest uint8 value >= 0.3 * 255
    expect = []
    for m, name in enumerate("ab"):
        for fold in (0, 1):
            for c, cls in enumerate(CLASSES):
                parts = [(t, p) for f, t, p in full if f == fold]
                n_true = sum(int(((t >> c) & 1).sum()) for t, _ in parts)
                if not n_true:
                    continue
                top = max(int(p[m, :, c].max()) for _, p in parts)
                expect.append({"member": name, "fold": fold, "class": cls, "truth_voxels": n_true,
                               "ceiling": round(top / 255, 4) if top >= lo else None})
    key = lambda r: (r["member"], r["fold"], r["class"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(expect, key=key)
    assert not any(r["class"] == "stomach" and r["fold"] == 1 for r in rows)
    capped = capped_outputs(rows, {c: [0.3, 0.5, 0.6] for c in CLASSES})
    assert [(r["member"], r["fold"], r["class"], r["above"]) for r in capped] == [
        ("a", 0, "large_bowel", [0.3, 0.5, 0.6]), ("b", 1, "small_bowel", [0.6])]
    assert capped[1]["ceiling"] == round(140 / 255, 4)


def test_tune_oof_reports_a_capped_output(store, tmp_path, capsys):
    """A member whose OOF maps on one fold never exceed 0.4: tools/tune_oof.py warns naming the member, fold and
    classes, lists them in its JSON line and marks them in the report. (The fake ``smooth`` member blurs the thin
    small bowel below 0.6 on a fold, a real cap the report may list too.)"""
    import shutil

    from kaggle_kit.data.cache import Cache
    from kaggle_kit.io.probmaps import ProbMapStore

    preds = tmp_path / "preds"
    shutil.copytree(store["preds"], preds)
    cache = Cache(store["cache"])
    fold_of = cache.fold_of_case()
    index = cache.index("train")
    st = ProbMapStore(preds)
    st.write_manifest("capped", "oof", family="fake", kind="pixel", classes=CLASSES, folds=[0, 1, 2])
    present = set()  # the classes fold 2's truth holds
    for cd, g in index.groupby("case_day"):
        g = g.sort_values("z")
        d, h, w = len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0])
        m = st.read("smooth", "oof", cd, (d, 3, h, w), g["slice"].tolist()).astype(np.float32) / 255
        if fold_of[int(g["case"].iloc[0])] == 2:
            m = np.minimum(m, 0.4)
            present |= {c for k, c in enumerate(CLASSES) if ((np.asarray(cache.mask("train", cd)) >> k) & 1).any()}
        st.write("capped", "oof", cd, m, g["slice"].tolist())
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({**SEARCH, "members": "auto", "search": {"rounds": 1, "nested": False}}))
    rc = _tool_main()([str(search), "--cache", str(store["cache"]), "--preds", str(preds),
                       "--out", str(tmp_path / "tuned.yaml")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    res = json.loads(captured.out.strip().splitlines()[-1])
    assert present
    assert [(r["fold"], r["class"], r["above"]) for r in res["capped_outputs"] if r["member"] == "capped"] == [
        (2, c, [0.5, 0.6]) for c in CLASSES if c in present]
    c = next(c for c in CLASSES if c in present)
    assert f"warning: capped, fold 2, {c}: its OOF probability never exceeds 0.400" in captured.err
    md = (tmp_path / "tuned_report" / "report.md").read_text()
    assert "## Probability ceilings" in md and f"| capped | 2 | {c} |" in md and "**0.400**" in md


# --------------------------------------------------------------------------------------------- defaults
def test_code_defaults_equal_the_shipped_search_defaults():
    """A search YAML that omits a setting of the search itself gets what configs/ensemble/search_default.yaml
    ships (the code's defaults and the shipped file cannot drift apart: the min_gain of one was 1e-5, of the
    other 1e-3). The candidate lists of the steps are not defaults but the search space: left out, a step
    stays off."""
    from dataclasses import MISSING, fields

    from kaggle_kit.tune.space import SearchSpace

    shipped = yaml.safe_load((ROOT / "configs" / "ensemble" / "search_default.yaml").read_text())
    members = {"a": "pixel", "c": "classifier"}
    from_yaml = parse_search_space(shipped, "default", available=members)
    omitted = parse_search_space({"members": "auto"}, "bare", available=members)
    compared = [f.name for f in fields(SearchSpace) if f.default is not MISSING or f.default_factory is not MISSING]
    assert {"min_gain", "rounds", "weight_step", "nested", "later_rounds", "fallback_plain"} <= set(compared)
    for name in compared:
        assert getattr(omitted, name) == getattr(from_yaml, name), name


def test_one_config_error_for_every_dialect():
    """Family configs, the ensemble YAML and the search YAML raise one ConfigError (or a subclass)."""
    from kaggle_kit.config import ConfigError, apply_overrides
    from kaggle_kit.post import ensemble

    assert ensemble.ConfigError is ConfigError and issubclass(SearchError, ConfigError)
    for bad in (lambda: parse_ensemble_config({"members": []}, "e"), lambda: parse_search_space({"members": []}, "s"),
                lambda: apply_overrides({"a": 1}, ["no-equals-sign"])):
        with pytest.raises(ConfigError):
            bad()


def test_evaluation_in_processes_threads_and_serially_is_identical(tight_store):
    """Forked processes (each a fixed share of the case-days, its own memo), threads and one worker compute
    the same statistics, bit for bit, over several passes (later passes read earlier ones' memo)."""
    sp = parse_search_space(SEARCH, "s")
    data = load_oof(tight_store["cache"], tight_store["preds"], sp.pixel, sp.classifier, 0.2)
    rng = random.Random(3)
    batches = [[k for _ in range(4) for k in setting_keys(_random_setting(rng))] for _ in range(3)]
    memos = []
    for workers, processes in ((1, False), (2, False), (2, True)):
        ev = Evaluator(data, sp.metric, workers=workers, processes=processes)
        assert ev.processes == processes
        for b in batches:
            ev.evaluate(b)
        if processes:
            assert ev._pool is not None and len(ev._pool.procs) == 2
        ev.close()
        memos.append(ev.memo)
    assert memos[0].keys() == memos[1].keys() == memos[2].keys()
    for k in memos[0]:
        np.testing.assert_array_equal(memos[0][k], memos[1][k])
        np.testing.assert_array_equal(memos[0][k], memos[2][k])
