"""The search space of OOF tuning (a YAML, see configs/ensemble/search_default.yaml) and the settings it spans.

A *setting* is one value of every number of the ensemble: per class a :class:`ClassParams` (pixel-member
weights, threshold, classifier weights, gate, truncation, minimum component sizes) plus one
:class:`GlobalParams` (tail margin, connectivity, z smoothing: one value for all classes in the ensemble
YAML). :func:`setting_to_ensemble` writes a setting as the mapping ``tools/ensemble.py`` reads.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.metric.scorer import MetricConfig
from kaggle_kit.utils import UserError

__all__ = ["ClassParams", "GlobalParams", "SearchError", "SearchSpace", "load_search_space", "parse_search_space",
           "setting_to_ensemble"]


class SearchError(UserError, ValueError):
    """A search-space YAML that does not validate; the message names the key."""


# ------------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class ClassParams:
    """The numbers of one class. Weights are raw (normalised over the members of a kind at use); ``None``
    (or 0) switches a step off for the class."""

    w_pix: tuple[float, ...]
    thr: float = 0.5
    w_cls: tuple[float, ...] = ()
    gate_prob: float | None = None
    gate_min: int | None = None
    cls_window: int = 1  # odd: slices of the centred z mean of the fused classifier prob (1 = off)
    first_k: int | None = None
    last_k: int | None = None
    tail_prob: float | None = None
    min_area: int | None = None
    min_vol: int | None = None


@dataclass(frozen=True)
class GlobalParams:
    """The numbers shared by all classes (the ensemble YAML has one value of each)."""

    tail_margin: int | None = None
    connectivity: int = 8
    z_smoothing: bool = False


Setting = tuple  # (tuple[ClassParams, ...], GlobalParams)


@dataclass
class SearchSpace:
    """Candidate members and the candidate values of every number (per class where a dict of lists).

    ``options[name]``: per-class lists of candidates (tuple of C lists) for threshold, gate_prob, gate_min,
    cls_window, first_k, last_k, tail_prob, min_area, min_vol; ``globals_[name]``: lists for tail_margin,
    connectivity, z_smoothing. The search starts from the plain average (equal weights, threshold 0.5, every step off);
    a value is replaced only when the best candidate scores more than ``min_gain`` higher on the training
    folds (exact ties: the earlier candidate).
    """

    pixel: list[str]
    classifier: list[str]
    options: dict
    globals_: dict
    weight_step: float = 0.2
    weight_refine: float = 0.1
    weight_max_grid: int = 100
    cls_weight_step: float = 0.25
    rounds: int = 3
    nested: bool = True
    later_rounds: str = "neighbours"  # or "full": every candidate in every round
    held_out_steps: bool = False  # step gains held out per fold too (costs one evaluation per step and fold)
    min_gain: float = 1e-5  # a candidate must beat the current value by more than this to replace it
    per_class: bool = True  # False: every per-class number takes one value for all classes (fewer choices)
    metric: MetricConfig = field(default_factory=MetricConfig)
    metric_yaml: object = "default"
    classes: tuple[str, ...] = CLASSES

    @property
    def floor_thr(self) -> float:
        return min([0.5] + [t for lst in self.options["thr"] for t in lst])


_SEARCH_TOP = {"members", "weights", "classifier_weights", "threshold", "gating", "truncation", "min_area_2d",
               "min_volume_3d", "connectivity", "z_smoothing", "metric", "search"}


def _unknown(obj: Mapping, allowed, where: str) -> None:
    for k in obj:
        if k not in allowed:
            hint = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            raise SearchError(f"{where}: unknown key {k!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; allowed: {sorted(allowed)}")


def _value(v, where: str, kind: str):
    """One candidate. kind: thr (probability in (0, 1)), prob ([0, 1]), prob? (or null = off), int? (integer
    >= 0 or null = off), odd (odd integer >= 1), conn (4 or 8), bool."""
    if v is None:
        if kind.endswith("?"):
            return None
        raise SearchError(f"{where}: null is not a candidate here")
    if kind == "bool":
        if not isinstance(v, bool):
            raise SearchError(f"{where}: expected true/false, got {v!r}")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SearchError(f"{where}: expected a number, got {v!r}")
    if kind == "odd":
        if not isinstance(v, int) or v < 1 or v % 2 == 0:
            raise SearchError(f"{where}: expected an odd integer >= 1, got {v!r}")
        return int(v)
    if kind in ("int?", "conn"):
        if not isinstance(v, int) or v < 0:
            raise SearchError(f"{where}: expected an integer >= 0, got {v!r}")
        if kind == "conn" and v not in (4, 8):
            raise SearchError(f"{where}: connectivity must be 4 or 8, got {v!r}")
        return int(v)
    if kind == "thr" and not 0 < v < 1:
        raise SearchError(f"{where}: expected a threshold strictly in (0, 1), got {v!r}")
    if not 0 <= v <= 1:
        raise SearchError(f"{where}: expected a probability in [0, 1], got {v!r}")
    return float(v)


def _list(v, where: str, kind: str) -> list:
    v = v if isinstance(v, list) else [v]
    if not v:
        raise SearchError(f"{where}: expected a non-empty list of candidates")
    out = [_value(x, f"{where}[{i}]", kind) for i, x in enumerate(v)]
    return list(dict.fromkeys(out))


def _per_class_lists(v, where: str, kind: str, classes, default) -> tuple:
    if v is None:
        v = default
    if isinstance(v, Mapping):
        _unknown(v, set(classes), where)
        missing = [c for c in classes if c not in v]
        if missing:
            raise SearchError(f"{where}: missing class(es) {missing} (give one list or a list per class)")
        return tuple(_list(v[c], f"{where}.{c}", kind) for c in classes)
    lst = _list(v, where, kind)
    return (lst,) * len(classes)


def parse_search_space(obj, source: str = "<search>", available: Mapping | None = None) -> SearchSpace:
    """Validate a loaded search YAML (see configs/ensemble/search_default.yaml) into a SearchSpace.

    ``available``: {exp: kind} of the experiments with OOF maps, used for ``members: auto``.
    """
    if not isinstance(obj, Mapping):
        raise SearchError(f"{source}: expected a mapping at the top level")
    _unknown(obj, _SEARCH_TOP, source)
    members = obj.get("members")
    if members == "auto":
        if not available:
            raise SearchError(f"{source}.members: 'auto' needs the experiments of the probability-map store "
                              "(none found; is --preds right?)")
        members = [{"exp": e, "kind": k} for e, k in sorted(available.items())]
    if not isinstance(members, list) or not members:
        raise SearchError(f"{source}.members: expected a non-empty list of {{exp, kind}}")
    pixel, classifier = [], []
    for i, m in enumerate(members):
        where = f"{source}.members[{i}]"
        if not isinstance(m, Mapping):
            raise SearchError(f"{where}: expected a mapping")
        _unknown(m, {"exp", "kind"}, where)
        if not isinstance(m.get("exp"), str) or m.get("kind") not in ("pixel", "classifier"):
            raise SearchError(f"{where}: needs exp (a name) and kind (pixel | classifier), got {dict(m)}")
        lst = pixel if m["kind"] == "pixel" else classifier
        if m["exp"] in pixel + classifier:
            raise SearchError(f"{where}: member {m['exp']!r} listed twice")
        lst.append(m["exp"])
    if not pixel:
        raise SearchError(f"{source}.members: at least one member of kind 'pixel' is needed")

    def section(key, allowed):
        v = obj.get(key) or {}
        if not isinstance(v, Mapping):
            raise SearchError(f"{source}.{key}: expected a mapping")
        _unknown(v, allowed, f"{source}.{key}")
        return v

    w = section("weights", {"step", "refine_step", "max_grid"})
    cw = section("classifier_weights", {"step"})
    gating = section("gating", {"prob", "min_pixels", "z_window"})
    trunc = section("truncation", {"first_k", "last_k", "tail_margin", "tail_prob"})
    srch = section("search", {"rounds", "nested", "later_rounds", "held_out_steps", "min_gain", "per_class"})
    classes = CLASSES

    def step(v, where, default):
        v = default if v is None else v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1 or abs(1 / v - round(1 / v)) > 1e-9:
            raise SearchError(f"{where}: expected a step 1/n in (0, 1], got {v!r}")
        return float(v)

    def pc(v, where, kind, default):
        return _per_class_lists(v, f"{source}.{where}", kind, classes, default)

    options = {
        "thr": pc(obj.get("threshold"), "threshold", "thr", [0.5]),
        "gate_prob": pc(gating.get("prob"), "gating.prob", "prob?", [None]),
        "gate_min": pc(gating.get("min_pixels"), "gating.min_pixels", "int?", [None]),
        "cls_window": pc(gating.get("z_window"), "gating.z_window", "odd", [1]),
        "first_k": pc(trunc.get("first_k"), "truncation.first_k", "int?", [None]),
        "last_k": pc(trunc.get("last_k"), "truncation.last_k", "int?", [None]),
        "tail_prob": pc(trunc.get("tail_prob"), "truncation.tail_prob", "prob", [0.5]),
        "min_area": pc(obj.get("min_area_2d"), "min_area_2d", "int?", [None]),
        "min_vol": pc(obj.get("min_volume_3d"), "min_volume_3d", "int?", [None]),
    }
    globals_ = {
        "tail_margin": _list(trunc.get("tail_margin", [None]), f"{source}.truncation.tail_margin", "int?"),
        "connectivity": _list(obj.get("connectivity", [8]), f"{source}.connectivity", "conn"),
        "z_smoothing": _list(obj.get("z_smoothing", [False]), f"{source}.z_smoothing", "bool"),
    }
    if not classifier:  # gating and tail truncation need a classifier member: nothing to search
        options["gate_prob"] = ([None],) * len(classes)
        options["cls_window"] = ([1],) * len(classes)
        globals_["tail_margin"] = [None]
    rounds = srch.get("rounds", 3)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise SearchError(f"{source}.search.rounds: expected an integer >= 1, got {rounds!r}")
    flags = {}
    for key, default in (("nested", True), ("held_out_steps", False), ("per_class", True)):
        flags[key] = srch.get(key, default)
        if not isinstance(flags[key], bool):
            raise SearchError(f"{source}.search.{key}: expected true/false, got {flags[key]!r}")
    if not flags["per_class"]:
        mixed = [k for k, lists in options.items() if any(lst != lists[0] for lst in lists)]
        if mixed:
            raise SearchError(f"{source}.search.per_class is false, but {mixed} have per-class candidate lists")
    min_gain = srch.get("min_gain", 1e-5)
    if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not 0 <= min_gain < 1:
        raise SearchError(f"{source}.search.min_gain: expected a number in [0, 1), got {min_gain!r}")
    later = srch.get("later_rounds", "neighbours")
    if later not in ("neighbours", "full"):
        raise SearchError(f"{source}.search.later_rounds: expected 'neighbours' or 'full', got {later!r}")
    metric_yaml = obj.get("metric", "default")
    try:
        metric = MetricConfig.from_name(metric_yaml) if isinstance(metric_yaml, str) else MetricConfig(**metric_yaml)
    except (TypeError, KeyError, ValueError) as e:
        raise SearchError(f"{source}.metric: {e.args[0] if e.args else e}") from None
    max_grid = w.get("max_grid", 100)
    if isinstance(max_grid, bool) or not isinstance(max_grid, int) or max_grid < 1:
        raise SearchError(f"{source}.weights.max_grid: expected an integer >= 1, got {max_grid!r}")
    return SearchSpace(pixel, classifier, options, globals_,
                       weight_step=step(w.get("step"), f"{source}.weights.step", 0.2),
                       weight_refine=step(w.get("refine_step"), f"{source}.weights.refine_step", 0.1),
                       weight_max_grid=max_grid,
                       cls_weight_step=step(cw.get("step"), f"{source}.classifier_weights.step", 0.25),
                       rounds=rounds, nested=flags["nested"], later_rounds=later,
                       held_out_steps=flags["held_out_steps"], min_gain=float(min_gain),
                       per_class=flags["per_class"], metric=metric,
                       metric_yaml=metric_yaml, classes=classes)


def load_search_space(path, available: Mapping | None = None) -> SearchSpace:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SearchError(f"{path}: search space not found")
    try:
        obj = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SearchError(f"{path}: invalid YAML ({e})") from None
    return parse_search_space(obj, str(path), available)


def setting_to_ensemble(space: SearchSpace, setting) -> dict:
    """The ensemble YAML mapping (kaggle_kit.post.ensemble's schema) of a setting: members with weight 0 for
    every class are dropped; a step some classes do not use gets that class's neutral value (gate prob 0,
    min pixels 0, k 0, tail_prob 0, area 0), which the kernels treat as off."""
    cps, gp = setting
    classes = space.classes

    def pc(vals):
        vals = list(vals)
        return vals[0] if all(v == vals[0] for v in vals) else dict(zip(classes, vals))

    members = []
    for m, exp in enumerate(space.pixel):
        ws = [cp.w_pix[m] for cp in cps]
        if any(ws):
            members.append({"exp": exp, "kind": "pixel", "weight": pc(ws)})
    tail = gp.tail_margin is not None and any(cp.tail_prob for cp in cps)
    if any(cp.gate_prob for cp in cps) or tail:
        for m, exp in enumerate(space.classifier):
            ws = [cp.w_cls[m] for cp in cps]
            if any(ws):
                members.append({"exp": exp, "kind": "classifier", "weight": pc(ws)})
    out: dict = {"members": members, "threshold": pc(cp.thr for cp in cps)}
    gating = {}
    if any(cp.gate_prob for cp in cps):
        gating["prob"] = pc(cp.gate_prob or 0.0 for cp in cps)
    if any(cp.gate_min for cp in cps):
        gating["min_pixels"] = pc(cp.gate_min or 0 for cp in cps)
    if (any(cp.gate_prob for cp in cps) or tail) and any(cp.cls_window > 1 for cp in cps):
        gating["z_window"] = pc(cp.cls_window for cp in cps)
    if gating:
        out["gating"] = gating
    trunc = {}
    if any(cp.first_k for cp in cps):
        trunc["first_k"] = pc(cp.first_k or 0 for cp in cps)
    if any(cp.last_k for cp in cps):
        trunc["last_k"] = pc(cp.last_k or 0 for cp in cps)
    if tail:
        trunc["tail_margin"] = gp.tail_margin
        trunc["tail_prob"] = pc(cp.tail_prob or 0.0 for cp in cps)
    if trunc:
        out["truncation"] = trunc
    if any(cp.min_area and cp.min_area > 1 for cp in cps):
        out["min_area_2d"] = pc(cp.min_area or 0 for cp in cps)
    if any(cp.min_vol and cp.min_vol > 1 for cp in cps):
        out["min_volume_3d"] = pc(cp.min_vol or 0 for cp in cps)
    out["connectivity"] = gp.connectivity
    out["z_smoothing"] = bool(gp.z_smoothing)
    out["metric"] = space.metric_yaml
    return out
