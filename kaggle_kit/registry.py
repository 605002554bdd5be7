"""Lazy registries: names map to ``"module:attr"`` strings imported on first use.

``resolve("family", "seg25d")`` imports the family module only then, so ``import kaggle_kit`` stays cheap.
An unknown name raises KeyError listing the options.

The family table is filled from the families themselves: every sub-package of ``kaggle_kit/families`` with
an ``api.py`` is the family of that name (its ``family`` object, a :class:`kaggle_kit.families.base.Family`),
found by listing the folder, importing nothing.
"""
from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["REGISTRIES", "register", "resolve", "options"]



def _discover_families() -> dict[str, str]:
    root = Path(__file__).parent / "families"
    return {p.parent.name: f"kaggle_kit.families.{p.parent.name}.api:family"
            for p in sorted(root.glob("*/api.py")) if not p.parent.name.startswith("_")}


REGISTRIES: dict[str, dict[str, str]] = {
    # kind -> name -> "module:attr"
    "family": _discover_families(),
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
