"""The search space of OOF tuning (a YAML, see configs/ensemble/search_default.yaml) and the settings it spans.

A *setting* is one value of every number of the ensemble: per class a :class:`ClassParams` (pixel-member
``weights``, ``classifier_weights`` and every per-class number of the step list) plus one
:class:`GlobalParams` (the global numbers: one value for all classes in the ensemble YAML). Both classes,
the search YAML's post-processing keys and :func:`setting_to_ensemble` are derived from
:data:`kaggle_kit.post.steps.STEPS`: a number has the same name in both YAMLs' schema, in the settings and
in the search's stages.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass

from kaggle_kit.config import ConfigError, read_yaml_file
from kaggle_kit.data.raw import CLASSES
from kaggle_kit.metric.scorer import MetricConfig
from kaggle_kit.post.steps import PARAMS, STEPS, read_candidates, unknown_keys, write_values, yaml_layout
from kaggle_kit.tune.metric_reruns import search_metric

__all__ = ["ClassParams", "GlobalParams", "SearchError", "SearchSpace", "class_values", "load_search_space",
           "parse_search_space", "setting_to_ensemble"]


class SearchError(ConfigError):
    """A search-space YAML that does not validate; the message names the key."""


# ------------------------------------------------------------------------------------- parameters
ClassParams = make_dataclass(
    "ClassParams",
    [("weights", tuple), ("classifier_weights", tuple, field(default=()))]
    + [(p.name, object, field(default=p.neutral)) for p in PARAMS if p.per_class],
    frozen=True)
ClassParams.__module__ = __name__
ClassParams.__doc__ = """The numbers of one class: raw member weights (normalised over the members of a kind at
use) and one field per per-class number of the step list, its neutral value by default."""

GlobalParams = make_dataclass(
    "GlobalParams", [(p.name, object, field(default=p.neutral)) for p in PARAMS if not p.per_class],
    frozen=True)
GlobalParams.__module__ = __name__
GlobalParams.__doc__ = "The global numbers of the step list (one value for all classes), neutral by default."

Setting = tuple  # (tuple[ClassParams, ...], GlobalParams)


def class_values(cp, gp) -> dict:
    """One class's numbers as the steps read them: name -> scalar, globals included."""
    return {p.name: getattr(gp if not p.per_class else cp, p.name) for p in PARAMS}


@dataclass
class SearchSpace:
    """Candidate members and the candidate values of every number (per class where a dict of lists).

    ``options[name]``: per-class lists of candidates (tuple of C lists) of every per-class number of the step
    list; ``globals_[name]``: lists for the global ones. The search starts from the plain average (equal
    weights, threshold 0.5, every step off); a value is replaced only when the best candidate scores more than
    ``min_gain`` higher on the training folds (exact ties: the earlier candidate).
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
    min_gain: float = 1e-3  # a candidate must beat the current value by more than this to replace it
    per_class: bool = True  # False: every per-class number takes one value for all classes (fewer choices)
    fallback_plain: bool = True  # write the plain average @0.5 when the nested held-out says tuning loses to it
    metric: MetricConfig = field(default_factory=MetricConfig)
    metric_yaml: object = "default"
    # the metric tuned for when ``metric`` is only its per-class surrogate (mlebench: see tune.metric_reruns)
    target: MetricConfig | None = None
    classes: tuple[str, ...] = CLASSES

    @property
    def floor_thr(self) -> float:
        return min([0.5] + [t for lst in self.options["threshold"] for t in lst])


# the search's own keys; the post-processing ones come from the step list
_OWN = {"members", "weights", "classifier_weights", "metric", "search"}


def allowed_keys() -> set:
    """Top-level keys of a search YAML: the search's own and those the steps declare."""
    return _OWN | yaml_layout()[""]


def _members(obj: Mapping, source: str, available: Mapping | None) -> tuple[list, list]:
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
        unknown_keys(m, {"exp", "kind"}, where, SearchError)
        if not isinstance(m.get("exp"), str) or m.get("kind") not in ("pixel", "classifier"):
            raise SearchError(f"{where}: needs exp (a name) and kind (pixel | classifier), got {dict(m)}")
        lst = pixel if m["kind"] == "pixel" else classifier
        if m["exp"] in pixel + classifier:
            raise SearchError(f"{where}: member {m['exp']!r} listed twice")
        lst.append(m["exp"])
    if not pixel:
        raise SearchError(f"{source}.members: at least one member of kind 'pixel' is needed")
    return pixel, classifier


