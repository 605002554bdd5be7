"""Fitting the main job to a time budget: measured costs -> a plan of training iterations per fold -> a new
plan after every fold from what it really took.

Pure arithmetic (no torch, no I/O): the pipeline measures, this module decides.

- **costs** (:class:`MemberCost`): per member, the seconds of one training iteration at its real batch and
  canvas after warm-up, the iterations of one epoch of a fold's training set, the seconds each fold costs
  besides its iterations (start-up, validation, export, its OOF and test maps), its share of the training
  time (the preset says why), a minimum useful length and a cap (the config's epochs), both in epochs;
- **fixed costs**: the stages that do not scale with training (prepare, tuning, bundle, notebook), seconds;
- **plan** (:func:`make_plan`): the training time is what the budget leaves after the fixed and per-fold costs;
  each member gets its share of it, capped at its epochs (what a capped member does not use goes to the
  others by their shares); a member whose share cannot buy its minimum length is dropped **whole** (never a
  fold: OOF needs every fold), the one whose minimum costs most beyond its share first, and the rest is
  planned again;
- **re-plan**: :func:`make_plan` again after each fold with ``spent_s`` (the wall time so far), the folds
  already trained (``done``) and each member's measured seconds per iteration: later folds shorten when
  earlier ones ran slow. The shares are of the whole training time, a member's trained folds counted against
  its own share: a member that ran slow pays its overrun from its own later folds first, folds that ran as
  planned leave the plan as it was, and a member trained first does not grow into the time of those after it
  (a member already past its share gets no more). Among the members short of their minimum, one not yet
  started goes before one already started. A member others need (``needs``: a detector whose boxes a crop
  member reads) is held at its minimum rather than dropped; dropping a member drops the members that need it;
  after a drop, who is held is decided again from the shares of those left.
- **floor** (``min_pixel``, the preset's ``min_pixel_members``): when the plan above keeps fewer pixel members
  than that, it is made again with the cheapest ``min_pixel`` pixel members (their minimum, with the members
  they need, costs least) held: never dropped, at their minimum length when their share buys less, paid from the
  others, which are dropped (dearest minimum first) until the held minimums fit. When even they do not fit, the
  plan without the floor stands and keeps fewer; :func:`floor_budget` is the smallest budget that keeps the floor
  (the same arithmetic: at it :func:`make_plan` keeps the floor, under it no plan can within the budget).
"""
from __future__ import annotations

import dataclasses
import itertools
import math

__all__ = ["FloorCost", "FoldDone", "MemberCost", "MemberPlan", "Plan", "floor_budget", "format_plan", "make_plan",
           "minimum_s", "parse_budget"]


def parse_budget(text) -> float:
    """A budget as a person types it -> seconds: ``20m``, ``1.5h``, ``90s``, ``1h30m``; a bare number is minutes."""
    s = str(text).strip().lower().replace(" ", "")
    if not s:
        raise ValueError("empty budget; give e.g. 20m, 1.5h or 90s")
    try:
        return float(s) * 60.0
    except ValueError:
        pass
    total, num, seen = 0.0, "", False
    for ch in s:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in "hms" and num:
            total += float(num) * {"h": 3600.0, "m": 60.0, "s": 1.0}[ch]
            num, seen = "", True
        else:
            raise ValueError(f"budget {text!r} does not parse; give e.g. 20m, 1.5h, 90s or 1h30m")
    if num or not seen:
        raise ValueError(f"budget {text!r} does not parse; give e.g. 20m, 1.5h, 90s or 1h30m")
    return total


@dataclasses.dataclass(frozen=True)
class MemberCost:
    """What one member costs (seconds), measured on this device or estimated from the data size."""
    name: str
    share: float  # its part of the training time, relative to the other members' shares
    sec_per_iter: float  # one training iteration at the real batch and canvas, after warm-up
    iters_per_epoch: int  # iterations of one epoch of a fold's training set
    fold_overhead_s: float = 0.0  # per fold's training process besides its iterations: start-up, validation, export
    maps_s: float = 0.0  # once, if the member stays: its OOF and test maps (not part of a fold's measured seconds)
    min_epochs: float = 1.0  # below this the member is not worth training: dropped whole
    max_epochs: float | None = None  # never more than this (the config's epochs); None: no cap
    needs: tuple[str, ...] = ()  # members it cannot run without (a crop member: its detector)
    pixel: bool = False  # a pixel member (its maps are fused): what the floor (``min_pixel``) counts


