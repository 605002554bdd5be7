"""OOF tuning: choose the ensemble members, weights and every post-processing number with the exact metric.

Input: a search space (:class:`SearchSpace`, from YAML, see ``configs/ensemble/search_default.yaml``), the
OOF probability maps of the candidate members and the cache masks. Output: the tuned ensemble as the mapping
``tools/ensemble.py`` reads, plus everything the report shows (:func:`tune_oof`).

Modules: :mod:`.space` (the search YAML, settings, the ensemble mapping of a setting),
:mod:`.evaluate` (the exact, memoised evaluation of candidates on cropped OOF data), this one (the search:
coordinate ascent, nested evaluation, step gains) and :mod:`.report` (markdown + plots). The numbers, their
order and the pipeline itself come from :data:`kaggle_kit.post.steps.STEPS`.

Exactness: candidates run the step functions of ``postprocess`` and are scored by the Scorer's per-class
statistics (see :mod:`.evaluate`), so the chosen setting's in-sample score is the score ``tools/ensemble.py --split oof``
prints; :func:`tune_oof` re-runs the tuned YAML through :func:`~kaggle_kit.post.ensemble.fuse_case_day` +
``Scorer`` and reports that score and its difference from the search's own (``skew``, 0.0 in every test).

Why per-class coordinate ascent is valid. The metric pools rows and volumes over classes:
``dice = sum_c S_c / sum_c N_c`` (S_c: Dice sum of class c's scored rows, N_c their number, which depends on
the prediction: a row predicted on an empty truth counts, a row empty in both does not) and
``hd = sum_c H_c / sum_c T_c`` (T_c: volumes, or rows for the 2D variant, with non-empty truth: independent of
the prediction). Every post-processing step acts on one class's bit plane with that class's numbers, except
the global ones (``tail_margin``, ``connectivity``, ``never_empty``, ``z_smoothing``). So (S_c, N_c, H_c) depend only on class
c's numbers and the globals, the score is an exact function of the per-class sums, and sweeping class c with
the others fixed is exact coordinate ascent on the true metric. It is not separable (N_c sits in the pooled
Dice denominator), hence rounds until nothing changes.

The search: coordinate ascent from the plain average at 0.5 (equal weights, every step off), stage by stage
in the order of the step list (:func:`_stages`: weights, threshold, classifier weights, gate prob, gate min
pixels, classifier z window, tail margin, tail prob, first k, last k, presence prob, presence classifier prob,
min area 2D, connectivity, never empty,
min volume 3D, min relative volume 3D, z smoothing), per class where the number is per class, for ``rounds`` rounds or until a round changes nothing. Round 1 sweeps the weight simplex on a grid, round 2
moves ``refine_step`` of weight between pairs of members, round 3 half of it, and so on; rounds >= 2 try
each other number's neighbours in its list only. Nested evaluation: one run per held-out
fold (tuned on the other folds) plus the full fit, advancing in lockstep so that each stage evaluates the
union of their candidates in one pass over the case-days; the statistics are memoised per case-day, so the
runs share every candidate they have in common.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from kaggle_kit.post.steps import CLASSIFIER_PARAMS, PARAMS, STEPS
from kaggle_kit.post.ensemble import parse_ensemble_config
from kaggle_kit.tune.metric_reruns import exact_choices, mapping_key, select_and_hold_out
from kaggle_kit.tune.evaluate import Evaluator, OOFData, class_key, load_oof, setting_keys, total_score, verify_setting
from kaggle_kit.tune.space import (
    ClassParams,
    GlobalParams,
    SearchError,
    SearchSpace,
    Setting,
    load_search_space,
    parse_search_space,
    setting_to_ensemble,
)

__all__ = [
    "ClassParams",
    "Evaluator",
    "GlobalParams",
    "OOFData",
    "SearchError",
    "SearchSpace",
    "Tuner",
    "load_oof",
    "load_search_space",
    "parse_search_space",
    "setting_keys",
    "setting_to_ensemble",
    "simplex_grid",
    "tune_oof",
    "verify_setting",
]


def simplex_grid(m: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of ``m`` members on the simplex with the given step (1/n), as rounded floats."""
    n = round(1 / step)
    return [tuple(round(i / n, 12) for i in parts)
            for parts in itertools.product(range(n + 1), repeat=m) if sum(parts) == n]


