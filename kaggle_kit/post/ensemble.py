"""Ensemble of stored probability maps -> post-processing -> submission.csv (and the OOF score).

The ensemble YAML holds every number of the submission path (it is what OOF tuning writes)::

    members:                      # required: prediction sets under the preds root
      - exp: seg25d_unet_b0       # required: experiment folder (preds/<exp>/<split>/)
        name: unet                # optional label (default: exp); unique
        kind: pixel               # required: pixel (D, C, H, W) | classifier (D, C)
        weight: 1.0               # required: >= 0, one number or {class: number} for every class
    threshold: 0.5                # required: probability, one number or per class
    gating:                       # optional; needs a classifier member for `prob`
      prob: 0.5                   #   zero a class on slices whose fused classifier prob is below this
      min_pixels: 0               #   ... or whose positive-pixel count is below this
      z_window: 1                 #   odd: the fused classifier prob is first averaged over this many
                                  #   slices along z (centred; also what tail truncation reads); 1 = off
    truncation:                   # optional
      first_k: 0                  #   drop the first / last k slices (per class or one number)
      last_k: 0
      tail_margin: null           #   int: drop slices > margin after the last classifier-positive slice
      tail_prob: 0.5              #   required with tail_margin: classifier-positive threshold
    min_area_2d: 0                # optional: remove 2D components smaller than this (pixels)
    min_volume_3d: null           # optional: remove 3D components smaller than this (voxels)
    connectivity: 8               # optional: 8 (default) or 4 (3D: 26 or 6)
    z_smoothing: false            # optional: flip isolated positive / negative slices along z
    metric: default               # optional, for --split oof: a MetricConfig name ("default", "2d",
                                  #   "3d+empty_dice_one", ...) or a mapping of MetricConfig fields

"Per class" values are one number (all classes) or a mapping with exactly the classes of
``kaggle_kit.data.raw.CLASSES``. Unknown keys and wrong types fail with the key's path in the message.
Weights are normalised over the members of a kind, per class.
"""
from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kaggle_kit.data.raw import CLASSES, discover_split
from kaggle_kit.io.probmaps import KINDS, ProbMapError, read_manifest, read_probmap, to_uint8
from kaggle_kit.io.submission import SubmissionError, attach_geometry, expected_rows, write_submission
from kaggle_kit.utils import UserError, progress
from kaggle_kit.post import kernels as K
from kaggle_kit.post.postprocess import PostParams, fuse_classifier, postprocess

__all__ = [
    "SPLITS",
    "ConfigError",
    "EnsembleConfig",
    "Member",
    "fuse_case_day",
    "load_ensemble_config",
    "parse_ensemble_config",
    "run_ensemble",
]

# ensemble split -> (data folder split, prediction split)
SPLITS = {"test": ("test", "test"), "oof": ("train", "oof")}


class ConfigError(UserError, ValueError):
    """An ensemble YAML that does not validate; the message names the key."""


@dataclass(frozen=True)
class Member:
    name: str
    exp: str
    kind: str
    weights: tuple[float, ...]  # per class, as written (normalised when fused)


@dataclass(frozen=True)
class EnsembleConfig:
    members: tuple[Member, ...]
    params: PostParams
    classes: tuple[str, ...] = CLASSES
    metric: object = None  # MetricConfig (None: the default metric)

    def of_kind(self, kind: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.kind == kind)

    def weights(self, kind: str) -> np.ndarray:
        """Normalised float32 (M, C) weights of the members of ``kind``."""
        ms = self.of_kind(kind)
        return K.normalise_weights([m.weights for m in ms]) if ms else np.zeros((0, len(self.classes)), np.float32)


# ---------------------------------------------------------------------------------------- validation
_TOP = {"members", "threshold", "gating", "truncation", "min_area_2d", "min_volume_3d", "connectivity",
        "z_smoothing", "metric", "classes"}
_MEMBER = {"exp", "name", "kind", "weight"}
_GATING = {"prob", "min_pixels", "z_window"}
_TRUNC = {"first_k", "last_k", "tail_margin", "tail_prob"}


def _unknown(obj: Mapping, allowed: set, where: str) -> None:
    for k in obj:
        if k not in allowed:
            hint = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            raise ConfigError(f"{where}: unknown key {k!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; allowed: {sorted(allowed)}")