@dataclasses.dataclass(frozen=True)
class FoldDone:
    """A fold already trained: its member, fold, iterations and measured wall seconds (overhead included)."""
    member: str
    fold: int
    iters: int
    seconds: float


@dataclasses.dataclass
class MemberPlan:
    name: str
    iters: list[int]  # per fold, in fold order (done folds: what they ran)
    epochs: list[float]
    seconds: list[float]  # projected per fold (done folds: measured)
    done: list[bool]
    maps_s: float = 0.0  # its maps, after its folds
    pixel: bool = False

    @property
    def total_s(self) -> float:
        return float(sum(self.seconds)) + self.maps_s


@dataclasses.dataclass
class Plan:
    budget_s: float
    spent_s: float  # wall time already spent when the plan was made (not counted in the members' folds)
    fixed: dict[str, float]  # stages still to come that do not scale with training
    members: list[MemberPlan]
    dropped: list[tuple[str, str]]  # (member, why)
    held: list[str] = dataclasses.field(default_factory=list)  # members held at their minimum length
    min_pixel: int = 0  # the floor this plan was made with (pixel members it must keep)

    @property
    def pixel_kept(self) -> list[str]:
        return [m.name for m in self.members if m.pixel]

    @property
    def total_s(self) -> float:
        """Projected wall time of the whole job: spent + every member's folds not yet spent + fixed stages."""
        todo = sum(s for m in self.members for s, d in zip(m.seconds, m.done) if not d)
        todo += sum(m.maps_s for m in self.members)
        return self.spent_s + todo + sum(self.fixed.values())

    def to_json(self) -> dict:
        return {"budget_s": round(self.budget_s, 1), "spent_s": round(self.spent_s, 1),
                "projected_total_s": round(self.total_s, 1), "fixed_s": {k: round(v, 1) for k, v in self.fixed.items()},
                "members": [{"name": m.name, "iters": m.iters, "epochs": [round(e, 3) for e in m.epochs],
                             "seconds": [round(s, 1) for s in m.seconds], "done": m.done} for m in self.members],
                "dropped": [{"member": n, "why": w} for n, w in self.dropped], "held_at_minimum": list(self.held),
                "min_pixel_members": self.min_pixel, "pixel_kept": self.pixel_kept}


def _rate(cost: MemberCost, done: list[FoldDone]) -> float:
    """Seconds per iteration: measured on the member's done folds when they ran any, else the calibration."""
    its = sum(d.iters for d in done)
    if its <= 0:
        return cost.sec_per_iter
    return max(sum(d.seconds for d in done) - cost.fold_overhead_s * len(done), 1e-9) / its


#: seconds of slack in the fit tests: the budget and the minimums are sums taken in different orders
_TOL_S = 1e-6


def minimum_s(cost: MemberCost, n_folds: int, done: list[FoldDone] = ()) -> float:
    """Seconds ``cost`` needs to stay in a plan: its remaining folds at its minimum length (``min_epochs``, whole
    iterations, at the rate :func:`make_plan` uses), each fold's overhead, and its maps."""
    done = [d for d in done if d.member == cost.name]
    left = n_folds - len(done)
    return (math.ceil(cost.min_epochs * cost.iters_per_epoch) * _rate(cost, done) + cost.fold_overhead_s) * left \
        + cost.maps_s


def _closure(names, by_name: dict) -> set[str]:
    """``names`` and every member they need, transitively (a name ``by_name`` lacks is kept: it cannot run)."""
    out, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += list(by_name[n].needs) if n in by_name else []
    return out