def _on_simplex(w) -> tuple[float, ...]:
    s = sum(w)
    return tuple(round(x / s, 12) for x in w)


def _weight_candidates(w, step: float, refine: float, max_grid: int, first: bool) -> list[tuple]:
    m = len(w)
    if m == 1:
        return [w]
    if not first:  # move `refine` of weight from one member to another
        base = _on_simplex(w)
        out = [base]
        for a, b in itertools.permutations(range(m), 2):
            if base[a] >= refine - 1e-12:
                v = list(base)
                v[a], v[b] = round(max(v[a] - refine, 0.0), 12), round(v[b] + refine, 12)
                out.append(tuple(v))
        return out
    grid = simplex_grid(m, step)
    if len(grid) <= max_grid:
        return grid
    base, n = _on_simplex(w), round(1 / step)  # too many members for a grid: a line towards each one
    out = []
    for j in range(m):
        rest = sum(base) - base[j]
        for i in range(n + 1):
            v = i / n
            if rest <= 0 and i < n:
                continue
            out.append(tuple(round(v if k == j else (1 - v) * base[k] / rest, 12) for k in range(m)))
    return out


def candidate_values(cur, lst: list, full: bool) -> list:
    """Candidates of a list-valued number, the current value first: the whole list (``full``), else the
    current value and its neighbours in the sorted list (off sorts first)."""
    if full:
        return list(dict.fromkeys([cur] + lst))
    order = sorted(dict.fromkeys([cur] + lst), key=lambda v: (v is not None, v if v is not None else 0))
    i = order.index(cur)
    return list(dict.fromkeys([cur] + order[max(i - 1, 0):i + 2]))


@dataclass
class _Run:
    """One coordinate ascent: on all case-days (``fold`` None) or on all folds but ``fold``."""

    name: str
    fold: int | None
    train: np.ndarray
    test: np.ndarray | None
    setting: Setting
    history: list = field(default_factory=list)  # dicts: round, stage, class, values, scores, chosen
    rounds_run: int = 0
    done: bool = False


def _stages() -> tuple[str, ...]:
    """The coordinate stages in order: the pixel weights, then every number of the step list in its order
    (:data:`kaggle_kit.post.steps.PARAMS`), the classifier weights just before the first step that can read
    the classifier."""
    out = ["weights"]
    for s in STEPS:
        if s.needs_classifier and "classifier_weights" not in out:
            out.append("classifier_weights")
        for p in s.params + s.reads + (CLASSIFIER_PARAMS if s.needs_classifier else ()):
            if p.name not in out:
                out.append(p.name)
    return tuple(out)


def _step_groups() -> tuple:
    """The report's step gains: (label, ClassParams fields, GlobalParams fields), cumulative, one group per
    step of the list (its numbers not in an earlier group; the classifier's with the first step reading it)."""
    out = [("plain average @0.5", (), ()), ("+ weights", ("weights",), ())]
    seen = {"weights"}
    for s in STEPS:
        names = [p.name for p in s.params + s.reads + (CLASSIFIER_PARAMS if s.needs_classifier else ())]
        if s.needs_classifier:
            names.insert(0, "classifier_weights")
        names = [n for n in names if n not in seen]
        seen.update(names)
        out.append((f"+ {s.label}", tuple(n for n in names if n in _CLASS_FIELDS),
                    tuple(n for n in names if n not in _CLASS_FIELDS)))
    return tuple(out)


_CLASS_FIELDS = {f.name for f in fields(ClassParams)}
_STAGES = _stages()
_GLOBAL_STAGES = tuple(p.name for p in PARAMS if not p.per_class)
STEP_GROUPS = _step_groups()
_PARAM = {p.name: p for p in PARAMS}


def _label(v, name: str = "") -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(f"{x:g}" for x in v) + ")"
    p = _PARAM.get(name)
    off = v is None or (p is not None and p.kind in ("count", "prob", "fraction") and p.is_neutral(v))
    return "off" if off else str(v)


