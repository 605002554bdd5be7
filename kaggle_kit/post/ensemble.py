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
    presence:                     # optional, per case-day, before the size filters (null / 0 = off);
                                  #   cls_prob needs a classifier member
      prob: 0.8                   #   clear a class whose peak fused probability is not above this
      cls_prob: 0.5               #   ... or whose fused classifier prob reaches this on no slice
    min_area_2d: 0                # optional: remove 2D components smaller than this (pixels)
    min_volume_3d: null           # optional: remove 3D components smaller than this (voxels)
    min_relative_volume_3d: 0     # optional: remove 3D components smaller than this fraction of the class's
                                  #   largest component in the case-day (0 = off)
    connectivity: 8               # optional: 8 (default) or 4 (3D: 26 or 6)
    z_smoothing: false            # optional: flip isolated positive / negative slices along z
    metric: default               # optional, for --split oof: a MetricConfig name ("default", "2d",
                                  #   "3d+empty_dice_one", ...) or a mapping of MetricConfig fields

"Per class" values are one number (all classes) or a mapping with exactly the classes of
``kaggle_kit.data.raw.CLASSES``. Unknown keys and wrong types fail with the key's path in the message.
Weights are normalised over the members of a kind, per class. The post-processing keys (everything but
members, metric and classes) are those the step list declares (:mod:`kaggle_kit.post.steps`): this parser
and the tuner read them from there.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kaggle_kit.config import ConfigError, read_yaml_file  # an ensemble YAML that does not validate
from kaggle_kit.data.raw import CLASSES, discover_split
from kaggle_kit.io.probmaps import KINDS, ProbMapError, read_manifest, read_probmap, to_uint8
from kaggle_kit.io.submission import SubmissionError, attach_geometry, expected_rows, write_submission
from kaggle_kit.utils import progress
from kaggle_kit.post import kernels as K
from kaggle_kit.post.postprocess import PostParams, fuse_classifier, postprocess
from kaggle_kit.post.steps import PARAMS, STEPS, per_class, read_values, unknown_keys, yaml_layout

__all__ = [
    "SPLITS",
    "ConfigError",
    "EnsembleConfig",
    "Member",
    "allowed_keys",
    "fuse_case_day",
    "load_ensemble_config",
    "parse_ensemble_config",
    "run_ensemble",
]

# ensemble split -> (data folder split, prediction split)
SPLITS = {"test": ("test", "test"), "oof": ("train", "oof")}


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
# the post-processing keys come from the step list (kaggle_kit.post.steps); these are the ensemble's own
_OWN = {"members", "metric", "classes"}
_MEMBER = {"exp", "name", "kind", "weight"}


def allowed_keys() -> set:
    """Top-level keys of an ensemble YAML: the ensemble's own and those the steps declare."""
    return _OWN | yaml_layout()[""]


def _weight(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if v < 0:
        raise ConfigError(f"{where}: expected a weight >= 0, got {v!r}")
    return float(v)


def _weights(v, where: str, classes) -> tuple:
    return per_class(v, where, classes, ConfigError, _weight, "give one number or every class")


def _members(obj: Mapping, source: str, classes) -> list[Member]:
    if not isinstance(obj["members"], list) or not obj["members"]:
        raise ConfigError(f"{source}.members: expected a non-empty list")
    members, names = [], set()
    for i, m in enumerate(obj["members"]):
        where = f"{source}.members[{i}]"
        if not isinstance(m, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(m).__name__}")
        unknown_keys(m, _MEMBER, where, ConfigError)
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
        members.append(Member(name, m["exp"], m["kind"], _weights(m["weight"], f"{where}.weight", classes)))
    kinds = {m.kind for m in members}
    if "pixel" not in kinds:
        raise ConfigError(f"{source}.members: at least one member must be of kind 'pixel'")
    for kind in kinds:
        try:
            K.normalise_weights([m.weights for m in members if m.kind == kind])
        except ValueError as e:
            raise ConfigError(f"{source}.members ({kind}): {e}") from None
    return members


def parse_ensemble_config(obj, source: str = "<config>") -> EnsembleConfig:
    """Validate a loaded YAML mapping into an EnsembleConfig (ConfigError naming the key otherwise)."""
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(obj).__name__}")
    unknown_keys(obj, allowed_keys(), source, ConfigError)
    classes = tuple(obj.get("classes", CLASSES))
    if classes != CLASSES:
        raise ConfigError(f"{source}.classes: {list(classes)} differs from the data's {list(CLASSES)}")
    for req in ["members"] + [p.yaml for p in PARAMS if p.required]:
        if req not in obj:
            raise ConfigError(f"{source}: missing required key {req!r}")
    members = _members(obj, source, classes)
    params = PostParams(**read_values(obj, classes, source, ConfigError))
    if params.needs_classifier and "classifier" not in {m.kind for m in members}:
        used = sorted({p.yaml for s in STEPS[1:] if s.needs_classifier for p in s.params if p.classifier})
        raise ConfigError(f"{source}: {' / '.join(used)} need a member of kind 'classifier'")
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
    return parse_ensemble_config(read_yaml_file(path, "ensemble config", ConfigError), str(path))


# ------------------------------------------------------------------------------------------- fusion
def _fuse_stacks(cfg: EnsembleConfig, pix: np.ndarray, cls: np.ndarray | None, impl: str):
    fused_cls = (fuse_classifier(cls, cfg.weights("classifier"), cfg.params.z_window)
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