def _number(v, where: str, kind: str):
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{where}: expected an integer >= 0, got {v!r}")
        return int(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if kind == "prob" and not 0 <= v <= 1:
        raise ConfigError(f"{where}: expected a probability in [0, 1], got {v!r}")
    if kind == "weight" and v < 0:
        raise ConfigError(f"{where}: expected a weight >= 0, got {v!r}")
    return float(v)


def _per_class(v, where: str, classes, kind: str) -> tuple:
    if isinstance(v, Mapping):
        _unknown(v, set(classes), where)
        missing = [c for c in classes if c not in v]
        if missing:
            raise ConfigError(f"{where}: missing class(es) {missing} (give one number or every class)")
        return tuple(_number(v[c], f"{where}.{c}", kind) for c in classes)
    return (_number(v, where, kind),) * len(classes)


def _section(obj: Mapping, key: str, allowed: set, where: str) -> Mapping:
    v = obj.get(key) or {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}.{key}: expected a mapping, got {type(v).__name__}")
    _unknown(v, allowed, f"{where}.{key}")
    return v


def parse_ensemble_config(obj, source: str = "<config>") -> EnsembleConfig:
    """Validate a loaded YAML mapping into an EnsembleConfig (ConfigError naming the key otherwise)."""
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(obj).__name__}")
    _unknown(obj, _TOP, source)
    classes = tuple(obj.get("classes", CLASSES))
    if classes != CLASSES:
        raise ConfigError(f"{source}.classes: {list(classes)} differs from the data's {list(CLASSES)}")
    for req in ("members", "threshold"):
        if req not in obj:
            raise ConfigError(f"{source}: missing required key {req!r}")
    if not isinstance(obj["members"], list) or not obj["members"]:
        raise ConfigError(f"{source}.members: expected a non-empty list")
    members, names = [], set()
    for i, m in enumerate(obj["members"]):
        where = f"{source}.members[{i}]"
        if not isinstance(m, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(m).__name__}")
        _unknown(m, _MEMBER, where)
        for req in ("exp", "kind", "weight"):
            if req not in m:
                raise ConfigError(f"{where}: missing required key {req!r}")
        if not isinstance(m["exp"], str) or not m["exp"]:
            raise ConfigError(f"{where}.exp: expected an experiment name, got {m['exp']!r}")
        if m["kind"] not in KINDS:
            raise ConfigError(f"{where}.kind: {m['kind']!r} is not one of {list(KINDS)}")
        name = m.get("name", m["exp"])
        if not isinstance(name, str) or name in names:
            raise ConfigError(f"{where}.name: {name!r} is not a unique string")
        names.add(name)
        members.append(Member(name, m["exp"], m["kind"], _per_class(m["weight"], f"{where}.weight", classes, "weight")))
    kinds = {m.kind for m in members}
    if "pixel" not in kinds:
        raise ConfigError(f"{source}.members: at least one member must be of kind 'pixel'")
    for kind in kinds:
        try:
            K.normalise_weights([m.weights for m in members if m.kind == kind])
        except ValueError as e:
            raise ConfigError(f"{source}.members ({kind}): {e}") from None

    gating = _section(obj, "gating", _GATING, source)
    trunc = _section(obj, "truncation", _TRUNC, source)

    def opt(sec, key, where, kind):
        return None if sec.get(key) is None else _per_class(sec[key], f"{where}.{key}", classes, kind)

    tail_margin = trunc.get("tail_margin")
    if tail_margin is not None:
        tail_margin = _number(tail_margin, f"{source}.truncation.tail_margin", "int")
        if trunc.get("tail_prob") is None:
            raise ConfigError(f"{source}.truncation: tail_margin needs tail_prob")
    elif trunc.get("tail_prob") is not None:
        raise ConfigError(f"{source}.truncation: tail_prob is set but tail_margin is not")
    connectivity = obj.get("connectivity", 8)
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        raise ConfigError(f"{source}.connectivity: expected 4 or 8, got {connectivity!r}")
    z_smoothing = obj.get("z_smoothing", False)
    if not isinstance(z_smoothing, bool):
        raise ConfigError(f"{source}.z_smoothing: expected true/false, got {z_smoothing!r}")
    z_window = opt(gating, "z_window", f"{source}.gating", "int")
    if z_window is not None:
        bad = [w for w in z_window if w < 1 or w % 2 == 0]
        if bad:
            raise ConfigError(f"{source}.gating.z_window: expected odd integers >= 1, got {gating['z_window']!r}")
    params = PostParams(
        threshold=_per_class(obj["threshold"], f"{source}.threshold", classes, "prob"),
        gate_prob=opt(gating, "prob", f"{source}.gating", "prob"),
        gate_min_pixels=opt(gating, "min_pixels", f"{source}.gating", "int"),
        first_k=opt(trunc, "first_k", f"{source}.truncation", "int"),
        last_k=opt(trunc, "last_k", f"{source}.truncation", "int"),
        tail_margin=tail_margin,
        tail_prob=opt(trunc, "tail_prob", f"{source}.truncation", "prob"),
        min_area_2d=opt(obj, "min_area_2d", source, "int"),
        min_volume_3d=opt(obj, "min_volume_3d", source, "int"),
        connectivity=connectivity,
        z_smoothing=z_smoothing,
        cls_window=z_window,
    )
    if params.needs_classifier and "classifier" not in kinds:
        raise ConfigError(f"{source}: gating.prob / truncation.tail_margin need a member of kind 'classifier'")
    return EnsembleConfig(tuple(members), params, classes, _metric(obj.get("metric"), f"{source}.metric"))


