"""Presets of the main job: which family configs it trains, in which order, with how many folds and which
search space. One YAML file per preset under ``configs/presets/`` (``kk run --preset NAME``, or a path)::

    n_folds: 3                                   # int >= 2: folds of a new cache (the tuner nests over them)
    search: ensemble/search_default.yaml         # the tuner's search space, relative to the configs folder
    members:                                     # trained in this order (a detector before its crop members)
      - config: det_yolo/tiny_cpu.yaml           # a shipped config (relative to the configs folder) or a path
        why: its boxes crop the 2.5D member      # one line: why this member is in the preset
        share: 0.15                              # its part of the training time under --budget (default 1)
        min_epochs: 1                            # under --budget: below this it is dropped whole (default 1)
        max_epochs: 30                           # under --budget: never more than this (default: no cap)
        overrides: [train.batch_size=8]          # key=value overrides of the config for this preset (default none)

Unknown keys are rejected with a did-you-mean; every member needs its ``why``; every file must exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kaggle_kit.config import CONFIG_ROOT, ConfigError, read_yaml_file
from kaggle_kit.utils import did_you_mean

__all__ = ["PRESET_DIR", "Preset", "PresetError", "PresetMember", "load_preset", "preset_names"]

PRESET_DIR = CONFIG_ROOT / "presets"
_KEYS = {"n_folds", "search", "members"}
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


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    n_folds: int
    search: Path
    members: tuple[PresetMember, ...]

    @property
    def configs(self) -> list[str]:
        return [m.config for m in self.members]


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
    for k in sorted(_KEYS - set(raw)):
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
        out.append(PresetMember(m.get("config"), _resolve(m.get("config"), f"{where}.config"), why.strip(),
                                overrides=tuple(ov), **num))
    dup = [m.config for i, m in enumerate(out) if m.path in [x.path for x in out[:i]]]
    if dup:
        raise PresetError(f"{path}: members: {dup[0]!r} is listed twice")
    return Preset(path.stem, path, n, _resolve(raw["search"], f"{path}: search"), tuple(out))