def _floor_set(alive: list[MemberCost], k: int, n_folds: int, done: list[FoldDone]):
    """The ``k`` pixel members of ``alive`` whose minimums, with the members they need, cost least (ties: the
    earlier in training order), that set with its needs, and the seconds a plan keeping it pays at least: those
    minimums, and the maps of every member whose folds are all trained (a plan never drops those, so they cost
    every set the same); ``None`` when fewer than ``k`` can run (a pixel member whose needed member is gone
    cannot)."""
    by_name = {c.name: c for c in alive}
    n_done = {c.name: len({d.fold for d in done if d.member == c.name}) for c in alive}
    finished = {c.name for c in alive if n_done[c.name] >= n_folds}
    anyway = sum(c.maps_s for c in alive if c.name in finished)
    cand = [c.name for c in alive if c.pixel and _closure([c.name], by_name) <= set(by_name)]
    if k < 1 or len(cand) < k:
        return None
    best = None
    for combo in itertools.combinations(cand, k):
        held = _closure(combo, by_name)
        sec = anyway + sum(minimum_s(by_name[n], n_folds, done) for n in held if n not in finished)
        if best is None or sec < best[2] - _TOL_S:
            best = (combo, held, sec)
    return best


@dataclasses.dataclass(frozen=True)
class FloorCost:
    """The smallest budget that keeps ``min_pixel`` pixel members (:func:`floor_budget`) and what it is made of."""
    budget_s: float  # math.inf when fewer pixel members than the floor can run at all
    min_pixel: int
    members: tuple[str, ...]  # the pixel members kept at that budget (the cheapest minimums)
    held: tuple[str, ...]  # those and the members they need
    member_s: dict  # {member: seconds at its minimum} of ``held``
    spent_s: float
    fixed_s: float
    kept_anyway_s: float = 0.0  # maps of the members not held whose folds are all trained (never dropped)


def floor_budget(costs: list[MemberCost], n_folds: int, min_pixel: int, fixed: dict[str, float] | None = None,
                 spent_s: float = 0.0, done: list[FoldDone] = (), dropped: list[tuple[str, str]] = ()) -> FloorCost:
    """The smallest budget at which :func:`make_plan` (same arguments) keeps ``min_pixel`` pixel members: the
    time spent, the fixed stages, the ``min_pixel`` pixel members whose minimums (:func:`minimum_s`, with the
    members they need, e.g. the detector a crop member reads, at its minimum) cost least, and the maps of members
    whose folds are all trained (a plan never drops those). Any plan that keeps ``min_pixel`` pixel members pays
    at least this, and at it :func:`make_plan` keeps them (each at its minimum, the others dropped)."""
    fixed_s = float(sum((fixed or {}).values()))
    gone = {n for n, _ in dropped}
    alive = [c for c in costs if c.name not in gone and c.share > 0]
    best = _floor_set(alive, min_pixel, n_folds, list(done))
    if best is None:
        return FloorCost(math.inf, min_pixel, (), (), {}, spent_s, fixed_s)
    combo, held, sec = best
    order = [c.name for c in alive]
    member_s = {c.name: minimum_s(c, n_folds, list(done)) for c in alive if c.name in held}
    return FloorCost(spent_s + fixed_s + sec, min_pixel, tuple(combo), tuple(n for n in order if n in held),
                     member_s, spent_s, fixed_s, sec - sum(member_s.values()))