def _metric(v, where: str):
    from kaggle_kit.metric.scorer import MetricConfig

    try:
        if v is None:
            return MetricConfig()
        if isinstance(v, str):
            return MetricConfig.from_name(v)
        if isinstance(v, Mapping):
            return MetricConfig(**v)
    except (TypeError, KeyError, ValueError) as e:
        raise ConfigError(f"{where}: {e.args[0] if e.args else e}") from None
    raise ConfigError(f"{where}: expected a metric name or a mapping of MetricConfig fields, got {v!r}")


def load_ensemble_config(path) -> EnsembleConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: ensemble config not found")
    try:
        obj = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    return parse_ensemble_config(obj, str(path))


# ------------------------------------------------------------------------------------------- fusion
def _fuse_stacks(cfg: EnsembleConfig, pix: np.ndarray, cls: np.ndarray | None, impl: str):
    fused_cls = (fuse_classifier(cls, cfg.weights("classifier"), cfg.params.cls_window)
                 if cls is not None and len(cls) else None)
    return postprocess(pix, cfg.weights("pixel"), cfg.params, fused_cls, impl)


def fuse_case_day(cfg: EnsembleConfig, maps: Mapping[str, np.ndarray], case_day: str, shape,
                  impl: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    """In-memory ensemble of one case-day (the notebook's path): ``maps`` member name -> uint8 map (or float
    in [0, 1]), pixel (D, C, H, W) / classifier (D, C); ``shape`` = (D, H, W) of the raw volume.
    Returns bits uint8 (D, H, W) and counts int64 (D, C). Missing members, wrong shapes and NaN/inf fail
    naming the member and case-day."""
    d, h, w = (int(s) for s in shape)
    c = len(cfg.classes)
    extra = sorted(set(maps) - {m.name for m in cfg.members})
    if extra:
        raise ProbMapError(f"{case_day}: map(s) of {extra}, which the config gives no weight (members: "
                           f"{[m.name for m in cfg.members]})")
    stacks = {}
    for kind, want in (("pixel", (d, c, h, w)), ("classifier", (d, c))):
        arrs = []
        for m in cfg.of_kind(kind):
            if m.name not in maps:
                raise ProbMapError(f"{case_day}: no map for member {m.name!r}")
            a = to_uint8(maps[m.name], f"{case_day} ({m.name})")
            if a.shape != want:
                raise ProbMapError(f"{case_day} ({m.name}): map shape {a.shape}; expected {want}")
            arrs.append(a)
        stacks[kind] = np.stack(arrs) if arrs else None
    return _fuse_stacks(cfg, stacks["pixel"], stacks["classifier"], impl)


def _check_manifests(cfg: EnsembleConfig, preds_root, pred_split: str) -> dict:
    info = {}
    for m in cfg.members:
        man = read_manifest(preds_root, m.exp, pred_split)
        if man["kind"] != m.kind:
            raise ProbMapError(f"member {m.name!r}: config says kind {m.kind!r}, {m.exp}/{pred_split} holds {man['kind']!r}")
        if tuple(man["classes"]) != cfg.classes:
            raise ProbMapError(f"member {m.name!r}: maps have classes {man['classes']}; expected {list(cfg.classes)}")
        info[m.name] = {k: man[k] for k in ("family", "folds", "data_fingerprint")}
    fps = {i["data_fingerprint"] for i in info.values() if i["data_fingerprint"]}
    if len(fps) > 1:  # not fatal: the test data of a Kaggle rerun differs by design; worth a look on OOF
        print(f"warning: members were predicted on different data (fingerprints {sorted(fps)})", file=sys.stderr)
    return info


def _truth_source(data_root, cache):
    if cache is not None:
        from kaggle_kit.data.cache import Cache

        c = Cache(cache)
        return lambda cd, _slices: np.asarray(c.mask("train", cd))
    from kaggle_kit.data.raw import labels_wide, load_labels
    from kaggle_kit.data.volumes import load_mask_volume

    wide = labels_wide(load_labels(Path(data_root) / "train.csv"))
    return lambda _cd, slices: load_mask_volume(slices, wide)


def run_ensemble(cfg: EnsembleConfig, data_root, split: str, out, preds_root="preds", cache=None,
                 impl: str = "numba") -> dict:
    """Stream case-days: read every member's map, post-process, RLE-encode; write ``out`` atomically.

    ``split``: ``test`` (rows from sample_submission / test.csv / images) or ``oof`` (train slices, maps from
    ``preds/<exp>/oof``; the result is also scored against ``cache`` masks or train.csv). Memory is bounded
    by one case-day: members x D x C x H x W bytes. Returns a summary dict (with the metric for ``oof``).
    """
    if split not in SPLITS:
        raise SubmissionError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    data_split, pred_split = SPLITS[split]
    slices = discover_split(data_root, data_split)
    rows = expected_rows(data_root, data_split, slices)
    summary = {"split": split, "rows": len(rows), "out": str(out)}
    if not len(rows):
        if split == "oof":
            raise SubmissionError(f"{data_root}: no train slices to ensemble")
        print(f"warning: {data_root}: no test rows (empty sample_submission and test/): header-only {out}",
              file=sys.stderr)
        write_submission(out, rows, [])
        return summary
    rows = attach_geometry(rows, slices, "expected rows")
    summary["members"] = _check_manifests(cfg, preds_root, pred_split)
    needed = set(rows["case_day"])
    groups = [(cd, g) for cd, g in slices.groupby("case_day", sort=False) if cd in needed]
    c = len(cfg.classes)
    pix_members, cls_members = cfg.of_kind("pixel"), cfg.of_kind("classifier")
    scorer = truth = None
    if split == "oof":
        from kaggle_kit.metric.scorer import Scorer

        scorer = Scorer(cfg.metric, n_classes=c)
        truth = _truth_source(data_root, cache)
    buffers: dict[tuple, np.ndarray] = {}
    predicted: dict[tuple[str, str], str] = {}
    for cd, g in progress(groups, desc=f"ensemble {split}", unit="case-day"):
        g = g.sort_values("z")
        d, h, w = len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0])
        numbers = g["slice"].tolist()
        key = (d, h, w)
        if key not in buffers:  # reused across case-days of one geometry: no fresh page faults per case-day
            buffers.clear()
            buffers[key] = np.empty((len(pix_members), d, c, h, w), np.uint8)
        pix = buffers[key]
        for i, m in enumerate(pix_members):
            read_probmap(preds_root, m.exp, pred_split, cd, (d, c, h, w), numbers, out=pix[i])
        cls = np.stack([read_probmap(preds_root, m.exp, pred_split, cd, (d, c), numbers) for m in cls_members]) \
            if cls_members else None
        bits, counts = _fuse_stacks(cfg, pix, cls, impl)
        rles = K.rle_encode_planes(bits, c, counts)
        for z, id_ in enumerate(g["id"].tolist()):
            for k, name in enumerate(cfg.classes):
                predicted[(id_, name)] = rles[z * c + k]
        if scorer is not None:
            scorer.add(cd, bits, np.asarray(truth(cd, g), np.uint8))
    write_submission(out, rows, predicted)
    summary["case_days"] = len(groups)
    summary["non_empty"] = sum(1 for v in predicted.values() if v)
    if scorer is not None:
        summary["metric"] = scorer.result()
    return summary

