"""Lazy registries: names map to ``"module:attr"`` strings imported on first use.

``resolve("family", "seg25d")`` imports the family module only then, so ``import kaggle_kit`` stays cheap.
An unknown name raises KeyError listing the options.
"""
from __future__ import annotations

import importlib

__all__ = ["REGISTRIES", "register", "resolve", "options"]

REGISTRIES: dict[str, dict[str, str]] = {
    # kind -> name -> "module:attr"; families add themselves here as they are written.
    "family": {
        "seg25d": "kaggle_kit.families.seg25d.api:family",
        "seg3d": "kaggle_kit.families.seg3d.api:family",
        "cls": "kaggle_kit.families.cls.api:family",
        "det_yolo": "kaggle_kit.families.det_yolo.api:family",
    },
}


def register(kind: str, name: str, target: str) -> None:
    if ":" not in target:
        raise ValueError(f"target {target!r} must be 'module:attr'")
    REGISTRIES.setdefault(kind, {})[name] = target


def options(kind: str) -> list[str]:
    return sorted(REGISTRIES.get(kind, {}))


def resolve(kind: str, name: str):
    """Import and return the object registered as ``name`` under ``kind``."""
    table = REGISTRIES.get(kind)
    if table is None:
        raise KeyError(f"unknown registry {kind!r}; options: {sorted(REGISTRIES)}")
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; options: {sorted(table)}")
    module, attr = table[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # optional dependency missing: say how to get it
        raise ImportError(f"{kind} {name!r} needs {e.name!r}: run `make install` (pip install -e .)") from e
    return getattr(mod, attr)