def make_plan(budget_s: float, costs: list[MemberCost], n_folds: int, fixed: dict[str, float] | None = None,
              spent_s: float = 0.0, done: list[FoldDone] = (), dropped: list[tuple[str, str]] = (),
              min_pixel: int = 0) -> Plan:
    """The plan that fits ``budget_s`` (see the module docstring). ``costs`` in training order; ``fixed``:
    seconds of the stages still to come; ``done``: folds trained so far (their members keep them);
    ``dropped``: members dropped by an earlier plan (they stay dropped); ``min_pixel``: the floor of pixel
    members (0: none; more than can run: as many as can)."""
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    if min_pixel < 0:
        raise ValueError(f"min_pixel must be >= 0, got {min_pixel}")
    for c in costs:
        if c.share < 0 or c.sec_per_iter <= 0 or c.iters_per_epoch < 1:
            raise ValueError(f"member {c.name!r}: share >= 0, sec_per_iter > 0 and iters_per_epoch >= 1 needed")
    fixed = dict(fixed or {})
    dropped = list(dropped)
    gone = {n for n, _ in dropped}
    done = list(done)
    done_of = {c.name: sorted((d for d in done if d.member == c.name), key=lambda d: d.fold) for c in costs}
    alive = [c for c in costs if c.name not in gone and c.share > 0]
    for c in costs:
        if c.share <= 0 and c.name not in gone:
            dropped.append((c.name, "share 0 in the preset"))
    out = _solve(budget_s, alive, done_of, n_folds, fixed, spent_s, list(dropped), frozenset(), 0)
    n_pixel = sum(c.pixel for c in alive)
    k = min(min_pixel, n_pixel)
    if k and sum(c.pixel for c in out[0]) < k:
        best = None
        while k and best is None:  # as many as can run (a pixel member whose needed member is gone cannot)
            best = _floor_set(alive, k, n_folds, done)
            k -= best is None
        if best is not None and budget_s - spent_s - sum(fixed.values()) - best[2] >= -_TOL_S:
            floored = _solve(budget_s, alive, done_of, n_folds, fixed, spent_s, list(dropped), frozenset(best[1]), k)
            out = floored or out
    kept, iters, pinned, dropped = out
    plans = []
    for c in kept:
        ds = done_of[c.name]
        it_todo = [iters[c.name]] * (n_folds - len(ds))
        its = [d.iters for d in ds] + it_todo
        rate = _rate(c, ds)
        secs = [d.seconds for d in ds] + [n * rate + c.fold_overhead_s for n in it_todo]
        plans.append(MemberPlan(c.name, its, [n / c.iters_per_epoch for n in its], secs,
                                [True] * len(ds) + [False] * len(it_todo), c.maps_s, c.pixel))
    return Plan(budget_s, spent_s, fixed, plans, dropped, [c.name for c in kept if c.name in pinned], min_pixel)


def _solve(budget_s, alive, done_of, n_folds, fixed, spent_s, dropped, floor: frozenset, k: int):
    """Drop and hold members until the plan fits: (members kept, iterations per remaining fold, members held at
    their minimum, dropped). ``floor``: members never dropped (the floor's pixel members and what they need);
    ``None`` when they cannot all be kept."""
    alive = list(alive)
    pinned: set[str] = set()  # members others need (a detector its crop members read) or the floor holds
    while True:
        needed = {n for c in alive for n in c.needs}
        pinned &= needed | floor  # held only while a member still needs it, or the floor holds it
        left_folds = {c.name: n_folds - len(done_of[c.name]) for c in alive}
        rate = {c.name: _rate(c, done_of[c.name]) for c in alive}
        min_it = {c.name: math.ceil(c.min_epochs * c.iters_per_epoch) for c in alive}
        avail = budget_s - spent_s - sum(fixed.values()) - sum(c.fold_overhead_s * left_folds[c.name] + c.maps_s
                                                                for c in alive)
        avail -= sum(min_it[n] * rate[n] * left_folds[n] for n in pinned)
        trained = {c.name: max(sum(d.seconds for d in done_of[c.name]) - c.fold_overhead_s * len(done_of[c.name]),
                               0.0) for c in alive}
        iters = _water_fill([c for c in alive if c.name not in pinned], left_folds, rate, max(avail, 0.0), trained)
        iters.update({n: min_it[n] for n in pinned})
        short = [c for c in alive if left_folds[c.name] and iters[c.name] < min_it[c.name]]
        fits = avail >= -_TOL_S
        if not alive or (not short and (fits or not pinned)):
            break
        why = None
        if pinned and not fits:  # the held minimums do not fit: the dearest held one goes, with what needs it
            free = [c for c in alive if c.name in pinned and c.name not in floor]
            iters.update({n: 0 for n in pinned})
            if not free:  # only the floor is held: the others go, the one whose minimum costs most first
                free = [c for c in alive if c.name not in floor and left_folds[c.name]]
                if not free:
                    return None
                iters.update({c.name: 0 for c in free})
                why = (f"the time goes to the {k} pixel member{'s' * (k != 1)} the preset keeps "
                       f"(min_pixel_members), held at their minimum")
        else:
            free = [c for c in short if c.name not in needed and c.name not in floor]
            if not free:  # only members others need or the floor holds are short: hold them at their minimum
                pinned |= {c.name for c in short}
                continue
        fresh = [c for c in free if not done_of[c.name]]
        # the member whose minimum costs the most beyond what the plan gives it (overhead included) goes first
        deficit = {c.name: ((min_it[c.name] - iters[c.name]) * rate[c.name] + c.fold_overhead_s) * left_folds[c.name]
                   + c.maps_s for c in free}
        worst = max(fresh or free, key=lambda c: (deficit[c.name], -c.share))
        why = why or (f"its share buys {iters[worst.name]} iterations per fold, under its minimum of "
                      f"{worst.min_epochs:g} epochs ({min_it[worst.name]} iterations)")
        gone_now = [worst] + [c for c in alive if worst.name in c.needs]
        for c in gone_now:
            dropped.append((c.name, why if c is worst else f"it needs {worst.name!r}, which was dropped"))
        alive = [c for c in alive if c not in gone_now]
        pinned = set()  # what the others' shares buy has changed: hold again only who is still short
    return alive, iters, pinned, dropped


