"""The budget planner with fake step times: the plan fits, shares are honoured, caps hand their rest on, a slow
fold shortens the later ones, an unaffordable member is dropped whole, and a simulated job lands on budget."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from kaggle_kit.plan import FoldDone, MemberCost, floor_budget, format_plan, make_plan, minimum_s, parse_budget


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


def _simulate(seed, min_epochs=0.5, floor=0):
    """One job: calibration off by up to 2x either way (the true speed differs per member and jitters per fold),
    a re-plan before and after every fold. Returns (budget, wall seconds, final plan, whether a plan held a
    member at its minimum, whether a member was dropped at its turn: after every member before it had finished,
    so that nobody is left to use the time it had)."""
    rng = random.Random(seed)
    n_folds, budget = 4, rng.uniform(600, 4000)
    costs = [MemberCost(f"m{i}", rng.uniform(0.5, 2), rng.uniform(0.05, 1.0), rng.randint(20, 200),
                        fold_overhead_s=rng.uniform(1, 20), min_epochs=min_epochs, pixel=True) for i in range(3)]
    truth = {c.name: c.sec_per_iter * rng.uniform(0.5, 2.0) for c in costs}
    fixed = {"prepare": 20.0, "tune": 40.0, "notebook": 60.0}
    clock, done, late = 0.0, [], False
    plan = make_plan(budget, costs, n_folds, fixed, min_pixel=floor)
    dropped, held = plan.dropped, bool(plan.held)
    for c in costs:
        for k in range(n_folds):
            plan = make_plan(budget, costs, n_folds, fixed, spent_s=clock, done=done, dropped=dropped,
                             min_pixel=floor)
            late = late or (c.name in dict(plan.dropped) and c.name not in dict(dropped))
            dropped, held = plan.dropped, held or bool(plan.held)
            m = next((m for m in plan.members if m.name == c.name), None)
            if m is None:
                break
            its = m.iters[k]
            secs = its * truth[c.name] * rng.uniform(0.95, 1.05) + c.fold_overhead_s
            clock += secs
            done.append(FoldDone(c.name, k, its, secs))
    clock += sum(fixed.values())
    final = make_plan(budget, costs, n_folds, fixed, spent_s=clock, done=done, dropped=dropped, min_pixel=floor)
    for m in final.members:  # every member that stays has all its folds; the others are named with a reason
        assert m.done == [True] * n_folds, m.name
    assert {m.name for m in final.members} | {n for n, _ in final.dropped} == {c.name for c in costs}
    return budget, clock, final, held, late


@pytest.mark.parametrize("seed", range(6))
def test_a_simulated_job_lands_on_its_budget(seed):
    """With a re-plan after every fold, the job's wall time ends within +5 % of the budget and uses most of it
    (unless a member is dropped at its turn, when the members before it are done: its time has no taker)."""
    budget, clock, final, _, late = _simulate(seed)
    assert clock <= budget * 1.05
    assert clock >= budget * 0.8 or not final.members or late


def test_simulated_jobs_with_the_pixel_floor_land_on_their_budget():
    """Minimums too dear for the shares: the floor holds members at their minimum (in some of these jobs) and
    every job still ends within +5 % of its budget and uses most of it (same exception as above)."""
    n_held = 0
    for seed in range(12):
        for min_epochs in (3.0, 4.0):
            budget, clock, final, held, late = _simulate(seed, min_epochs, floor=2)
            n_held += held
            assert clock <= budget * 1.05, (seed, min_epochs)
            assert clock >= budget * 0.8 or not final.members or late, (seed, min_epochs)
    assert n_held >= 3  # the floor did act


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


# ------------------------------------------------------------------------------------------------ the pixel floor
def _tiny_like():
    """The CPU preset's shape: a capped detector that the 2.5D member's crops need, and a 3D member."""
    det = MemberCost("det", 0.15, sec_per_iter=40.0, iters_per_epoch=1, fold_overhead_s=15.0, maps_s=20.0,
                     max_epochs=4)
    s25 = MemberCost("s25", 0.51, sec_per_iter=0.6, iters_per_epoch=100, fold_overhead_s=20.0, maps_s=60.0,
                     needs=("det",), pixel=True)
    s3 = MemberCost("s3", 0.34, sec_per_iter=1.5, iters_per_epoch=60, fold_overhead_s=20.0, maps_s=40.0, pixel=True)
    return [det, s25, s3]


FIXED = {"tune": 60.0, "notebook": 90.0}


def test_floor_budget_by_hand_and_make_plan_keeps_the_floor_exactly_from_there():
    costs = _tiny_like()
    fb = floor_budget(costs, 3, 2, FIXED, spent_s=120.0)
    # by hand, 3 folds at the minimum (1 epoch): det (1 x 40 + 15) x 3 + 20 = 185; s25 (100 x 0.6 + 20) x 3 + 60
    # = 300; s3 (60 x 1.5 + 20) x 3 + 40 = 370; + 150 fixed + 120 spent
    assert fb.member_s == pytest.approx({"det": 185.0, "s25": 300.0, "s3": 370.0})
    assert fb.budget_s == pytest.approx(185 + 300 + 370 + 150 + 120) and fb.members == ("s25", "s3")
    at = make_plan(fb.budget_s, costs, 3, FIXED, spent_s=120.0, min_pixel=2)
    assert at.pixel_kept == ["s25", "s3"] and at.total_s <= fb.budget_s + 1e-6
    assert [m.iters for m in at.members] == [[1] * 3, [100] * 3, [60] * 3]  # every member at its minimum
    under = make_plan(fb.budget_s - 0.01, costs, 3, FIXED, spent_s=120.0, min_pixel=2)
    assert len(under.pixel_kept) < 2


def test_the_floor_holds_a_member_at_its_minimum_where_its_share_would_drop_it():
    costs = _tiny_like()
    plain = make_plan(1200, costs, 3, FIXED, spent_s=120.0)
    assert plain.pixel_kept == ["s25"] and "s3" in dict(plain.dropped)  # its share buys under one epoch
    held = make_plan(1200, costs, 3, FIXED, spent_s=120.0, min_pixel=2)
    assert held.pixel_kept == ["s25", "s3"] and not held.dropped and "s3" in held.held
    det, s25, s3 = held.members
    assert s3.iters == [60] * 3 and det.iters == [1] * 3  # both at their minimum
    # s25 gets every other second: 1200 - 120 spent - 150 fixed - overheads and maps of the three - the two minimums
    rest = 1200 - 120 - 150 - (3 * 15 + 20 + 3 * 20 + 60 + 3 * 20 + 40) - 3 * 40 - 3 * 60 * 1.5
    assert s25.iters == [int(rest / 3 / 0.6)] * 3
    assert held.total_s <= 1200 and "held at the minimum length" in format_plan(held)
    # with enough time the floor changes nothing
    big = make_plan(3000, costs, 3, FIXED, spent_s=120.0)
    assert make_plan(3000, costs, 3, FIXED, spent_s=120.0, min_pixel=2).members == big.members


def test_the_floor_drops_a_member_nobody_needs_to_keep_two_pixel_members():
    cls = MemberCost("cls", 0.5, sec_per_iter=0.2, iters_per_epoch=100, fold_overhead_s=30.0, maps_s=10.0)
    a = MemberCost("a", 0.25, sec_per_iter=1.0, iters_per_epoch=50, fold_overhead_s=10.0, pixel=True)
    b = MemberCost("b", 0.25, sec_per_iter=1.0, iters_per_epoch=50, fold_overhead_s=10.0, pixel=True)
    fb = floor_budget([cls, a, b], 2, 2)
    assert fb.budget_s == pytest.approx(2 * (2 * (50 + 10)))  # the classifier is not part of it
    plan = make_plan(fb.budget_s, [cls, a, b], 2, min_pixel=2)
    assert [m.name for m in plan.members] == ["a", "b"]
    assert "pixel members the preset keeps" in dict(plan.dropped)["cls"]
    assert make_plan(fb.budget_s, [cls, a, b], 2).pixel_kept != ["a", "b"]  # without the floor, by shares


def test_the_floor_picks_the_cheapest_pixel_members_with_what_they_need():
    det = MemberCost("det", 0.1, sec_per_iter=100.0, iters_per_epoch=1)  # 100 s a fold at its minimum
    crop = MemberCost("crop", 1.0, 0.1, 100, needs=("det",), pixel=True)  # 10 s a fold, but needs det
    p1 = MemberCost("p1", 1.0, 0.5, 100, pixel=True)  # 50 s a fold
    p2 = MemberCost("p2", 1.0, 0.6, 100, pixel=True)  # 60 s a fold
    fb = floor_budget([det, crop, p1, p2], 2, 2)
    assert fb.members == ("p1", "p2") and fb.budget_s == pytest.approx(2 * (50 + 60))  # crop + det: 2 x 110
    assert floor_budget([det, crop, p1, p2], 2, 1).members == ("p1",)
    assert floor_budget([det, crop, p1, p2], 2, 3).held == ("det", "crop", "p1", "p2")
    assert floor_budget([det, crop, p1, p2], 2, 4).budget_s == math.inf  # only three pixel members
    assert floor_budget([det, crop, p1, p2], 2, 2, dropped=[("p2", "x")]).members == ("crop", "p1")


@pytest.mark.parametrize("seed", range(40))
def test_floor_budget_is_the_threshold_of_make_plan_on_random_members(seed):
    """Against a brute force over every set of k pixel members (with the members they need): floor_budget is
    the cheapest such set at its minimum plus the fixed and spent seconds; make_plan keeps k pixel members at
    that budget and above (within the budget), and under it keeps fewer."""
    rng = random.Random(seed)
    n_folds = rng.randint(2, 5)
    costs = [MemberCost("det", rng.uniform(0.05, 0.3), rng.uniform(5, 60), 1, fold_overhead_s=rng.uniform(0, 20),
                        maps_s=rng.uniform(0, 30), max_epochs=rng.choice([None, 2, 4])),
             MemberCost("cls", rng.uniform(0.05, 0.5), rng.uniform(0.01, 0.5), rng.randint(10, 100),
                        fold_overhead_s=rng.uniform(0, 20), maps_s=rng.uniform(0, 30), min_epochs=rng.uniform(0.5, 2))]
    for i in range(rng.randint(2, 4)):
        costs.append(MemberCost(f"p{i}", rng.uniform(0.1, 1), rng.uniform(0.01, 2), rng.randint(10, 200),
                                fold_overhead_s=rng.uniform(0, 30), maps_s=rng.uniform(0, 60),
                                min_epochs=rng.choice([0.5, 1, 2]), needs=("det",) * (rng.random() < 0.5), pixel=True))
    fixed, spent, k = {"tune": rng.uniform(0, 200)}, rng.uniform(0, 100), rng.randint(1, 2)
    by = {c.name: c for c in costs}

    def at_min(c):
        return (math.ceil(c.min_epochs * c.iters_per_epoch) * c.sec_per_iter + c.fold_overhead_s) * n_folds + c.maps_s

    brute = min(sum(at_min(by[n]) for n in set(s) | {x for m in s for x in by[m].needs})
                for s in itertools.combinations([c.name for c in costs if c.pixel], k))
    b = floor_budget(costs, n_folds, k, fixed, spent).budget_s
    assert b == pytest.approx(spent + fixed["tune"] + brute, abs=1e-6)
    for f in (1.0, 1.001, 1.05, 1.3, 2.0, 5.0):
        plan = make_plan(b * f, costs, n_folds, fixed, spent, min_pixel=k)
        assert len(plan.pixel_kept) >= k and plan.total_s <= b * f + 1e-6, f
    for under in (b - 0.01, b * 0.9, b * 0.5):
        assert len(make_plan(under, costs, n_folds, fixed, spent, min_pixel=k).pixel_kept) < k


@pytest.mark.parametrize("seed", range(40))
def test_floor_budget_is_the_threshold_after_folds_have_run(seed):
    """A re-plan's state (folds done at measured speeds, some members finished): at floor_budget make_plan keeps
    k pixel members within it, and more budget keeps them too; a little less keeps fewer, or overruns it (members
    already finished are never dropped, so nothing is left to decide)."""
    rng = random.Random(1000 + seed)
    n_folds = rng.randint(2, 5)
    costs = [MemberCost("det", rng.uniform(0.05, 0.3), rng.uniform(5, 60), 1, fold_overhead_s=rng.uniform(0, 20),
                        maps_s=rng.uniform(0, 30), max_epochs=rng.choice([None, 2, 4]))]
    for i in range(rng.randint(2, 4)):
        costs.append(MemberCost(f"p{i}", rng.uniform(0.1, 1), rng.uniform(0.01, 2), rng.randint(10, 200),
                                fold_overhead_s=rng.uniform(0, 30), maps_s=rng.uniform(0, 60),
                                min_epochs=rng.choice([0.5, 1, 2]), needs=("det",) * (rng.random() < 0.4), pixel=True))
    done, spent = [], rng.uniform(0, 50)
    n_done = rng.randint(0, 2 * n_folds)
    for c in costs:  # folds done in training order, each at its own measured speed
        for k in range(n_folds):
            if len(done) < n_done:
                its = rng.randint(1, 300)
                done.append(FoldDone(c.name, k, its, its * c.sec_per_iter * rng.uniform(0.5, 2) + c.fold_overhead_s))
                spent += done[-1].seconds
    fixed, k = {"tune": rng.uniform(0, 100)}, rng.randint(1, 2)
    b = floor_budget(costs, n_folds, k, fixed, spent, done).budget_s
    for f in (1.0, 1.01, 1.2, 2.0):
        plan = make_plan(b * f, costs, n_folds, fixed, spent, done, min_pixel=k)
        assert len(plan.pixel_kept) >= k and plan.total_s <= b * f + 1e-6, f
    under = make_plan(b - 0.01, costs, n_folds, fixed, spent, done, min_pixel=k)
    assert len(under.pixel_kept) < k or under.total_s > b - 0.01


def test_a_re_plan_holds_a_started_floor_member_and_drops_it_only_when_its_minimum_no_longer_fits():
    a = MemberCost("a", 1.0, sec_per_iter=1.0, iters_per_epoch=100, pixel=True)
    b = MemberCost("b", 1.0, sec_per_iter=1.0, iters_per_epoch=100, pixel=True)
    plan = make_plan(1200, [a, b], 3, min_pixel=2)
    assert [m.iters for m in plan.members] == [[200] * 3, [200] * 3]
    slow = FoldDone("a", 0, 200, 450.0)  # 2.25x slower than calibrated: a's 2 folds left need 450 s at its minimum
    plain = make_plan(1200, [a, b], 3, spent_s=450.0, done=[slow])
    assert plain.pixel_kept == ["b"]  # by shares (375 s each) a is the one short: it goes, its trained fold too
    again = make_plan(1200, [a, b], 3, spent_s=450.0, done=[slow], min_pixel=2)
    assert again.pixel_kept == ["a", "b"] and not again.dropped  # both at their minimum: 450 + 300 s = the 750 left
    assert again.members[0].iters == [200, 100, 100] and again.members[1].iters == [100] * 3
    assert again.total_s == pytest.approx(1200)
    slower = FoldDone("a", 0, 200, 460.0)
    late = make_plan(1200, [a, b], 3, spent_s=460.0, done=[slower], min_pixel=2)
    assert len(late.pixel_kept) == 1 and late.dropped  # the floor does not fit: the plan without it stands


def test_plan_json_carries_the_floor():
    plan = make_plan(1200, _tiny_like(), 3, FIXED, spent_s=120.0, min_pixel=2)
    j = plan.to_json()
    assert j["min_pixel_members"] == 2 and j["pixel_kept"] == ["s25", "s3"] and "s3" in j["held_at_minimum"]
    assert minimum_s(_tiny_like()[2], 3) == pytest.approx(370.0)


def test_folds_that_run_as_calibrated_leave_every_member_s_plan_unchanged():
    """The shares are of the whole training time: a re-plan after folds that took exactly what was planned plans
    the same (were the shares taken of the time left, the member trained first would grow fold by fold into the
    time of the members after it: ``a``'s 1140 iterations a fold would grow to 1266 after its first fold)."""
    costs = _two()
    fixed = {"tune": 60.0}
    plan = make_plan(3600, costs, n_folds=4, fixed=fixed)
    done, clock = [], 0.0
    for m, c in zip(plan.members, costs):
        for k in range(4):
            again = make_plan(3600, costs, 4, fixed, spent_s=clock, done=done)
            for x, y in zip(again.members, plan.members):  # the same, but for the remainders of whole iterations
                assert all(abs(i - j) <= 4 for i, j in zip(x.iters, y.iters)), (m.name, k, x.iters, y.iters)
            secs = m.iters[k] * c.sec_per_iter + c.fold_overhead_s
            done.append(FoldDone(m.name, k, m.iters[k], secs))
            clock += secs


def test_a_slow_member_pays_its_own_overrun_first():
    """A member whose first fold ran at half its calibrated speed shortens its own later folds so that its
    training time stays its share; the member after it keeps its plan."""
    costs = _two()
    plan = make_plan(3600, costs, n_folds=4)
    a0 = plan.members[0].iters[0]
    slow = FoldDone("a", 0, a0, 2 * a0 * 0.5 + 10.0)
    again = make_plan(3600, costs, 4, spent_s=slow.seconds, done=[slow])
    a, b = again.members
    assert b.iters == plan.members[1].iters
    # a's training seconds over its 4 folds are its planned share (to one iteration a fold, at its new rate)
    share_s = 4 * a0 * 0.5
    assert share_s - 3 * 1.0 <= (slow.seconds - 10.0) + 3 * a.iters[1] * 1.0 <= share_s
