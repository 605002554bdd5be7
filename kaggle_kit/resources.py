"""Where the files that ship with kaggle_kit live: the configs (family defaults, presets, ensemble searches) and
the Kaggle inference notebook.

In a wheel they are package data (``kaggle_kit/configs/``, ``kaggle_kit/notebook/``: pyproject.toml maps the
checkout's top-level ``configs/`` and ``submission/`` there); in a checkout (``pip install -e``) they are the
top-level folders themselves. Level 0: imports nothing from the package.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["config_root", "notebook_path"]

_PKG = Path(__file__).resolve().parent
NOTEBOOK_NAME = "kaggle_kit_inference.ipynb"


def _first_dir(*cands: Path) -> Path:
    for c in cands:
        if c.is_dir():
            return c
    return cands[-1]


def config_root() -> Path:
    """The folder of the shipped configs (``<family>/*.yaml``, ``ensemble/``, ``presets/``)."""
    return _first_dir(_PKG / "configs", _PKG.parent / "configs")


def notebook_path() -> Path:
    """The Kaggle inference notebook that ``kk bundle`` / ``kk notebook`` use."""
    return _first_dir(_PKG / "notebook", _PKG.parent / "submission") / NOTEBOOK_NAME
