"""YAML configs with ``_base_`` inheritance, dotted ``key=value`` overrides and strict validation.

Each family has one flat, commented default config (``configs/<family>/default.yaml``); every other config
names a ``_base_`` and overrides some keys. The default is the schema: a key it does not have, or a value
of another type, fails early with a message naming the key (and a close match, if any). Values are parsed
with ``yaml.safe_load``, never ``eval``.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "load_config", "apply_overrides", "validate", "merge", "dump_config"]


class ConfigError(ValueError):
    pass


def merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: ``over`` wins; dicts merge, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read(path: Path, seen: tuple = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: _base_ cycle")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("_base_", None)
    if base is None:
        return data
    return merge(_read(path.parent / base, seen + (path,)), data)


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True  # None in the default means "any type"; None as a value means "unset"
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def validate(cfg: dict, schema: dict, where: str = "") -> dict:
    """Check ``cfg`` against ``schema`` (the family default): unknown keys and wrong types raise."""
    for k, v in cfg.items():
        key = f"{where}{k}"
        if k not in schema:
            close = difflib.get_close_matches(k, list(schema), n=1)
            hint = f"; did you mean {where + close[0]!r}?" if close else f"; known keys: {sorted(schema)}"
            raise ConfigError(f"unknown config key {key!r}{hint}")
        d = schema[k]
        if isinstance(d, dict) and d:  # an empty dict in the schema means "free-form mapping"
            if not isinstance(v, dict):
                raise ConfigError(f"config key {key!r} must be a mapping, got {type(v).__name__}")
            validate(v, d, key + ".")
        elif not _type_ok(d, v):
            raise ConfigError(f"config key {key!r} must be {type(d).__name__} (default {d!r}), got {v!r}")
    return cfg


def apply_overrides(cfg: dict, overrides: list[str] | None) -> dict:
    """Apply ``a.b=value`` strings (value parsed by yaml.safe_load)."""
    cfg = copy.deepcopy(cfg)
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must be key=value")
        key, raw = ov.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {ov!r}: value does not parse as YAML ({e})") from None
        node = cfg
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"override {ov!r}: {p!r} is not a section")
            node = node[p]
        node[parts[-1]] = value
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None, schema_path: str | Path | None = None) -> dict:
    """Load a config file (following ``_base_``), apply overrides and validate against the family default.

    ``schema_path`` defaults to ``default.yaml`` next to the root of the ``_base_`` chain's folder
    (``configs/<family>/default.yaml``) when it exists.
    """
    path = Path(path)
    cfg = apply_overrides(_read(path), overrides)
    if schema_path is None:
        fam = cfg.get("family")
        cand = path.parent / "default.yaml"
        if fam:
            cand2 = path.parent.parent / fam / "default.yaml"
            cand = cand2 if cand2.is_file() else cand
        schema_path = cand if cand.is_file() else None
    if schema_path is not None:
        validate(cfg, _read(Path(schema_path)))
    return cfg


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
