"""Presets of the main job: which family configs it trains, in which order, with how many folds and which
search space. One YAML file per preset under ``configs/presets/`` (``kk run --preset NAME``, or a path)::

    n_folds: 3                                   # int >= 2: folds of a new cache (the tuner nests over them)
    search: ensemble/search_default.yaml         # the tuner's search space, relative to the configs folder
    min_pixel_members: 2                         # under --budget: pixel members the plan must keep (default: 2,
                                                 # or how many the preset has when fewer; 0: no floor)
    members:                                     # trained in this order (a detector before its crop members)
      - config: det_yolo/tiny_cpu.yaml           # a shipped config (relative to the configs folder) or a path
        why: its boxes crop the 2.5D member      # one line: why this member is in the preset
        share: 0.15                              # its part of the training time under --budget (default 1)
        min_epochs: 1                            # under --budget: below this it is dropped whole (default 1)
        max_epochs: 30                           # under --budget: never more than this (default: no cap)
        overrides: [train.batch_size=8]          # key=value overrides of the config for this preset (default none)

Unknown keys are rejected with a did-you-mean; every member needs its ``why``; every file must exist; each
member's config loads (its family decides whether it is a pixel member: its maps are fused, ``kind: pixel``).

``min_pixel_members`` is the ensemble's floor under a budget (:mod:`kaggle_kit.pipeline.budget`): the first plan
must keep that many pixel members (held at their minimum length when their shares buy less), or the job stops
before any training and says the smallest budget that keeps them. At most the number of pixel members with a
share above 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kaggle_kit.config import CONFIG_ROOT, ConfigError, read_yaml_file
from kaggle_kit.utils import did_you_mean

__all__ = ["PRESET_DIR", "Preset", "PresetError", "PresetMember", "load_preset", "preset_names"]

PRESET_DIR = CONFIG_ROOT / "presets"
_KEYS = {"n_folds", "search", "members", "min_pixel_members"}
_REQUIRED = {"n_folds", "search", "members"}
_MEMBER_KEYS = {"config", "why", "share", "min_epochs", "max_epochs", "overrides"}


class PresetError(ConfigError):
    """A preset that does not validate (the file and the key are named)."""


@dataclass(frozen=True)
class PresetMember:
    config: str  # as written in the preset (relative to the configs folder, or a path)
    path: Path  # resolved
    why: str
    share: float = 1.0  # part of the training time under a budget (kaggle_kit.plan)
    min_epochs: float = 1.0
    max_epochs: float | None = None
    overrides: tuple[str, ...] = ()  # key=value overrides of the config (checked when the config loads)
    family: str = ""  # the config's family
    kind: str = ""  # its maps: pixel | classifier | boxes (kaggle_kit.families.base.KINDS)


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    n_folds: int
    search: Path
    members: tuple[PresetMember, ...]
    min_pixel_members: int = 0  # under --budget: pixel members the first plan must keep

    @property
    def configs(self) -> list[str]:
        return [m.config for m in self.members]

    @property
    def pixel_members(self) -> list[PresetMember]:
        """The members whose maps are fused (kind ``pixel``) and that get training time (share > 0)."""
        return [m for m in self.members if m.kind == "pixel" and m.share > 0]


def preset_names() -> list[str]:
    """The shipped presets (``configs/presets/<name>.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _resolve(rel, where: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise PresetError(f"{where}: expected a config path (str), got {rel!r}")
    p = Path(rel).expanduser()
    p = p if p.is_absolute() else CONFIG_ROOT / p
    if not p.is_file():
        raise PresetError(f"{where}: {rel!r} is not a file (looked at {p})")
    return p


def _unknown(keys, allowed: set, where: str) -> None:
    for k in keys:
        if k not in allowed:
            raise PresetError(f"{where}: unknown key {k!r}; {did_you_mean(k, allowed)}")


def load_preset(name_or_path: str | Path) -> Preset:
    """A shipped preset by name (``tiny``) or a preset YAML by path, validated."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = PRESET_DIR / f"{text}.yaml"
        if not path.is_file():
            raise PresetError(f"unknown preset {text!r}; {did_you_mean(text, preset_names())} "
                              f"(or pass a preset YAML's path)")
    raw = read_yaml_file(path, "preset", PresetError)
    if not isinstance(raw, dict):
        raise PresetError(f"{path}: expected a mapping with {sorted(_KEYS)}, got {type(raw).__name__}")
    _unknown(raw, _KEYS, str(path))
    for k in sorted(_REQUIRED - set(raw)):
        raise PresetError(f"{path}: missing key {k!r}")
    n = raw["n_folds"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise PresetError(f"{path}: n_folds: expected an int >= 2 (the tuner holds folds out), got {n!r}")
    members = raw["members"]
    if not isinstance(members, list) or not members:
        raise PresetError(f"{path}: members: expected a non-empty list of {{config, why}}, got {members!r}")
    out = []
    for i, m in enumerate(members):
        where = f"{path}: members[{i}]"
        if not isinstance(m, dict):
            raise PresetError(f"{where}: expected a mapping {{config, why}}, got {m!r}")
        _unknown(m, _MEMBER_KEYS, where)
        why = m.get("why")
        if not isinstance(why, str) or not why.strip():
            raise PresetError(f"{where}: 'why' is required: one line saying why this member is in the preset")
        num = {}
        for k, lo, default in (("share", 0.0, 1.0), ("min_epochs", 0.0, 1.0), ("max_epochs", 0.0, None)):
            v = m.get(k, default)
            if v is None and default is None:
                num[k] = None
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo or (k != "share" and v == 0):
                raise PresetError(f"{where}.{k}: expected a number {'>= 0' if k == 'share' else '> 0'}, got {v!r}")
            num[k] = float(v)
        if num["max_epochs"] is not None and num["max_epochs"] < num["min_epochs"]:
            raise PresetError(f"{where}: max_epochs {num['max_epochs']:g} is under min_epochs {num['min_epochs']:g}")
        ov = m.get("overrides") or []
        if not isinstance(ov, list) or not all(isinstance(o, str) and "=" in o for o in ov):
            raise PresetError(f"{where}.overrides: expected a list of 'key=value' strings, got {ov!r}")
        cfg_path = _resolve(m.get("config"), f"{where}.config")
        family, kind = _family_kind(cfg_path, list(ov), where)
        out.append(PresetMember(m.get("config"), cfg_path, why.strip(), overrides=tuple(ov), family=family,
                                kind=kind, **num))
    dup = [m.config for i, m in enumerate(out) if m.path in [x.path for x in out[:i]]]
    if dup:
        raise PresetError(f"{path}: members: {dup[0]!r} is listed twice")
    n_pixel = sum(m.kind == "pixel" and m.share > 0 for m in out)
    floor = raw.get("min_pixel_members", min(2, n_pixel))
    if isinstance(floor, bool) or not isinstance(floor, int) or not 0 <= floor <= n_pixel:
        raise PresetError(f"{path}: min_pixel_members: expected an int from 0 to {n_pixel} (the preset's pixel "
                          f"members with a share above 0), got {floor!r}")
    return Preset(path.stem, path, n, _resolve(raw["search"], f"{path}: search"), tuple(out), floor)


def _family_kind(cfg_path: Path, overrides: list[str], where: str) -> tuple[str, str]:
    """The family of a member's config (loaded with its overrides: a config that does not load is named here,
    with the preset's line) and the kind of its maps."""
    from kaggle_kit.config import load_config
    from kaggle_kit.registry import resolve

    try:
        fam = load_config(cfg_path, overrides)["family"]
        return fam, resolve("family", fam).kind
    except (ConfigError, KeyError) as e:
        raise PresetError(f"{where}.config: {e}") from None