class Tuner:
    """Coordinate ascent over a :class:`SearchSpace` on :class:`OOFData`, for the full fit and (``nested``)
    one run per held-out fold, advancing in lockstep over one shared :class:`Evaluator`."""

    def __init__(self, space: SearchSpace, data: OOFData, workers: int = 2, log=print):
        if list(data.pixel) != list(space.pixel) or list(data.classifier) != list(space.classifier):
            raise SearchError("the OOF data holds other members than the search space")
        self.space, self.data, self.log = space, data, log
        self.ev = Evaluator(data, space.metric, workers)
        self.n_classes = len(space.classes)
        self.all = np.arange(len(data.case_days))
        self.fold_ids = sorted(set(data.folds.tolist()))

    # ----------------------------------------------------------------------------- settings
    def start(self) -> Setting:
        """The plain average at threshold 0.5, every step off."""
        mp, mc = len(self.space.pixel), len(self.space.classifier)
        opts, glob = self.space.options, self.space.globals_
        cp = [ClassParams((1.0,) * mp, (1.0,) * mc,
                          **{p.name: opts[p.name][c][0] for p in PARAMS if p.per_class and p.start_first})
              for c in range(self.n_classes)]
        return tuple(cp), GlobalParams(**{p.name: glob[p.name][0] for p in PARAMS if not p.per_class and p.start_first})

    def single(self, m: int) -> Setting:
        """Pixel member ``m`` alone at threshold 0.5, every step off."""
        cps, gp = self.start()
        w = tuple(1.0 if j == m else 0.0 for j in range(len(self.space.pixel)))
        return tuple(replace(cp, weights=w) for cp in cps), gp

    def keys(self, setting) -> list[tuple]:
        return setting_keys(setting)

    def score(self, setting, idx, exact: bool = False) -> float:
        return self.ev.score(self.keys(setting), idx, exact)

    # ----------------------------------------------------------------------------- stages
    def _values(self, cur, lst: list, rnd: int) -> list:
        return candidate_values(cur, lst, rnd == 1 or self.space.later_rounds == "full")

    def _class_candidates(self, stage: str, c: int, cp, gp, rnd: int) -> list:
        """(value, ClassParams) candidates of class c's number ``stage``, the current value first; none when
        they all give the same class key (the number has no effect there, e.g. a tail prob with no tail)."""
        sp = self.space
        if stage == "weights":  # round 1: the grid; then moves of refine_step, halved every round
            refine = sp.weight_refine / 2 ** max(rnd - 2, 0)
            vals = _weight_candidates(cp.weights, sp.weight_step, refine, sp.weight_max_grid, rnd == 1)
            vals = list(dict.fromkeys([cp.weights] + vals))
        elif stage == "classifier_weights":
            vals = list(dict.fromkeys([cp.classifier_weights] + simplex_grid(len(cp.classifier_weights),
                                                                              sp.cls_weight_step)))
        else:
            vals = self._values(getattr(cp, stage), sp.options[stage][c], rnd)
        cands = [(v, replace(cp, **{stage: v})) for v in vals]
        return cands if len({class_key(p, gp) for _, p in cands}) > 1 else []

    def _shared_candidates(self, stage: str, setting, rnd: int) -> list:
        """Candidate settings of a global number, or (``per_class: false``) of a per-class number set to
        the same value for every class."""
        if stage in _GLOBAL_STAGES:
            return self._global_candidates(stage, setting, rnd)
        cps, gp = setting
        return [(v, (tuple(replace(cp, **{stage: v}) for cp in cps), gp))
                for v, _ in self._class_candidates(stage, 0, cps[0], gp, rnd)]

    def _global_candidates(self, stage: str, setting, rnd: int = 1) -> list:
        cps, gp = setting
        vals = self._values(getattr(gp, stage), self.space.globals_[stage], rnd)
        cands = [(v, (cps, replace(gp, **{stage: v}))) for v in vals]
        return cands if len({tuple(setting_keys(s)) for _, s in cands}) > 1 else []

    def _stage(self, stage: str, runs: list, rnd: int) -> list[bool]:
        """One coordinate stage for every active run; returns whether each run's setting changed."""
        ev, metric = self.ev, self.space.metric
        plans, keys = [], []
        shared = stage in _GLOBAL_STAGES or not self.space.per_class
        for r in runs:
            cps, gp = r.setting
            if shared:
                cands = self._shared_candidates(stage, r.setting, rnd)
                for _, s in cands:
                    keys += self.keys(s)
            else:
                cands = [self._class_candidates(stage, c, cps[c], gp, rnd) for c in range(self.n_classes)]
                for c, lst in enumerate(cands):
                    keys += [(c,) + class_key(p, gp) for _, p in lst]
            plans.append(cands)
        if not keys:
            return [False] * len(runs)
        ev.evaluate(keys, desc=f"round {rnd} {stage}")
        changed = []
        for r, cands in zip(runs, plans):
            idx = r.train
            cur_keys = self.keys(r.setting)
            sums = np.array([ev.sums(k, idx) for k in cur_keys])
            moved = False
            if shared:
                if cands:
                    scores = [total_score(np.array([ev.sums(k, idx) for k in self.keys(s)]), metric) for _, s in cands]
                    i = _pick(scores, self.space.min_gain)
                    r.history.append({"round": rnd, "stage": stage, "class": None, "values": [v for v, _ in cands],
                                      "labels": [_label(v, stage) for v, _ in cands], "scores": scores,
                                      "chosen": _label(cands[i][0], stage)})
                    moved = i != 0
                    r.setting = cands[i][1]
            else:
                cps = list(r.setting[0])
                gp = r.setting[1]
                for c, lst in enumerate(cands):
                    if not lst:
                        continue
                    scores = []
                    for _, p in lst:
                        s = sums.copy()
                        s[c] = ev.sums((c,) + class_key(p, gp), idx)
                        scores.append(total_score(s, metric))
                    i = _pick(scores, self.space.min_gain)
                    cps[c] = lst[i][1]
                    sums[c] = ev.sums((c,) + class_key(cps[c], gp), idx)
                    r.history.append({"round": rnd, "stage": stage, "class": self.space.classes[c],
                                      "values": [v for v, _ in lst], "labels": [_label(v, stage) for v, _ in lst],
                                      "scores": scores, "chosen": _label(lst[i][0], stage)})
                    moved |= i != 0
                r.setting = (tuple(cps), gp)
            changed.append(moved)
        return changed

    # ----------------------------------------------------------------------------- runs
    def make_runs(self) -> list[_Run]:
        folds = self.data.folds
        runs = []
        if self.space.nested and len(self.fold_ids) > 1:
            for k in self.fold_ids:
                runs.append(_Run(f"fold {k}", k, np.flatnonzero(folds != k), np.flatnonzero(folds == k), self.start()))
        runs.append(_Run("all folds", None, self.all, None, self.start()))
        return runs

    def run(self, runs: list[_Run]) -> list[_Run]:
        for rnd in range(1, self.space.rounds + 1):
            active = [r for r in runs if not r.done]
            if not active:
                break
            moved = [False] * len(active)
            for stage in _STAGES:
                ch = self._stage(stage, active, rnd)
                moved = [a or b for a, b in zip(moved, ch)]
            for r, m in zip(active, moved):
                r.rounds_run = rnd
                r.done = not m
            self.log(f"round {rnd}: {sum(moved)} of {len(active)} run(s) changed; "
                     f"{len(self.ev.memo)} class candidates evaluated, {self.ev.seconds:.0f} s")
        return runs

    def sweeps(self, run: _Run) -> list[dict]:
        """The report's curves for the full fit: every threshold of the list around the final setting, and
        for every other stage its latest widest sweep (the round-1 grid for weights; each at the setting
        current when it was swept)."""
        ev, metric = self.ev, self.space.metric
        cps, gp = run.setting
        plans = [(c, self._class_candidates("threshold", c, cps[c], gp, 1)) for c in range(self.n_classes)]
        ev.evaluate([(c,) + class_key(p, gp) for c, lst in plans for _, p in lst], desc="threshold curves")
        base = np.array([ev.sums(k, run.train) for k in self.keys(run.setting)])
        out = []
        for c, lst in plans:
            scores = []
            for _, p in lst:
                s = base.copy()
                s[c] = ev.sums((c,) + class_key(p, gp), run.train)
                scores.append(total_score(s, metric))
            out.append({"stage": "threshold", "class": self.space.classes[c], "round": "final",
                        "values": [v for v, _ in lst], "labels": [_label(v, "threshold") for v, _ in lst],
                        "scores": scores})
        latest = {}  # per (stage, class): the latest of the widest sweeps (later rounds may try neighbours only)
        for h in run.history:
            key = (h["stage"], h["class"])
            if h["stage"] != "threshold" and len(h["values"]) >= len(latest.get(key, {"values": ()})["values"]):
                latest[key] = h
        return out + list(latest.values())

    def step_settings(self, setting) -> list[tuple[str, Setting]]:
        """Cumulative settings from the plain average to ``setting``, one group of numbers at a time."""
        cps0, gp0 = self.start()
        cps_t, gp_t = setting
        cur_c, cur_g = list(cps0), gp0
        out = []
        for label, cfields, gfields in STEP_GROUPS:
            cur_c = [replace(a, **{f: getattr(b, f) for f in cfields}) for a, b in zip(cur_c, cps_t)]
            cur_g = replace(cur_g, **{f: getattr(gp_t, f) for f in gfields})
            out.append((label, (tuple(cur_c), cur_g)))
        return out