def _water_fill(alive: list[MemberCost], left_folds: dict[str, int], rate: dict[str, float],
                avail_s: float, trained_s: dict[str, float] | None = None) -> dict[str, int]:
    """Iterations per remaining fold of each member: the training seconds split by share; a member capped by
    its ``max_epochs`` hands what it does not use to the others, by their shares. ``trained_s``: each member's
    training seconds in its folds already done, counted against its share (the shares are of the whole
    training time, not of what is left: otherwise a member trained first grows fold by fold into the time of
    those after it); a member that already spent more than its share gets nothing more."""
    trained_s = trained_s or {}
    out = {c.name: 0 for c in alive}
    open_ = [c for c in alive if left_folds[c.name] > 0]
    while open_ and avail_s > 0:
        total_share = sum(c.share for c in open_)
        pool = avail_s + sum(trained_s.get(c.name, 0.0) for c in open_)
        sec = {c.name: pool * c.share / total_share - trained_s.get(c.name, 0.0) for c in open_}
        over = [c for c in open_ if sec[c.name] < 0]
        if over:  # spent its share already: out of the split, the others share what is left
            for c in over:
                open_.remove(c)
            continue
        capped = []
        for c in open_:
            n = int(sec[c.name] / (rate[c.name] * left_folds[c.name]))
            cap = None if c.max_epochs is None else int(c.max_epochs * c.iters_per_epoch)
            if cap is not None and n >= cap:
                capped.append((c, cap))
        if not capped:
            for c in open_:
                out[c.name] = int(sec[c.name] / (rate[c.name] * left_folds[c.name]))
            break
        for c, cap in capped:
            out[c.name] = cap
            avail_s -= cap * rate[c.name] * left_folds[c.name]
            open_.remove(c)
    return out


def format_plan(plan: Plan) -> str:
    """The table printed before training: member, folds, iterations, epochs, minutes; fixed costs; total."""
    rows = [f"{'member':<28}{'folds':>6}{'iters/fold':>12}{'epochs':>8}{'minutes':>9}"]
    for m in plan.members:
        todo = [i for i, d in zip(m.iters, m.done) if not d]
        it = f"{todo[0]}" if todo and len(set(todo)) == 1 else ",".join(map(str, m.iters))
        ep = max(m.epochs) if m.epochs else 0.0
        rows.append(f"{m.name:<28}{len(m.iters):>6}{it:>12}{ep:>8.2f}{m.total_s / 60:>9.1f}")
    for k, v in plan.fixed.items():
        rows.append(f"{'(' + k + ')':<28}{'':>6}{'':>12}{'':>8}{v / 60:>9.1f}")
    if plan.spent_s:
        rows.append(f"{'(spent so far)':<28}{'':>26}{plan.spent_s / 60:>9.1f}")
    rows.append(f"{'total':<28}{'':>26}{plan.total_s / 60:>9.1f}   budget {plan.budget_s / 60:.1f} min")
    if plan.held:
        rows.append("held at the minimum length: " + ", ".join(plan.held))
    rows += [f"dropped {n}: {w}" for n, w in plan.dropped]
    return "\n".join(rows)
