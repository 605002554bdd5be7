"""Small shared helpers: the expected-error base class, atomic writes, hashing, progress bars."""
from __future__ import annotations

import contextlib
import difflib
import errno
import glob
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = [
    "read_by_format",
    "UserError", "atomic_path", "atomic_save_figure", "atomic_save_npy", "atomic_write_text", "atomic_write_json", "remove_stale_temps",
    "staged_dir", "short_hash", "progress", "did_you_mean", "sha256_file",
]

# Temporary files this process did not create and that are older than its start were left by a killed run.
_PROCESS_START = time.time()


class UserError(Exception):
    """An expected error caused by the user's input (data, config, paths, arguments).

    Its message says what is wrong, where (file, row, key) and what to do. Every tool prints it as one
    ``error: ...`` line and exits 2 (``kaggle_kit.cli.run``); anything else is a bug and keeps its traceback.
    The project's error types (DataError, ConfigError, SubmissionError, ...) derive from it.
    """


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it, which races with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def remove_stale_temps(folder: str | Path, pattern: str = ".*.tmp", recursive: bool = False) -> int:
    """Delete our own temporary files (``pattern``, default ``.<name>.<random>.tmp`` of ``atomic_path``)
    under ``folder`` older than this process: leftovers of a killed run. Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in (folder.rglob(pattern) if recursive else folder.glob(pattern)):
        try:
            if p.is_file() and p.stat().st_mtime < _PROCESS_START:
                p.unlink()
                n += 1
        except OSError:
            pass
    return n


def _writable_or_refuse(path: Path) -> int | None:
    """The mode of an existing ``path`` (kept by the write that replaces it), None when there is none;
    PermissionError when the user may not write it, as ``cp`` refuses (a rename would replace a read-only
    file silently: renaming needs only the folder's permission). Root may write anything, as with ``cp``."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    eff = os.access in os.supports_effective_ids
    if not os.access(path, os.W_OK, effective_ids=eff):
        raise PermissionError(errno.EACCES, "Permission denied (an existing file without write permission is "
                              "never replaced)", str(path))
    return stat.S_IMODE(st.st_mode)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    A crash leaves at most a ``.<name>.<random>.tmp`` file that no reader trusts, never a half-written
    ``path``; the next atomic write of the same ``path`` removes such leftovers of earlier (killed) runs.
    A new file gets the usual ``0666 & ~umask`` mode (mkstemp alone would make it 0600), a replaced one
    keeps its mode; an existing ``path`` the user may not write is refused (PermissionError), as ``cp``
    would. Any error removes the temporary file; an ``OSError`` without a file name (a full disk while
    writing: ENOSPC, EDQUOT) gets ``path`` as its file name, so the one-line error names it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file path to write")
    mode = _writable_or_refuse(path)
    remove_stale_temps(path.parent, f".{glob.escape(path.name)}.*.tmp")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # a read-only or full file system, a folder without write permission: name the target
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        # numpy's tofile reports a full disk as an OSError without errno: asked before the temp file goes
        full = isinstance(e, OSError) and e.errno is None and _no_space_left(path.parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            e.filename = str(path)
        raise


def _no_space_left(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail == 0


def atomic_save_figure(fig, path: str | Path, dpi: int = 90) -> Path:
    """Save a matplotlib figure as PNG through :func:`atomic_path`, then close it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def atomic_save_npy(path: str | Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


@contextlib.contextmanager
def staged_dir(final: str | Path):
    """Yield an empty sibling folder to build into; on success it replaces ``final`` in two renames
    (``final`` is moved aside, the new folder moved in, the old one deleted); on failure it is deleted
    and ``final`` is untouched. Checks on ``final`` itself are the caller's job (nothing is deleted first).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    name = glob.escape(final.name)
    # left by a killed build: a half-built folder; a replaced one whose deletion was cut short (kept while
    # ``final`` is missing: a kill between the two renames leaves the previous folder there, intact)
    stale = list(final.parent.glob(f".{name}.*.staging"))
    stale += list(final.parent.glob(f".{name}.*.previous")) if final.exists() else []
    for d in stale:
        if d.stat().st_mtime < _PROCESS_START:
            shutil.rmtree(d, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".previous", dir=final.parent))
            os.rmdir(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def did_you_mean(name, options, n: int = 1, list_all: bool = True) -> str:
    """The hint after an unknown name: ``did you mean 'x'?`` (the ``n`` closest options), else, with
    ``list_all``, ``options: [...]``, else an empty string. One phrasing for every "unknown ..." error."""
    opts = [str(o) for o in options]
    close = difflib.get_close_matches(str(name), opts, n=n)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"options: {sorted(opts)}" if list_all else ""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def read_by_format(obj: dict, readers: dict, path, error: type[Exception], what: str, redo: str) -> dict:
    """``obj`` (a checkpoint's meta, a manifest) read by the reader of its ``format`` (absent: 1, the format
    before the key existed); ``error`` naming ``path`` for a format with no reader (``redo``: what to do again
    with this kaggle_kit)."""
    fmt = obj.get("format", 1)
    reader = readers.get(fmt) if isinstance(fmt, int) and not isinstance(fmt, bool) else None
    if reader is None:
        raise error(f"{path}: {what} format {fmt!r}; this kaggle_kit reads format(s) {sorted(readers)}: a newer "
                    f"kaggle_kit wrote it, upgrade kaggle_kit or {redo}")
    return reader(obj, path)