def _pick(scores, min_gain: float = 0.0) -> int:
    """Index of the chosen candidate: the current value (index 0) unless the best beats it by more than
    ``min_gain``; then the best, the earliest of exact ties (within 1e-12)."""
    best = max(scores)
    if best - scores[0] <= min_gain:
        return 0
    tol = 1e-12 * max(1.0, abs(best))
    return next(i for i, s in enumerate(scores) if s >= best - tol)


def _step_rows(tuner: Tuner, step_sets: dict, full: _Run, fold_runs: list) -> list[dict]:
    """The cumulative gain of each step group: in-sample on all case-days (the full fit) and, with
    ``held_out_steps``, held out per fold (each fold's own fit)."""
    rows = []
    for j, (label, s) in enumerate(step_sets[id(full)]):
        row = {"step": label, "in_sample": tuner.score(s, tuner.all)}
        if fold_runs and tuner.space.held_out_steps:
            ho = [tuner.score(step_sets[id(r)][j][1], r.test) for r in fold_runs]
            row["held_out_mean"], row["held_out_std"] = float(np.mean(ho)), float(np.std(ho))
        rows.append(row)
    return rows


def _fold_rows(tuner: Tuner, fold_runs: list, start, singles) -> tuple[list[dict], float | None]:
    """One row per held-out fold (its fit's scores, the plain average's and the single members' on the same
    fold) and the pooled held-out score (every case-day scored by the fit that did not see its fold)."""
    space, ev = tuner.space, tuner.ev
    rows = [{"fold": r.fold, "n_case_days": len(r.test), "in_sample": tuner.score(r.setting, r.train),
             "held_out": tuner.score(r.setting, r.test), "plain_average_05": tuner.score(start, r.test),
             "single_members": {e: tuner.score(s, r.test) for e, s in zip(space.pixel, singles)},
             "rounds": r.rounds_run, "ensemble": setting_to_ensemble(space, r.setting)} for r in fold_runs]
    if not fold_runs:
        return rows, None
    sums = np.zeros((tuner.n_classes, 4))
    for r in fold_runs:
        sums += np.array([ev.sums(k, r.test) for k in tuner.keys(r.setting)])
    return rows, total_score(sums, space.metric)


