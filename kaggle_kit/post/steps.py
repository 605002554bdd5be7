"""The post-processing pipeline, declared once: an ordered list of steps and their parameters.

In the spirit of nnU-Net v2's post-processing (an ordered list of ``(function, kwargs)`` chosen on
cross-validation and applied as is): :data:`STEPS` is the pipeline. Each :class:`Step` declares its
parameters (:class:`Param`: the one name used everywhere, the YAML path, the validation kind, per class or
global, the NEUTRAL value that makes it a no-op, whether it reads the classifier) and its kernel, a numba
function of :mod:`kaggle_kit.post.kernels` with its numpy twin. Everything else is derived from this list:

- :mod:`kaggle_kit.post.ensemble`: the ensemble YAML keys it accepts and their checks (:func:`read_values`);
- :func:`kaggle_kit.post.postprocess.postprocess`: one loop over :data:`STEPS`;
- :mod:`kaggle_kit.tune.space`: the search YAML (:func:`read_candidates`), the tuner's ``ClassParams`` /
  ``GlobalParams`` (one field per parameter) and the tuned YAML (:func:`write_values`);
- :mod:`kaggle_kit.tune.evaluate`: the class key (one element per step, :meth:`Step.key`), the prefix
  levels of the cached evaluation, and the per-crop evaluation, which calls :meth:`Step.apply_key`, i.e.
  the same kernels with the same arguments as ``postprocess``;
- :mod:`kaggle_kit.tune.search` / :mod:`kaggle_kit.tune.report`: the order of the coordinate stages, the
  step gains and the parameter labels.

Adding a step: its kernel + numpy twin in ``post/kernels.py``, its :class:`Param` (neutral value included)
and one :class:`Step` entry in :data:`STEPS`. Rules a step must follow (the tuner's exactness rests on them):
class c's output depends only on class c's input plane(s), class c's numbers and the global ones; neutral
numbers leave a class untouched; and nothing becomes positive outside the voxels where some member reaches
the lowest threshold (the tuner works on per-class crops of those, plus one slice of context along z) — or
the step declares ``crop_safe=False`` and the tuner evaluates uncropped.

Value conventions: per-class numbers are tuples of C values (one value of one class in the tuner's keys),
globals are scalars; probabilities are on the [0, 1] scale here and scaled to 0..255 for the kernels.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from kaggle_kit.post import kernels as K
from kaggle_kit.utils import did_you_mean

__all__ = [
    "CLASSIFIER",
    "CLASSIFIER_PARAMS",
    "PARAMS",
    "STEPS",
    "Context",
    "Fusion",
    "Param",
    "Step",
    "by_name",
    "per_class",
    "read_candidates",
    "read_values",
    "unknown_keys",
    "write_values",
    "yaml_layout",
]

KINDS = ("threshold", "prob", "fraction", "count", "odd", "conn", "bool")
CLASSIFIER = "classifier"  # key element of a step that reads the classifier: (normalised weights, z window)


# ------------------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class Param:
    """One number of the pipeline.

    name: its one spelling (PostParams attribute, search-space key and coordinate stage, ClassParams /
    GlobalParams field, class-key element, report key). path: where it sits in the ensemble and search
    YAMLs (``("threshold",)`` or ``("gating", "prob")``). kind: validation, one of :data:`KINDS`
    (``threshold``: a probability, strictly inside (0, 1) as a search candidate; ``prob`` and ``fraction``
    in [0, 1]; ``count`` an integer >= 0; ``odd`` an odd integer >= 1; ``conn`` 4 or 8; ``bool``). neutral: the value
    that makes the number a no-op (YAML ``null`` and a missing key mean it); for a required number the
    search's starting value. ``noop``: values with the neutral's effect (default: the neutral itself).
    classifier: the number belongs to the classifier (forced neutral when there is no classifier member).
    search_default: candidates when the search YAML omits the key (default: the neutral); start_first: the
    search starts at the first candidate instead of the neutral (a number that only matters with another
    one switched on). always_written: the tuned YAML writes it even when neutral.
    """

    name: str
    path: tuple[str, ...]
    kind: str
    neutral: object
    label: str
    per_class: bool = True
    required: bool = False
    classifier: bool = False
    noop: Callable | None = None
    search_default: tuple | None = None
    start_first: bool = False
    always_written: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"param {self.name}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def yaml(self) -> str:
        return ".".join(self.path)

    def is_neutral(self, v) -> bool:
        if self.required:
            return False
        if v is None or v == self.neutral:
            return True
        return bool(self.noop(v)) if self.noop is not None else False

    def check(self, v, where: str, err=ValueError, search: bool = False):
        """One value (ensemble) or candidate (``search``) -> the validated value; ``None`` -> the neutral."""
        if v is None:
            if self.required:
                raise err(f"{where}: null is not {'a candidate' if search else 'allowed'} here")
            return self.neutral
        k = self.kind
        if k == "bool":
            if not isinstance(v, bool):
                raise err(f"{where}: expected true/false, got {v!r}")
            return v
        if k in ("count", "odd", "conn"):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (k == "odd" and v % 2 == 0) \
                    or (k == "conn" and v not in (4, 8)):
                want = {"count": "an integer >= 0", "odd": "an odd integer >= 1", "conn": "4 or 8"}[k]
                raise err(f"{where}: expected {want}, got {v!r}")
            return int(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise err(f"{where}: expected a number, got {v!r}")
        if k == "threshold" and search and not 0 < v < 1:
            raise err(f"{where}: expected a threshold strictly in (0, 1), got {v!r}")
        if not 0 <= v <= 1:
            raise err(f"{where}: expected a {'fraction' if k == 'fraction' else 'probability'} in [0, 1], got {v!r}")
        return float(v)


def _at_most_one(v) -> bool:
    return v <= 1  # a component has >= 1 pixel: removing those below 1 removes nothing


THRESHOLD = Param("threshold", ("threshold",), "threshold", 0.5, "threshold", required=True)
GATE_PROB = Param("gate_prob", ("gating", "prob"), "prob", 0.0, "classifier gate prob", classifier=True)
GATE_MIN_PIXELS = Param("gate_min_pixels", ("gating", "min_pixels"), "count", 0, "gate: min pixels")
Z_WINDOW = Param("z_window", ("gating", "z_window"), "odd", 1, "classifier z window (slices)", classifier=True)
TAIL_MARGIN = Param("tail_margin", ("truncation", "tail_margin"), "count", None, "tail margin", per_class=False,
                    classifier=True)
TAIL_PROB = Param("tail_prob", ("truncation", "tail_prob"), "prob", 0.0, "tail prob", classifier=True,
                  search_default=(0.5,), start_first=True)
FIRST_K = Param("first_k", ("truncation", "first_k"), "count", 0, "drop first k")
LAST_K = Param("last_k", ("truncation", "last_k"), "count", 0, "drop last k")
PRESENCE_PROB = Param("presence_prob", ("presence", "prob"), "prob", 0.0, "presence: volume peak prob")
PRESENCE_CLS_PROB = Param("presence_cls_prob", ("presence", "cls_prob"), "prob", 0.0,
                          "presence: classifier volume peak", classifier=True)
MIN_AREA_2D = Param("min_area_2d", ("min_area_2d",), "count", 0, "min area 2D (px)", noop=_at_most_one)
CONNECTIVITY = Param("connectivity", ("connectivity",), "conn", 8, "connectivity", per_class=False,
                     start_first=True, always_written=True)
NEVER_EMPTY = Param("never_empty", ("never_empty",), "bool", False, "size filters never empty a class",
                    per_class=False, search_default=(True,), start_first=True, always_written=True)
MIN_VOLUME_3D = Param("min_volume_3d", ("min_volume_3d",), "count", 0, "min volume 3D (vox)", noop=_at_most_one)
MIN_RELATIVE_VOLUME_3D = Param("min_relative_volume_3d", ("min_relative_volume_3d",), "fraction", 0.0,
                               "min 3D volume / largest")
Z_SMOOTHING = Param("z_smoothing", ("z_smoothing",), "bool", False, "z smoothing", per_class=False,
                    always_written=True)

#: The classifier input of every step that reads it: the classifier members fused with per-class weights,
#: then averaged over ``z_window`` slices along z (:func:`kaggle_kit.post.postprocess.fuse_classifier`).
CLASSIFIER_PARAMS = (Z_WINDOW,)


# ------------------------------------------------------------------------------------------------ steps
@dataclass(frozen=True)
class Context:
    """What a step may read besides the mask: ``depth`` D of the whole volume, ``z0`` the volume slice of the
    mask's first slice (the tuner's crops; 0 otherwise), ``cls`` the fused classifier float32 (D, C') on
    the 0..255 scale (whole volume, same classes as the mask), or None, and ``peak`` float32 (n, C') the
    highest fused pixel value of each of the mask's n planes (0..255; :func:`kernels.fuse_plane_max`), or
    None. On a crop, ``peak`` is the crop's plane maximum: equal to the whole plane's on every plane that
    had a positive voxel after the threshold (that voxel is above the crop floor, hence inside the box),
    which are the only planes a step may read it on."""

    depth: int
    z0: int = 0
    cls: np.ndarray | None = None
    peak: np.ndarray | None = None

    def cls_rows(self, n: int) -> np.ndarray:
        """The classifier rows of the mask's n slices."""
        return self.cls[self.z0:self.z0 + n]


@dataclass(frozen=True)
class Fusion:
    """The first step: weighted fusion of the pixel members and per-class thresholds (one numba pass, no float
    map kept). ``fuse`` + ``threshold`` is the same computation in two parts, bit for bit (the tuner keeps
    the fused map when a threshold sweep shares it)."""

    name: str
    label: str
    params: tuple[Param, ...]
    kernel: Callable
    twin: Callable
    reads: tuple[Param, ...] = ()
    needs_classifier: bool = False

    @staticmethod
    def _thr255(v) -> np.ndarray:
        return np.asarray(v["threshold"], np.float64) * 255.0

    def apply(self, stack, weights, v, impl: str = "numba") -> tuple[np.ndarray, np.ndarray]:
        """uint8 (M, D, C, H, W), normalised float32 (M, C), ``v['threshold']`` (C,) -> bits, counts."""
        return (self.kernel if impl == "numba" else self.twin)(stack, weights, self._thr255(v))

    def fuse(self, stack, weights, impl: str = "numba") -> np.ndarray:
        return (K.fuse if impl == "numba" else K.fuse_numpy)(stack, weights)

    def threshold(self, fused, v, impl: str = "numba") -> tuple[np.ndarray, np.ndarray]:
        return (K.threshold if impl == "numba" else K.threshold_numpy)(fused, self._thr255(v))


@dataclass(frozen=True)
class Step:
    """A mask step, in place on bits uint8 (D, H, W) and counts int64 (D, C).

    params: its own numbers (all neutral: the step is a no-op); reads: shared numbers declared by an earlier
    step (connectivity). call(kernel, bits, counts, v, ctx): the kernel call with this step's numbers
    (``v``: name -> per-class tuple / global scalar). classifier(v): for one class's canonical values,
    whether the step reads the classifier (None: never). canon(v): one class's values with those that have
    no effect set to neutral (beyond each number's own ``noop``). crop_safe: the step sets no voxel outside
    the box of the voxels already positive (plus one slice of context along z), so the tuner may evaluate it
    on its crops (``tests/post/test_steps.py`` checks each declared step on random masks and values); a step
    that can (a dilation, a hole filling across the box) declares ``crop_safe=False`` and the tuner then
    evaluates every class on the whole volume (exact, slower). peak(v): for one class's canonical values,
    whether the step reads ``Context.peak`` (None: never; the caller computes it only when some step does).
    removes_only: the step only clears voxels, never sets one, so a step that leaves every plane's count
    unchanged left the mask unchanged (the tuner then re-uses the statistics of the key with the step off;
    ``tests/post/test_steps.py`` checks each declared step on random masks and values).
    """

    name: str
    label: str
    params: tuple[Param, ...]
    kernel: Callable
    twin: Callable
    call: Callable
    reads: tuple[Param, ...] = ()
    classifier: Callable | None = None
    canon: Callable | None = None
    crop_safe: bool = True
    peak: Callable | None = None
    removes_only: bool = False

    @property
    def needs_classifier(self) -> bool:
        return self.classifier is not None

    def canonical(self, v: Mapping) -> dict:
        """One class's values (name -> scalar) with no-op values replaced by the neutral."""
        v = dict(v)
        for p in self.params:
            if p.is_neutral(v[p.name]):
                v[p.name] = p.neutral
        return self.canon(v) if self.canon is not None else v

    def active(self, v: Mapping) -> bool:
        """Whether the step changes anything for one class's values (name -> scalar)."""
        v = self.canonical(v)
        return any(not p.is_neutral(v[p.name]) for p in self.params)

    def uses_classifier(self, v: Mapping) -> bool:
        v = self.canonical(v)
        return self.classifier is not None and self.active(v) and bool(self.classifier(v))

    def uses_peak(self, v: Mapping) -> bool:
        v = self.canonical(v)
        return self.peak is not None and self.active(v) and bool(self.peak(v))

    def key(self, v: Mapping, cls_key=()) -> tuple | None:
        """Canonical key of the step for one class: None (no-op) or ((name, value), ...) of every number it
        reads, plus (CLASSIFIER, cls_key) when it reads the classifier. Equal keys, equal results."""
        v = self.canonical(v)
        if not self.active(v):
            return None
        k = tuple((p.name, v[p.name]) for p in self.params + self.reads)
        return k + ((CLASSIFIER, cls_key),) if self.uses_classifier(v) else k

    def apply(self, bits, counts, v: Mapping, ctx: Context, impl: str = "numba") -> None:
        """In place, with ``v``: name -> per-class tuple (C,) / global scalar."""
        self.call(self.kernel if impl == "numba" else self.twin, bits, counts, v, ctx)

    def apply_key(self, bits, counts, key: tuple, ctx: Context, impl: str = "numba") -> None:
        """In place on one class's mask (C = 1) with the numbers of :meth:`key` (nothing for None)."""
        if key is None:
            return
        v = {n: ((x,) if by_name(n).per_class else x) for n, x in key if n != CLASSIFIER}
        self.apply(bits, counts, v, ctx, impl)


def _gate(kernel, bits, counts, v, ctx):
    prob = np.asarray(v["gate_prob"], np.float64)
    use = bool((prob > 0).any())  # prob 0: the classifier is never below it
    kernel(bits, counts, ctx.cls_rows(len(bits)) if use else None, prob * 255.0 if use else None,
           np.asarray(v["gate_min_pixels"], np.int64))


def _canon_tail(v: dict) -> dict:
    if v["tail_margin"] is None or not v["tail_prob"]:  # tail prob 0: every slice is classifier-positive
        v["tail_margin"], v["tail_prob"] = None, 0.0
    return v


def _truncate(kernel, bits, counts, v, ctx):
    margin, prob = v["tail_margin"], np.asarray(v["tail_prob"], np.float64)
    tail = margin is not None and bool((prob > 0).any())
    lo, hi = K.keep_range(ctx.depth, v["first_k"], v["last_k"], ctx.cls if tail else None,
                          prob * 255.0 if tail else None, margin if tail else None)
    kernel(bits, counts, lo - ctx.z0, hi - ctx.z0)


def _presence(kernel, bits, counts, v, ctx):
    """Whether each class is in the case-day at all, decided on the whole volume; a class judged absent is
    cleared on every slice (``kernel``: :func:`kernels.truncate` with an empty keep range).

    Two volume scores, each against its own per-class number (0 = that test off):

    - ``presence_prob``: the class stays when some voxel still positive has a fused pixel probability above
      it (the peak of the fused map over the planes that survived gating and truncation). A spurious organ
      crosses the pixel threshold as a present one does, but an organ the members really see reaches a
      confident core (the top teams' "max probability" rule, taken here per volume). The peak does not move
      with the threshold's cut, so the two numbers are tuned apart; at or below the threshold it changes
      nothing (a positive voxel is above the threshold).
    - ``presence_cls_prob``: the class stays when the fused classifier probability (classifier members and
      the pixel members' aux presence heads, averaged over ``z_window`` slices as gating reads it) reaches
      it on some slice of the volume: slice presence evidence trained for exactly this, its single-slice
      spikes smoothed by the window.

    No voxel count: that is what ``min_volume_3d`` measures per component, and it moves with the threshold.
    Whether a score separates present from absent organs is what the OOF data tells: the tuner sweeps both
    numbers per class and keeps one only where it gains (off, where the peaks of spurious and real organs
    overlap). The step runs before the size filters, so ``never_empty`` (which keeps a class's largest
    component) cannot keep a class the scores call absent, and it clears no class they call present."""
    n, c = counts.shape
    keep = np.ones(c, bool)
    prob = np.asarray(v["presence_prob"], np.float64)
    if (prob > 0).any():
        peak = np.max(np.where(counts > 0, ctx.peak, -np.inf), axis=0, initial=-np.inf)
        keep &= (prob <= 0) | (peak > prob * 255.0)
    cls_prob = np.asarray(v["presence_cls_prob"], np.float64)
    if (cls_prob > 0).any():
        top = np.max(ctx.cls, axis=0, initial=-np.inf)  # the whole volume's classifier rows
        keep &= (cls_prob <= 0) | (top >= cls_prob * 255.0)
    kernel(bits, counts, np.where(keep, 0, n), np.where(keep, n - 1, -1))


def _components(name: str, dtype, guarded: bool = False):
    def call(kernel, bits, counts, v, ctx):
        kernel(bits, counts, np.asarray(v[name], dtype), v["connectivity"], *((v["never_empty"],) if guarded else ()))
    return call


def _z_smooth(kernel, bits, counts, v, ctx):
    kernel(bits, counts)


FUSION = Fusion("fuse_threshold", "thresholds", (THRESHOLD,), K.fuse_threshold, K.fuse_threshold_numpy)

#: The pipeline, in order. The tuner's class key has one element per step (the fusion: two, weights and
#: threshold) and caches every prefix; ``postprocess`` runs the steps in this order.
STEPS: tuple = (
    FUSION,
    Step("gate", "gating", (GATE_PROB, GATE_MIN_PIXELS), K.gate, K.gate_numpy, _gate,
         classifier=lambda v: v["gate_prob"] > 0, removes_only=True),
    Step("truncate", "truncation", (TAIL_MARGIN, TAIL_PROB, FIRST_K, LAST_K), K.truncate, K.truncate_numpy,
         _truncate, classifier=lambda v: v["tail_margin"] is not None, canon=_canon_tail, removes_only=True),
    Step("presence", "presence per volume", (PRESENCE_PROB, PRESENCE_CLS_PROB), K.truncate, K.truncate_numpy,
         _presence, classifier=lambda v: v["presence_cls_prob"] > 0, peak=lambda v: v["presence_prob"] > 0,
         removes_only=True),
    Step("min_area_2d", "min area 2D", (MIN_AREA_2D,), K.remove_small_2d, K.remove_small_2d_numpy,
         _components("min_area_2d", np.int64, guarded=True), reads=(CONNECTIVITY, NEVER_EMPTY), removes_only=True),
    Step("min_volume_3d", "min volume 3D", (MIN_VOLUME_3D,), K.remove_small_3d, K.remove_small_3d_numpy,
         _components("min_volume_3d", np.int64, guarded=True), reads=(CONNECTIVITY, NEVER_EMPTY), removes_only=True),
    Step("min_relative_volume_3d", "relative 3D components", (MIN_RELATIVE_VOLUME_3D,), K.remove_relative_3d,
         K.remove_relative_3d_numpy, _components("min_relative_volume_3d", np.float64), reads=(CONNECTIVITY,),
         removes_only=True),
    Step("z_smoothing", "z-smoothing", (Z_SMOOTHING,), K.z_smooth, K.z_smooth_numpy, _z_smooth),
)


def _param_order() -> tuple[Param, ...]:
    """Every parameter once: step by step, its own numbers, the shared ones it reads, and the classifier's
    after the first step that reads the classifier. Also the order of the tuner's coordinate stages."""
    out: list = []
    for s in STEPS:
        for p in s.params + s.reads + (CLASSIFIER_PARAMS if s.needs_classifier else ()):
            if p not in out:
                out.append(p)
    return tuple(out)


PARAMS: tuple[Param, ...] = _param_order()
_BY_NAME = {p.name: p for p in PARAMS}
if len(_BY_NAME) != len(PARAMS) or len({p.path for p in PARAMS}) != len(PARAMS):
    raise RuntimeError("post.steps: two parameters share a name or a YAML path")


def by_name(name: str) -> Param:
    return _BY_NAME[name]


# ------------------------------------------------------------------------------------------------ YAML
def yaml_layout() -> dict[str, set]:
    """The YAML keys the steps declare: ``{"": top-level keys, section: keys in that section}``."""
    out: dict = {"": set()}
    for p in PARAMS:
        out[""].add(p.path[0])
        if len(p.path) == 2:
            out.setdefault(p.path[0], set()).add(p.path[1])
    return out


def unknown_keys(obj: Mapping, allowed, where: str, err=ValueError) -> None:
    """Fail on a key not in ``allowed``, suggesting the closest one."""
    for k in obj:
        if k not in allowed:
            hint = did_you_mean(k, allowed, list_all=False)
            raise err(f"{where}: unknown key {k!r}" + (f" ({hint})" if hint else "") + f"; allowed: {sorted(allowed)}")


def _sections(obj: Mapping, where: str, err) -> dict:
    out = {}
    for sec, keys in yaml_layout().items():
        if not sec:
            continue
        v = obj.get(sec) or {}
        if not isinstance(v, Mapping):
            raise err(f"{where}.{sec}: expected a mapping, got {type(v).__name__}")
        unknown_keys(v, keys, f"{where}.{sec}", err)
        out[sec] = v
    return out


def _raw(obj: Mapping, sections: dict, p: Param):
    return obj.get(p.path[0]) if len(p.path) == 1 else sections[p.path[0]].get(p.path[1])


def per_class(v, where: str, classes, err, one, hint: str) -> tuple:
    """One value for every class, or a mapping {class: value} naming each; ``one(value, where)`` checks one."""
    if isinstance(v, Mapping):
        unknown_keys(v, set(classes), where, err)
        missing = [c for c in classes if c not in v]
        if missing:
            raise err(f"{where}: missing class(es) {missing} ({hint})")
        return tuple(one(v[c], f"{where}.{c}") for c in classes)
    return (one(v, where),) * len(classes)


def read_values(obj: Mapping, classes, where: str, err=ValueError) -> dict:
    """The step numbers of an ensemble YAML mapping -> {name: per-class tuple | global scalar}, validated;
    a missing key or ``null`` is the neutral value. The caller checks the top-level keys."""
    sections = _sections(obj, where, err)
    out = {}
    for p in PARAMS:
        raw, w = _raw(obj, sections, p), f"{where}.{p.yaml}"
        if raw is None:
            if p.required:
                raise err(f"{where}: missing required key {p.yaml!r}")
            out[p.name] = (p.neutral,) * len(classes) if p.per_class else p.neutral
        elif p.per_class:
            out[p.name] = per_class(raw, w, classes, err, lambda x, ww, p=p: p.check(x, ww, err),
                                     "give one number or every class")
        else:
            out[p.name] = p.check(raw, w, err)
    # the tail needs both numbers (tail_prob alone, or a margin with no threshold, is a typo, not a choice)
    given = {p.name for p in PARAMS if _raw(obj, sections, p) is not None}
    if "tail_margin" in given and "tail_prob" not in given:
        raise err(f"{where}.{TAIL_MARGIN.path[0]}: tail_margin needs tail_prob")
    if "tail_prob" in given and "tail_margin" not in given:
        raise err(f"{where}.{TAIL_MARGIN.path[0]}: tail_prob is set but tail_margin is not")
    return out


def read_candidates(obj: Mapping, classes, where: str, err=ValueError) -> tuple[dict, dict]:
    """The step numbers of a search YAML mapping -> (per-class {name: tuple of C candidate lists}, global
    {name: candidate list}); a missing key gives the parameter's search default. Candidates are validated
    (``null`` is the neutral value) and de-duplicated in order."""
    sections = _sections(obj, where, err)

    def lst(p, v, w):
        v = v if isinstance(v, list) else [v]
        if not v:
            raise err(f"{w}: expected a non-empty list of candidates")
        return list(dict.fromkeys(p.check(x, f"{w}[{i}]", err, search=True) for i, x in enumerate(v)))

    options, globals_ = {}, {}
    for p in PARAMS:
        raw, w = _raw(obj, sections, p), f"{where}.{p.yaml}"
        if raw is None:
            raw = list(p.search_default) if p.search_default is not None else [p.neutral]
        if p.per_class:
            options[p.name] = per_class(raw, w, classes, err, lambda x, ww, p=p: lst(p, x, ww),
                                         "give one list or a list per class")
        else:
            globals_[p.name] = lst(p, raw, w)
    return options, globals_


def write_values(per_class: list[Mapping], classes) -> dict:
    """The YAML mapping of one set of step numbers: ``per_class[c]`` is class c's values (name -> scalar,
    globals included). A number is written when it is not neutral for some class after the steps'
    canonicalisation (or is ``always_written``); the classifier's numbers only when a step reads it."""

    def pc(vals):
        vals = list(vals)
        return vals[0] if all(x == vals[0] for x in vals) else dict(zip(classes, vals))

    canon = [dict(v) for v in per_class]
    for s in STEPS[1:]:
        for c, v in enumerate(per_class):
            cv = s.canonical(v)
            canon[c].update({p.name: cv[p.name] for p in s.params})
    uses_cls = any(s.uses_classifier(v) for s in STEPS[1:] for v in per_class)
    out: dict = {}
    for p in PARAMS:
        vals = [v[p.name] for v in canon]
        if p in CLASSIFIER_PARAMS and not uses_cls:
            continue
        if not (p.always_written or p.required or any(not p.is_neutral(x) for x in vals)):
            continue
        if p.per_class:
            value = pc(x if x is not None else p.neutral for x in vals)
        else:
            value = next((x for x in vals if not p.is_neutral(x)), vals[0])
        sec = out if len(p.path) == 1 else out.setdefault(p.path[0], {})
        sec[p.path[-1]] = value
    return out
