"""Output paths: pure functions of (family, experiment, fold); nothing searches for "the latest run"."""
from __future__ import annotations

from pathlib import Path

__all__ = ["work_dir", "inference_checkpoint", "fold_done_marker"]


def work_dir(root: str | Path, family: str, exp: str, fold) -> Path:
    """``<root>/<family>/<exp>/fold<K>`` (``foldall`` for a model trained on every case)."""
    return Path(root) / family / exp / f"fold{fold}"


def inference_checkpoint(root: str | Path, family: str, exp: str, fold, which: str = "last") -> Path:
    """The exported, self-describing inference checkpoint (``best.pth`` or ``last.pth``) of a fold."""
    if which not in ("best", "last"):
        raise KeyError(f"unknown checkpoint {which!r}; options: ['best', 'last']")
    return work_dir(root, family, exp, fold) / f"{which}.pth"


def fold_done_marker(root: str | Path, family: str, exp: str, fold) -> Path:
    """``done.json`` of a fold: written by tools/train.py after the fold's training returned (all epochs),
    removed when it starts again. ``best.pth`` alone proves nothing: it is written at the first validation."""
    return work_dir(root, family, exp, fold) / "done.json"