def _summary(tuner: Tuner, full: _Run, ens: dict, start, singles, fold_rows: list, pooled, in_sample_search: float) -> dict:
    """The scores the report and the JSON line show: tuned (in-sample, held out), plain average, single
    members, per class, members kept and dropped."""
    space, ev, metric = tuner.space, tuner.ev, tuner.space.metric
    per_class = {}
    for c, k in enumerate(tuner.keys(full.setting)):
        s = ev.sums(k, tuner.all)
        d, h = (s[0] / s[1] if s[1] else 1.0), (s[2] / s[3] if s[3] else 0.0)
        per_class[space.classes[c]] = {"dice": d, "hausdorff": h, "score": metric.combine(d, h)}
    single_all = {e: tuner.score(s, tuner.all) for e, s in zip(space.pixel, singles)}
    best_exp = max(single_all, key=single_all.get)
    ho = [f["held_out"] for f in fold_rows]
    summary = {
        "in_sample": in_sample_search, "in_sample_search": in_sample_search,
        "held_out_mean": float(np.mean(ho)) if ho else None, "held_out_std": float(np.std(ho)) if ho else None,
        "held_out_pooled": pooled,
        "best_single_member": {best_exp: single_all[best_exp]}, "single_members": single_all,
        "plain_average_05": tuner.score(start, tuner.all),
        "members_kept": [m["exp"] for m in ens["members"]],
        "members_dropped": [e for e in space.pixel + space.classifier if e not in [m["exp"] for m in ens["members"]]],
        "metric": metric.name, "n_case_days": len(tuner.data.case_days), "n_folds": len(tuner.fold_ids),
        "per_class": per_class,
    }
    if fold_rows:
        summary["plain_average_05_folds_mean"] = float(np.mean([f["plain_average_05"] for f in fold_rows]))
        summary["single_members_folds_mean"] = {e: float(np.mean([f["single_members"][e] for f in fold_rows]))
                                                for e in space.pixel}
    return summary


