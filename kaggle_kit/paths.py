"""Output paths: pure functions of (family, experiment, fold); nothing searches for "the latest run"."""
from __future__ import annotations

from pathlib import Path

__all__ = ["work_dir", "inference_checkpoint"]


def work_dir(root: str | Path, family: str, exp: str, fold) -> Path:
    """``<root>/<family>/<exp>/fold<K>`` (``foldall`` for a model trained on every case)."""
    return Path(root) / family / exp / f"fold{fold}"


def inference_checkpoint(root: str | Path, family: str, exp: str, fold, which: str = "best") -> Path:
    """The exported, self-describing inference checkpoint (``best.pth`` or ``last.pth``) of a fold."""
    if which not in ("best", "last"):
        raise KeyError(f"unknown checkpoint {which!r}; options: ['best', 'last']")
    return work_dir(root, family, exp, fold) / f"{which}.pth"
