"""The notebook's time budget: after each case-day the total run time is projected from the case-days measured
since the last change; over budget, work is shed in the order of :data:`SHED_ORDER` (TTA off, then members of
lowest ensemble weight, never the last pixel member) until the estimate fits."""
from __future__ import annotations

import time

from kaggle_kit.deploy.members import LoadedMember
from kaggle_kit.deploy.messages import say

__all__ = ["KAGGLE_LIMIT_H", "SHED_ORDER", "Budget", "shed_plan"]

KAGGLE_LIMIT_H = 9.0
#: what the time budget sheds, in this order
SHED_ORDER = ("tta", "lowest_weight_member")


def _member_weight(cfg, name: str) -> float:
    """Mean over classes of a member's weight, normalised within its kind."""
    for kind in ("pixel", "classifier"):
        ms = cfg.of_kind(kind)
        for i, m in enumerate(ms):
            if m.name == name:
                return float(cfg.weights(kind)[i].mean())
    return 0.0


def shed_plan(members: list[LoadedMember], cfg, seconds: dict, n_done: int) -> list[tuple[str, str, float]]:
    """The shedding steps in :data:`SHED_ORDER`: [(step, target, estimated seconds saved per case-day)]."""
    per_cd = {k: v / max(n_done, 1) for k, v in seconds.items()}
    steps = []
    tta = [m for m in members if m.tta]
    if tta:  # TTA multiplies a member's forward passes (flips 2x, gamma 3x): turning it off saves 1 - 1/passes
        steps.append(("tta", ", ".join(sorted(m.name for m in tta)),
                      sum(per_cd.get(m.name, 0.0) * (1 - 1 / m.tta_passes) for m in tta)))
    own = [m for m in members if m.predictors and m.kind in ("pixel", "classifier")]
    n_pixel = sum(m.kind == "pixel" for m in own)
    for m in sorted(own, key=lambda m: (_member_weight(cfg, m.name), m.name)):
        if m.kind == "pixel":
            if n_pixel <= 1:
                continue  # never the last pixel member
            n_pixel -= 1
        cost = per_cd.get(m.name, 0.0) / m.tta_passes
        users = [u for u in own if u.boxes_from and u.boxes_from == m.boxes_from]
        if m.boxes_from and len(users) == 1:  # its detector stops running with it
            cost += per_cd.get(m.boxes_from, 0.0)
        steps.append(("lowest_weight_member", m.name, cost))
    return steps


def _apply_shed(step: str, target: str, members: list[LoadedMember]) -> list[LoadedMember]:
    if step == "tta":
        for m in members:
            for p in m.predictors:
                if getattr(p, "tta", "none") != "none":
                    p.tta = "none"
        return members
    keep = [m for m in members if m.name != target and m.source != target]
    needed = {m.boxes_from for m in keep if m.boxes_from}
    return [m for m in keep if m.kind != "boxes" or m.name in needed]


class Budget:
    """The time budget: after each case-day, project the total from the rate since the last shedding and,
    when over ``hours``, shed work in the declared order (:func:`shed_plan`) until the projection fits."""

    def __init__(self, cfg, t_start: float, t0: float, hours: float, check_after: int):
        self.cfg, self.t_start, self.t0, self.hours, self.check_after = cfg, t_start, t0, hours, check_after

    def after(self, done: int, left: int, members, window, bar, seconds: dict, shed: list):
        """Returns (members, window) after case-day ``done`` (``left`` to go); appends to ``shed``."""
        n_win = done - window[0]
        rate = (time.time() - window[1]) / max(n_win, 1)
        proj_h = (time.time() - self.t_start + rate * left) / 3600
        budget, total = self.hours, done + left
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"projected {proj_h:.2f} h of {budget:g} h")
        if done == 1 or done % 10 == 0 or not left:
            say(f"{done}/{total} case-days, {time.time() - self.t0:.0f} s elapsed, projected total "
                 f"{proj_h:.2f} h (budget {budget:g} h, Kaggle limit {KAGGLE_LIMIT_H:g} h)")
        if not (left and done >= self.check_after and n_win >= 1 and proj_h > budget):
            return members, window
        over_s = (proj_h - budget) * 3600
        steps = shed_plan(members, self.cfg, window[2], n_win)
        if not steps and not any("nothing left to shed" in s for s in shed):
            shed.append(f"after {done} case-days: projected {proj_h:.2f} h > budget {budget:g} h "
                        f"and nothing left to shed")
            say(f"TIME BUDGET: {shed[-1]}", warn=True)
        saved = 0.0
        for step, target, per_cd in steps:
            if saved * left >= over_s:
                break
            members = _apply_shed(step, target, members)
            saved += per_cd
            what = f"TTA off ({target})" if step == "tta" else f"member {target!r} dropped (lowest weight)"
            shed.append(f"after {done} case-days: projected {proj_h:.2f} h > budget {budget:g} h: {what}")
            say(f"TIME BUDGET: {shed[-1]}", warn=True)
        if saved:
            merge_seconds(seconds, window[2])
            window = (done, time.time(), {})
        return members, window


def merge_seconds(total: dict, part: dict) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v