def _held_out_means(fold_rows: list) -> tuple[float, float]:
    """(tuned, plain average @0.5): mean held-out scores over the nested folds."""
    return (float(np.mean([f["held_out"] for f in fold_rows])),
            float(np.mean([f["plain_average_05"] for f in fold_rows])))


def tuning_loses_held_out(fold_rows: list) -> bool:
    """True when the tuning procedure's mean held-out score (each fold scored by the setting tuned without it)
    is below the plain average's at 0.5 on the same folds: with few case-days per fold the search can fit the
    training folds' noise (e.g. a min_area_2d that deletes a small organ everywhere on one new case-day)."""
    if not fold_rows:
        return False
    tuned, plain = _held_out_means(fold_rows)
    return tuned < plain


def _check_mapping(space: SearchSpace, ens: dict) -> dict:
    """The mapping of the train/serve check of a written ensemble: scored under the search's own metric (for
    a target such as mlebench, its surrogate), like for like with the search's in-sample number."""
    return {**ens, "metric": asdict(space.metric)} if space.target is not None else ens


def _exact_pass(space: SearchSpace, data: OOFData, full: _Run, start, steps: list, fold_runs: list,
                fallback: bool, workers: int):
    """The exact re-runs in one pass over the case-days (:func:`select_and_hold_out`): each fold's tuned
    setting on its held-out case-days under both metrics, for an mlebench target the full fit's candidates,
    and the train/serve check of every setting the run may write (the plain average with ``fallback``;
    else each candidate of the exact choice, or the tuned setting) on all case-days.

    Returns (``select_and_hold_out``'s result without its "ensemble", ``check``): ``check(ens)`` is the
    check's ``Scorer.result()`` of the written mapping ``ens``, with "seconds" (0.0 when the pass covered
    it; a mapping it did not cover is re-run on its own, as ``verify_setting``)."""
    names = [cd.name for cd in data.case_days]
    cache, preds, target = data.source["cache"], data.source["preds"], space.target or space.metric
    cands = [(label, setting_to_ensemble(space, st)) for label, st in [("plain average @0.5", start)] + steps]
    if fallback:
        finals = [setting_to_ensemble(space, start)]
    else:
        finals = ([ens for _, ens in exact_choices(cands, target)] if target.hd_variant == "mlebench"
                  else [setting_to_ensemble(space, full.setting)])
    also = {}
    for ens in finals:
        mapping = _check_mapping(space, ens)
        also[mapping_key(ens)] = (mapping, names, [parse_ensemble_config(mapping, "<tuned>").metric])
    both = select_and_hold_out(
        cands, [(r.fold, setting_to_ensemble(space, r.setting), [names[i] for i in r.test]) for r in fold_runs],
        names, cache, preds, target, also=also, workers=workers, order=names)
    both.pop("ensemble")  # the chosen setting's mapping, rebuilt from the setting by the caller
    checks = both.pop("also")

    def check(ens: dict) -> dict:
        if mapping_key(ens) in checks:
            (res,) = checks[mapping_key(ens)].values()
            return {**res, "seconds": 0.0}
        t = time.perf_counter()
        res = verify_setting(_check_mapping(space, ens), cache, preds, names)
        return {**res, "seconds": time.perf_counter() - t}

    return both, check


