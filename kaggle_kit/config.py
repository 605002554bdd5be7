"""YAML configs with ``_base_`` inheritance, dotted ``key=value`` overrides and strict validation.

Each family has one flat, commented default config (``configs/<family>/default.yaml``); every other config
names a ``_base_`` and overrides some keys. The default is the schema: a key it does not have, or a value
of another type, fails early with a message naming the key (and a close match, if any). Values are parsed
with ``yaml.safe_load``, never ``eval``.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from kaggle_kit.resources import config_root
from kaggle_kit.utils import UserError, did_you_mean

__all__ = ["ConfigError", "CONFIG_ROOT", "load_config", "apply_overrides", "validate", "merge", "dump_config",
           "family_schema", "parse_yaml", "read_yaml_file"]

CONFIG_ROOT = config_root()


class ConfigError(UserError, ValueError):
    """A config that does not parse or validate; the message names the key, the file and a fix. The one
    error of every config dialect: family configs, the ensemble YAML (``kaggle_kit.post.ensemble`` raises
    it) and the search YAML (``kaggle_kit.tune.space.SearchError`` derives from it)."""


def merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: ``over`` wins; dicts merge, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader, plus YAML 1.2 floats: ``3e-3`` and ``1e4`` are numbers, not strings (YAML 1.1
    wants a dot, ``3.0e-3``; a learning rate written ``3e-3`` would otherwise fail the type check)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>"):
    """``yaml.safe_load`` (no code, no python tags) with YAML 1.2 floats; ConfigError naming ``source`` and
    the line on a syntax error."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{source}{line}: YAML does not parse ({problem}); fix the syntax there") from None


def read_yaml_file(path, what: str = "config", err: type[Exception] = ConfigError):
    """A YAML file (any of ours: configs, ensemble and search YAMLs) through :func:`parse_yaml`; a missing
    file or a syntax error raises ``err`` naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise err(f"{path}: {what} not found; check the path")
    try:
        return parse_yaml(path.read_text(), str(path))
    except ConfigError as e:
        if err is ConfigError:
            raise
        raise err(str(e)) from None


def _read(path: Path, seen: tuple = ()) -> tuple[dict, dict, list[Path]]:
    """(merged data, {dotted key: file that set it}, the chain's files from the root base to ``path``)."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: _base_ cycle through {[str(p) for p in seen]}; remove one _base_")
    if not path.is_file():
        via = f" (the _base_ of {seen[-1]})" if seen else ""
        raise ConfigError(f"{path}: config file not found{via}; check the path")
    data = parse_yaml(path.read_text(), str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys, got {type(data).__name__}")
    base = data.pop("_base_", None)
    sources = {k: path for k in _dotted(data)}
    if base is None:
        return data, sources, [path]
    if not isinstance(base, str):
        raise ConfigError(f"{path}: _base_ must be a file path (relative to {path.parent}), got {base!r}")
    bdata, bsources, chain = _read(path.parent / base, seen + (path,))
    return merge(bdata, data), {**bsources, **sources}, chain + [path]


def _dotted(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out.append(prefix + str(k))
        if isinstance(v, dict):
            out += _dotted(v, f"{prefix}{k}.")
    return out


def family_schema(family, chain: list[Path] = ()) -> Path:
    """The default config of ``family``: a ``default.yaml`` next to a file of the ``_base_`` chain that names
    this family (a user's copy of a configs tree), else ``configs/<family>/default.yaml`` of this checkout.
    ConfigError (with the known families) when there is none."""
    if not isinstance(family, str) or not family:
        raise ConfigError(f"{chain[-1] if chain else 'config'}: no 'family' key; name one, or a _base_ that does "
                          f"(e.g. _base_: {CONFIG_ROOT / 'seg25d' / 'default.yaml'})")
    for f in reversed(list(chain)):
        cand = f.parent / "default.yaml"
        if cand.is_file():
            fam = (parse_yaml(cand.read_text(), str(cand)) or {}).get("family")
            if fam == family:
                return cand
    cand = CONFIG_ROOT / family / "default.yaml"
    if cand.is_file():
        return cand
    known = sorted(p.parent.name for p in CONFIG_ROOT.glob("*/default.yaml"))
    hint = did_you_mean(family, known)
    raise ConfigError(f"{chain[-1] if chain else 'config'}: family {family!r} has no default config to check it "
                      f"against; {hint}")


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


def validate(cfg: dict, schema: dict, where: str = "", sources: dict | None = None, schema_path=None) -> dict:
    """Check ``cfg`` against ``schema`` (the family default): unknown keys and wrong types raise ConfigError
    naming the key, the file that set it (``sources``: dotted key -> file or override) and a fix."""
    sources = sources or {}
    for k, v in cfg.items():
        key = f"{where}{k}"
        src = sources.get(key)
        at = f" (set in {src})" if src else ""
        if k not in schema:
            hint = did_you_mean(key, [where + str(s) for s in schema], list_all=False) or f"known keys: {sorted(schema)}"
            hint = "; " + hint
            against = f" (checked against {schema_path})" if schema_path else ""
            raise ConfigError(f"unknown config key {key!r}{at}{hint}{against}")
        d = schema[k]
        if isinstance(d, dict) and d:  # an empty dict in the schema means "free-form mapping"
            if not isinstance(v, dict):
                raise ConfigError(f"config key {key!r}{at} must be a mapping, got {type(v).__name__}")
            validate(v, d, key + ".", sources, schema_path)
        elif not _type_ok(d, v):
            hint = ""
            if isinstance(d, (int, float)) and not isinstance(d, bool) and isinstance(v, str):
                eg = "3" if isinstance(d, int) else "0.003 or 3e-3"
                hint = f"; write a plain number (e.g. {eg}), without quotes"
            raise ConfigError(f"config key {key!r}{at} must be {type(d).__name__} (default {d!r}), got {v!r}{hint}")
    return cfg


def apply_overrides(cfg: dict, overrides: list[str] | None, sources: dict | None = None) -> dict:
    """Apply ``a.b=value`` strings (value parsed as YAML by ``parse_yaml``: safe, YAML 1.2 floats).
    ``sources`` (dotted key -> origin), when given, records each override as the origin of its key."""
    cfg = copy.deepcopy(cfg)
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must be key=value (e.g. train.epochs=3)")
        key, raw = ov.split("=", 1)
        value = parse_yaml(raw, f"override {ov!r}")
        if sources is not None:
            for k in [key.strip()] + ([f"{key.strip()}.{d}" for d in _dotted(value)] if isinstance(value, dict) else []):
                sources[k] = f"override {ov!r}"
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

    Every config is validated, wherever it lives: the schema is ``schema_path`` when given, else the
    family's default (``family_schema``: a ``default.yaml`` beside a file of the ``_base_`` chain, else
    ``configs/<family>/default.yaml`` of this checkout). A user's own file that names ``_base_:`` of a
    shipped config is therefore checked like the shipped ones.
    """
    path = Path(path)
    data, sources, chain = _read(path)
    cfg = apply_overrides(data, overrides, sources)
    schema_path = Path(schema_path) if schema_path is not None else family_schema(cfg.get("family"), chain)
    schema, _, _ = _read(schema_path)
    validate(cfg, schema, sources=sources, schema_path=schema_path)
    return cfg


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
