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
  earlier ones ran slow. A member already started is dropped only when no member not yet started is left to
  drop. A member others need (``needs``: a detector whose boxes a crop member reads) is held at its minimum
  rather than dropped; dropping a member drops the members that need it.
"""
from __future__ import annotations

import dataclasses
import math

__all__ = ["FoldDone", "MemberCost", "MemberPlan", "Plan", "format_plan", "make_plan", "parse_budget"]


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
                "dropped": [{"member": n, "why": w} for n, w in self.dropped]}


def _rate(cost: MemberCost, done: list[FoldDone]) -> float:
    """Seconds per iteration: measured on the member's done folds when they ran any, else the calibration."""
    its = sum(d.iters for d in done)
    if its <= 0:
        return cost.sec_per_iter
    return max(sum(d.seconds for d in done) - cost.fold_overhead_s * len(done), 1e-9) / its


def make_plan(budget_s: float, costs: list[MemberCost], n_folds: int, fixed: dict[str, float] | None = None,
              spent_s: float = 0.0, done: list[FoldDone] = (), dropped: list[tuple[str, str]] = ()) -> Plan:
    """The plan that fits ``budget_s`` (see the module docstring). ``costs`` in training order; ``fixed``:
    seconds of the stages still to come; ``done``: folds trained so far (their members keep them);
    ``dropped``: members dropped by an earlier plan (they stay dropped)."""
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    for c in costs:
        if c.share < 0 or c.sec_per_iter <= 0 or c.iters_per_epoch < 1:
            raise ValueError(f"member {c.name!r}: share >= 0, sec_per_iter > 0 and iters_per_epoch >= 1 needed")
    fixed = dict(fixed or {})
    dropped = list(dropped)
    gone = {n for n, _ in dropped}
    done_of = {c.name: sorted((d for d in done if d.member == c.name), key=lambda d: d.fold) for c in costs}
    alive = [c for c in costs if c.name not in gone and c.share > 0]
    for c in costs:
        if c.share <= 0 and c.name not in gone:
            dropped.append((c.name, "share 0 in the preset"))
    pinned: set[str] = set()  # members others need (a detector its crop members read), held at their minimum
    while True:
        pinned &= {n for c in alive for n in c.needs}  # held only while a member still needs it
        left_folds = {c.name: n_folds - len(done_of[c.name]) for c in alive}
        rate = {c.name: _rate(c, done_of[c.name]) for c in alive}
        min_it = {c.name: math.ceil(c.min_epochs * c.iters_per_epoch) for c in alive}
        avail = budget_s - spent_s - sum(fixed.values()) - sum(c.fold_overhead_s * left_folds[c.name] + c.maps_s
                                                                for c in alive)
        avail -= sum(min_it[n] * rate[n] * left_folds[n] for n in pinned)
        iters = _water_fill([c for c in alive if c.name not in pinned], left_folds, rate, max(avail, 0.0))
        iters.update({n: min_it[n] for n in pinned})
        short = [c for c in alive if left_folds[c.name] and iters[c.name] < min_it[c.name]]
        if not alive or (not short and (avail >= 0 or not pinned)):
            break
        needed = {n for c in alive for n in c.needs}

        if pinned and avail < 0:  # the held minimums alone do not fit: the dearest goes, with what needs it
            free = [c for c in alive if c.name in pinned]
            iters.update({n: 0 for n in pinned})
        else:
            free = [c for c in short if c.name not in needed]
            if not free:  # only members others need are short: hold them at their minimum, plan again
                pinned |= {c.name for c in short}
                continue
        fresh = [c for c in free if not done_of[c.name]]
        # the member whose minimum costs the most beyond what the plan gives it (overhead included) goes first
        deficit = {c.name: ((min_it[c.name] - iters[c.name]) * rate[c.name] + c.fold_overhead_s) * left_folds[c.name]
                   + c.maps_s for c in free}
        worst = max(fresh or free, key=lambda c: (deficit[c.name], -c.share))
        why = (f"its share buys {iters[worst.name]} iterations per fold, under its minimum of {worst.min_epochs:g} "
               f"epochs ({min_it[worst.name]} iterations)")
        gone_now = [worst] + [c for c in alive if worst.name in c.needs]
        for c in gone_now:
            dropped.append((c.name, why if c is worst else f"it needs {worst.name!r}, which was dropped"))
        alive = [c for c in alive if c not in gone_now]
        pinned -= {c.name for c in gone_now}
    plans = []
    for c in alive:
        ds = done_of[c.name]
        it_todo = [iters[c.name]] * left_folds[c.name]
        its = [d.iters for d in ds] + it_todo
        secs = [d.seconds for d in ds] + [n * rate[c.name] + c.fold_overhead_s for n in it_todo]
        plans.append(MemberPlan(c.name, its, [n / c.iters_per_epoch for n in its], secs,
                                [True] * len(ds) + [False] * len(it_todo), c.maps_s))
    return Plan(budget_s, spent_s, fixed, plans, dropped)


def _water_fill(alive: list[MemberCost], left_folds: dict[str, int], rate: dict[str, float],
                avail_s: float) -> dict[str, int]:
    """Iterations per remaining fold of each member: the training seconds split by share; a member capped by
    its ``max_epochs`` hands what it does not use to the others, by their shares."""
    out = {c.name: 0 for c in alive}
    open_ = [c for c in alive if left_folds[c.name] > 0]
    while open_ and avail_s > 0:
        total_share = sum(c.share for c in open_)
        capped = []
        for c in open_:
            sec = avail_s * c.share / total_share
            n = int(sec / (rate[c.name] * left_folds[c.name]))
            cap = None if c.max_epochs is None else int(c.max_epochs * c.iters_per_epoch)
            if cap is not None and n >= cap:
                capped.append((c, cap))
        if not capped:
            for c in open_:
                out[c.name] = int(avail_s * c.share / total_share / (rate[c.name] * left_folds[c.name]))
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
    rows += [f"dropped {n}: {w}" for n, w in plan.dropped]
    return "\n".join(rows)