def tune_oof(space: SearchSpace, data: OOFData, workers: int = 2, verify: bool = True, log=print) -> dict:
    """Nested coordinate ascent + full fit; returns everything the YAML, the report and the JSON need:
    ``ensemble`` (the tuned YAML mapping), ``summary`` (scores), ``runs``, ``sweeps``, ``steps``, ``timing``.

    ``verify``: re-run the written mapping through the ensemble's own path (needs ``data.source``) and report
    its score as ``in_sample`` (and the difference from the search's own number as ``skew``), in the same
    pass over the case-days as the held-out re-runs under both metrics and the exact mlebench choice
    (:func:`_exact_pass`; ``timing["verify_s"]`` is that pass); ``workers`` threads for the search and it.
    """
    t0 = time.perf_counter()
    tuner = Tuner(space, data, workers, log)
    ev = tuner.ev
    runs = tuner.make_runs()
    full = runs[-1]
    # the baselines share the start of every run: evaluate them together
    start, singles = tuner.start(), [tuner.single(m) for m in range(len(space.pixel))]
    ev.evaluate([k for s in [start] + singles for k in tuner.keys(s)], desc="baselines")
    tuner.run(runs)
    t_search = time.perf_counter() - t0

    # step gains: in-sample on all case-days (full fit); held out per fold (each fold's own fit) on request
    step_runs = runs if space.held_out_steps else [full]
    step_sets = {id(r): tuner.step_settings(r.setting) for r in step_runs}
    ev.evaluate([k for r in step_runs for _, s in step_sets[id(r)] for k in tuner.keys(s)], desc="step gains")
    sweeps = tuner.sweeps(full)
    t_extra = time.perf_counter() - t0 - t_search

    fold_runs = [r for r in runs if r.fold is not None]
    steps = _step_rows(tuner, step_sets, full, fold_runs)
    fold_rows, pooled = _fold_rows(tuner, fold_runs, start, singles)

    # known before the exact pass: it reads the search's held-out numbers only
    fallback = space.fallback_plain and tuning_loses_held_out(fold_rows)
    both = check = None
    if verify and data.source:
        t1 = time.perf_counter()
        both, check = _exact_pass(space, data, full, start, step_sets[id(full)], fold_runs, fallback, workers)
        timing_exact = time.perf_counter() - t1
        if both["selected_exactly"]:
            full.setting = dict([("plain average @0.5", start)] + step_sets[id(full)])[both["chosen"]]
    if fallback:  # the nested folds say the tuned pipeline generalises worse than no tuning at all
        tuned, plain = _held_out_means(fold_rows)
        log(f"held-out folds: tuned {tuned:.4f} < plain average @0.5 {plain:.4f}: writing the plain average "
            f"(fallback_plain)")
        full.setting = start
    ens = setting_to_ensemble(space, full.setting)
    in_sample_search = tuner.score(full.setting, tuner.all, exact=True)
    summary = _summary(tuner, full, ens, start, singles, fold_rows, pooled, in_sample_search)
    summary["fallback_plain"] = bool(fallback)
    timing = {"search_s": t_search, "steps_and_sweeps_s": t_extra, "evaluation_s": ev.seconds,
              "passes": ev.n_passes, "class_candidates": len(ev.memo)}
    if both is not None:
        summary["metric_reruns"] = both
        summary["held_out_by_metric"] = both["held_out_mean"]
        if space.target is not None:  # the search's numbers are its surrogate's; the target's, exact:
            summary["target_metric"] = space.target.name
            summary["in_sample_target"] = next(r[space.target.name] for r in both["candidates"]
                                               if r["step"] == both["chosen"])
        res = check(ens)
        timing["verify_s"] = timing_exact + res.pop("seconds")
        summary["in_sample"] = res["score"]
        summary["skew"] = abs(res["score"] - in_sample_search)
    ev.close()  # the evaluation processes (on an error they go with the Evaluator, or with this process)
    timing["total_s"] = time.perf_counter() - t0
    return {"ensemble": ens, "summary": summary, "folds": fold_rows, "steps": steps, "sweeps": sweeps,
            "runs": [{"name": r.name, "fold": r.fold, "rounds": r.rounds_run, "converged": r.done,
                      "history": r.history} for r in runs],
            "timing": timing}
