"""The budget planner with fake step times: the plan fits, shares are honoured, caps hand their rest on, a slow
fold shortens the later ones, an unaffordable member is dropped whole, and a simulated job lands on budget."""
from __future__ import annotations

import random

import pytest

from kaggle_kit.plan import FoldDone, MemberCost, format_plan, make_plan, parse_budget


def _two(share_a=2.0, share_b=1.0, **kw):
    return [MemberCost("a", share_a, sec_per_iter=0.5, iters_per_epoch=40, fold_overhead_s=10.0, **kw),
            MemberCost("b", share_b, sec_per_iter=2.0, iters_per_epoch=10, fold_overhead_s=20.0, **kw)]


def _train_s(plan, name):
    m = next(m for m in plan.members if m.name == name)
    return m.total_s


def test_parse_budget_forms():
    assert parse_budget("20m") == 1200 and parse_budget("20") == 1200  # a bare number is minutes
    assert parse_budget("1.5h") == 5400 and parse_budget("90s") == 90 and parse_budget("1h30m") == 5400
    for bad in ("", "abc", "20x", "h", "1h30"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def test_plan_fits_and_uses_the_budget():
    fixed = {"prepare": 30.0, "tune": 60.0, "bundle+notebook": 90.0}
    plan = make_plan(1800, _two(), n_folds=3, fixed=fixed)
    assert not plan.dropped
    assert plan.total_s <= 1800
    # what is left unused is less than one iteration per fold of each member (integer iterations)
    assert 1800 - plan.total_s <= 3 * (0.5 + 2.0) + 1e-6
    # by hand: training seconds = 1800 - 180 fixed - 3*(10+20) overhead = 1530; a gets 2/3 -> 1020 s, 340 s a
    # fold at 0.5 s -> 680 iterations a fold; b gets 510 s, 170 s a fold at 2 s -> 85
    assert [m.iters for m in plan.members] == [[680] * 3, [85] * 3]
    assert plan.members[0].epochs[0] == pytest.approx(680 / 40)


def test_shares_are_honoured():
    for sa, sb in ((1.0, 1.0), (3.0, 1.0), (1.0, 4.0)):
        plan = make_plan(7200, _two(sa, sb), n_folds=5)
        ta = _train_s(plan, "a") - 5 * 10.0
        tb = _train_s(plan, "b") - 5 * 20.0
        assert ta / tb == pytest.approx(sa / sb, rel=0.01)


def test_a_capped_member_hands_its_rest_to_the_others():
    costs = [MemberCost("a", 1.0, 0.5, 40, max_epochs=2), MemberCost("b", 1.0, 2.0, 10)]
    plan = make_plan(3600, costs, n_folds=2)
    a, b = plan.members
    assert a.iters == [80, 80]  # 2 epochs of 40 iterations: the cap
    assert b.iters == [int((3600 - 2 * 80 * 0.5) / 2 / 2.0)] * 2  # every other second
    assert plan.total_s <= 3600


def test_a_slow_first_fold_shortens_the_rest():
    costs = _two()
    plan = make_plan(1800, costs, n_folds=3, fixed={"tune": 60.0})
    planned = plan.members[0].iters[0]
    slow = FoldDone("a", 0, planned, seconds=2 * plan.members[0].seconds[0])  # it ran at half the speed
    again = make_plan(1800, costs, n_folds=3, fixed={"tune": 60.0}, spent_s=slow.seconds, done=[slow])
    a, b = again.members
    assert a.done == [True, False, False] and a.iters[0] == planned
    assert a.iters[1] < planned and a.iters[1] == a.iters[2]
    assert again.total_s <= 1800 + 1e-6
    # the measured rate of a (2x) is what the new plan uses for its remaining folds
    assert a.seconds[1] == pytest.approx(a.iters[1] * (slow.seconds - 10.0) / planned + 10.0)


def test_an_unaffordable_member_is_dropped_whole():
    costs = _two() + [MemberCost("huge", 1.0, sec_per_iter=30.0, iters_per_epoch=100, min_epochs=1.0)]
    plan = make_plan(1800, costs, n_folds=3)
    assert [m.name for m in plan.members] == ["a", "b"]
    assert [n for n, _ in plan.dropped] == ["huge"] and "minimum" in plan.dropped[0][1]
    # the others get all the training time, as if "huge" had never been there
    assert [m.iters for m in plan.members] == [m.iters for m in make_plan(1800, _two(), n_folds=3).members]
    assert "dropped huge" in format_plan(plan)


def test_a_started_member_is_dropped_only_when_no_fresh_one_is_left():
    costs = [MemberCost("started", 1.0, 1.0, 100, min_epochs=1.0), MemberCost("fresh", 1.0, 1.0, 100, min_epochs=1.0)]
    done = [FoldDone("started", 0, 100, 100.0)]
    # after fold 0, 200 s remain for 2 folds of "started" (200 its) and 3 of "fresh" (300 its): one must go
    plan = make_plan(300, costs, n_folds=3, spent_s=100.0, done=done)
    assert [n for n, _ in plan.dropped] == ["fresh"]
    assert plan.members[0].iters == [100, 100, 100]


def test_nothing_fits_drops_everything_and_says_why():
    plan = make_plan(60, _two(), n_folds=3, fixed={"notebook": 120.0})
    assert not plan.members and {n for n, _ in plan.dropped} == {"a", "b"}


@pytest.mark.parametrize("seed", range(6))
def test_a_simulated_job_lands_on_its_budget(seed):
    """Calibration off by up to 2x either way (the true speed differs per member and jitters per fold): with a
    re-plan after every fold, the job's wall time ends within +5 % of the budget and uses most of it."""
    rng = random.Random(seed)
    n_folds, budget = 4, rng.uniform(600, 4000)
    costs = [MemberCost(f"m{i}", rng.uniform(0.5, 2), rng.uniform(0.05, 1.0), rng.randint(20, 200),
                        fold_overhead_s=rng.uniform(1, 20), min_epochs=0.5) for i in range(3)]
    truth = {c.name: c.sec_per_iter * rng.uniform(0.5, 2.0) for c in costs}
    fixed = {"prepare": 20.0, "tune": 40.0, "notebook": 60.0}
    clock, done = 0.0, []
    plan = make_plan(budget, costs, n_folds, fixed)
    dropped = plan.dropped
    for c in costs:
        for k in range(n_folds):
            plan = make_plan(budget, costs, n_folds, fixed, spent_s=clock, done=done, dropped=dropped)
            dropped = plan.dropped
            m = next((m for m in plan.members if m.name == c.name), None)
            if m is None:
                break
            its = m.iters[k]
            secs = its * truth[c.name] * rng.uniform(0.95, 1.05) + c.fold_overhead_s
            clock += secs
            done.append(FoldDone(c.name, k, its, secs))
    clock += sum(fixed.values())
    final = make_plan(budget, costs, n_folds, fixed, spent_s=clock, done=done, dropped=dropped)
    for m in final.members:  # every member that stays has all its folds; the others are named with a reason
        assert m.done == [True] * n_folds, m.name
    assert {m.name for m in final.members} | {n for n, _ in final.dropped} == {c.name for c in costs}
    assert clock <= budget * 1.05
    assert clock >= budget * 0.8 or not final.members


def test_a_needed_detector_is_held_at_its_minimum_not_dropped():
    """A detector whose share buys under one epoch but whose boxes a crop member reads gets its minimum, paid
    from the others; the crop member keeps training."""
    det = MemberCost("det", 0.05, sec_per_iter=60.0, iters_per_epoch=1, min_epochs=1.0)  # one epoch: 60 s
    seg = MemberCost("seg", 1.0, sec_per_iter=1.0, iters_per_epoch=50, needs=("det",))
    plan = make_plan(600, [det, seg], n_folds=3)
    assert not plan.dropped
    d, s = plan.members
    assert d.iters == [1, 1, 1]  # 5 % of 600 s = 30 s would buy no epoch over 3 folds
    assert s.iters == [int((600 - 3 * 60) / 3)] * 3  # the rest
    assert plan.total_s <= 600


def test_dropping_a_needed_member_drops_what_needs_it():
    det = MemberCost("det", 0.5, sec_per_iter=500.0, iters_per_epoch=1)  # its minimum alone exceeds the budget
    seg = MemberCost("seg", 1.0, 1.0, 50, needs=("det",))
    other = MemberCost("other", 1.0, 1.0, 50)
    plan = make_plan(900, [det, seg, other], n_folds=3)
    assert [m.name for m in plan.members] == ["other"]
    why = dict(plan.dropped)
    assert set(why) == {"det", "seg"} and ("needs 'det'" in why["seg"] or "minimum" in why["seg"])
    assert plan.members[0].iters == [300] * 3


def test_when_nothing_is_affordable_the_costliest_minimum_goes_first():
    cheap = MemberCost("cheap", 1.0, sec_per_iter=0.1, iters_per_epoch=100)  # minimum: 10 s a fold
    dear = MemberCost("dear", 1.0, sec_per_iter=10.0, iters_per_epoch=100)  # minimum: 1000 s a fold
    plan = make_plan(200, [cheap, dear], n_folds=2)
    assert [n for n, _ in plan.dropped] == ["dear"] and [m.name for m in plan.members] == ["cheap"]


def test_preset_budget_keys_are_read_and_checked(tmp_path):
    from kaggle_kit.pipeline import PresetError, load_preset

    tiny = load_preset("tiny")
    assert abs(sum(m.share for m in tiny.members) - 1.0) < 1e-9  # the shipped shares are fractions of the time
    assert sum(m.config.startswith(("seg25d", "seg3d")) for m in tiny.members) >= 2  # two diverse pixel members
    gpu = load_preset("gpu")
    assert abs(sum(m.share for m in gpu.members) - 1.0) < 1e-9
    base = "n_folds: 3\nsearch: ensemble/search_default.yaml\nmembers:\n  - config: seg3d/tiny_cpu.yaml\n    why: x\n"
    for extra, msg in (("    share: -1\n", "share"), ("    min_epochs: 0\n", "min_epochs"),
                       ("    min_epochs: 3\n    max_epochs: 2\n", "max_epochs"), ("    shares: 1\n", "did you mean")):
        p = tmp_path / "p.yaml"
        p.write_text(base + extra)
        with pytest.raises(PresetError, match=msg):
            load_preset(p)
    p.write_text(base + "    share: 2\n    min_epochs: 0.5\n    max_epochs: 8\n")
    m = load_preset(p).members[0]
    assert (m.share, m.min_epochs, m.max_epochs) == (2.0, 0.5, 8.0)


def test_maps_cost_is_kept_apart_from_the_measured_fold_rate():
    """A fold's measured seconds hold its training process only; the member's maps come once, after its folds.
    A fold that ran exactly as calibrated must leave the next folds' length unchanged (had the maps been
    counted as per-fold overhead, the rate measured from the fold would come out too fast and the rest too long)."""
    c = MemberCost("m", 1.0, sec_per_iter=0.5, iters_per_epoch=10, fold_overhead_s=10.0, maps_s=120.0)
    plan = make_plan(1200, [c], n_folds=3, fixed={"tune": 30.0})
    n = plan.members[0].iters[0]
    assert n == int((1200 - 30 - 3 * 10 - 120) / 3 / 0.5)
    assert plan.total_s <= 1200 and plan.members[0].maps_s == 120.0
    ran = FoldDone("m", 0, n, n * 0.5 + 10.0)  # exactly as calibrated
    again = make_plan(1200, [c], n_folds=3, fixed={"tune": 30.0}, spent_s=ran.seconds, done=[ran])
    assert again.members[0].iters == [n, n, n]