def parse_search_space(obj, source: str = "<search>", available: Mapping | None = None) -> SearchSpace:
    """Validate a loaded search YAML (see configs/ensemble/search_default.yaml) into a SearchSpace.

    ``available``: {exp: kind} of the experiments with OOF maps, used for ``members: auto``.
    """
    if not isinstance(obj, Mapping):
        raise SearchError(f"{source}: expected a mapping at the top level")
    unknown_keys(obj, allowed_keys(), source, SearchError)
    pixel, classifier = _members(obj, source, available)

    def section(key, allowed):
        v = obj.get(key) or {}
        if not isinstance(v, Mapping):
            raise SearchError(f"{source}.{key}: expected a mapping")
        unknown_keys(v, allowed, f"{source}.{key}", SearchError)
        return v

    w = section("weights", {"step", "refine_step", "max_grid"})
    cw = section("classifier_weights", {"step"})
    srch = section("search", {"rounds", "nested", "later_rounds", "held_out_steps", "min_gain", "per_class",
                              "fallback_plain"})
    classes = CLASSES

    def step(v, where, default):
        v = default if v is None else v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1 or abs(1 / v - round(1 / v)) > 1e-9:
            raise SearchError(f"{where}: expected a step 1/n in (0, 1], got {v!r}")
        return float(v)

    options, globals_ = read_candidates(obj, classes, source, SearchError)
    if not classifier:  # the classifier's numbers need a classifier member: nothing to search
        for p in PARAMS:
            if p.classifier:
                (options if p.per_class else globals_)[p.name] = \
                    ([p.neutral],) * len(classes) if p.per_class else [p.neutral]
    rounds = srch.get("rounds", SearchSpace.rounds)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise SearchError(f"{source}.search.rounds: expected an integer >= 1, got {rounds!r}")
    flags = {}
    for key in ("nested", "held_out_steps", "per_class", "fallback_plain"):
        flags[key] = srch.get(key, getattr(SearchSpace, key))
        if not isinstance(flags[key], bool):
            raise SearchError(f"{source}.search.{key}: expected true/false, got {flags[key]!r}")
    if not flags["per_class"]:
        mixed = [k for k, lists in options.items() if any(lst != lists[0] for lst in lists)]
        if mixed:
            raise SearchError(f"{source}.search.per_class is false, but {mixed} have per-class candidate lists")
    min_gain = srch.get("min_gain", SearchSpace.min_gain)
    if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not 0 <= min_gain < 1:
        raise SearchError(f"{source}.search.min_gain: expected a number in [0, 1), got {min_gain!r}")
    later = srch.get("later_rounds", SearchSpace.later_rounds)
    if later not in ("neighbours", "full"):
        raise SearchError(f"{source}.search.later_rounds: expected 'neighbours' or 'full', got {later!r}")
    metric_yaml = obj.get("metric", SearchSpace.metric_yaml)
    try:
        metric = MetricConfig.from_name(metric_yaml) if isinstance(metric_yaml, str) else MetricConfig(**metric_yaml)
    except (TypeError, KeyError, ValueError) as e:
        raise SearchError(f"{source}.metric: {e.args[0] if e.args else e}") from None
    target = metric if search_metric(metric) != metric else None
    metric = search_metric(metric)  # mlebench does not decompose per class: its surrogate is searched
    max_grid = w.get("max_grid", SearchSpace.weight_max_grid)
    if isinstance(max_grid, bool) or not isinstance(max_grid, int) or max_grid < 1:
        raise SearchError(f"{source}.weights.max_grid: expected an integer >= 1, got {max_grid!r}")
    return SearchSpace(pixel, classifier, options, globals_,
                       weight_step=step(w.get("step"), f"{source}.weights.step", SearchSpace.weight_step),
                       weight_refine=step(w.get("refine_step"), f"{source}.weights.refine_step",
                                          SearchSpace.weight_refine),
                       weight_max_grid=max_grid,
                       cls_weight_step=step(cw.get("step"), f"{source}.classifier_weights.step",
                                            SearchSpace.cls_weight_step),
                       rounds=rounds, nested=flags["nested"], later_rounds=later,
                       held_out_steps=flags["held_out_steps"], min_gain=float(min_gain),
                       per_class=flags["per_class"], fallback_plain=flags["fallback_plain"], metric=metric,
                       metric_yaml=metric_yaml, target=target, classes=classes)


def load_search_space(path, available: Mapping | None = None) -> SearchSpace:
    return parse_search_space(read_yaml_file(path, "search space", SearchError), str(path), available)


def setting_to_ensemble(space: SearchSpace, setting) -> dict:
    """The ensemble YAML mapping (kaggle_kit.post.ensemble's schema) of a setting: members with weight 0 for
    every class are dropped, classifier members too when no step reads the classifier; the step numbers are
    written by :func:`kaggle_kit.post.steps.write_values` (a step some classes do not use gets those classes'
    neutral value)."""
    cps, gp = setting
    classes = space.classes
    values = [class_values(cp, gp) for cp in cps]
    post = write_values(values, classes)

    def pc(vals):
        vals = list(vals)
        return vals[0] if all(v == vals[0] for v in vals) else dict(zip(classes, vals))

    members = []
    for m, exp in enumerate(space.pixel):
        ws = [cp.weights[m] for cp in cps]
        if any(ws):
            members.append({"exp": exp, "kind": "pixel", "weight": pc(ws)})
    if any(s.uses_classifier(v) for s in STEPS[1:] for v in values):
        for m, exp in enumerate(space.classifier):
            ws = [cp.classifier_weights[m] for cp in cps]
            if any(ws):
                members.append({"exp": exp, "kind": "classifier", "weight": pc(ws)})
    return {"members": members, **post, "metric": space.metric_yaml}
