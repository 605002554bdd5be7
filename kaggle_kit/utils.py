"""Small shared helpers: atomic writes, hashing, progress bars."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "atomic_save_npy", "atomic_write_text", "atomic_write_json", "short_hash", "progress"]


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    A crash leaves at most a ``.tmp`` file that no reader trusts, never a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save_npy(path: str | Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def short_hash(*parts, n: int = 16) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode() if not isinstance(p, bytes) else p)
        h.update(b"\x00")
    return h.hexdigest()[:n]


def progress(iterable=None, **kw):
    """tqdm progress bar (disabled when KAGGLE_KIT_NO_PROGRESS is set, e.g. in tests)."""
    from tqdm.auto import tqdm

    kw.setdefault("disable", bool(os.environ.get("KAGGLE_KIT_NO_PROGRESS")))
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kw)
