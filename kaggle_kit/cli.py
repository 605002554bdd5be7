"""The one way every tool reports an expected error: ``error: <what>, <where>, <what to do>`` and exit 2.

    from kaggle_kit.cli import run
    if __name__ == "__main__":
        run(main)

Expected errors are the user's: ``UserError`` (DataError, ConfigError, SubmissionError, ProbMapError,
SearchError, CheckpointError all derive from it), a path that is missing, a folder where a file was
expected, a file that cannot be read or written (``OSError`` with a file name), a disk that is full or
read-only, a quota exceeded, a permission refused (ENOSPC, EDQUOT, EROFS, EACCES, EPERM: with or without a
file name), and YAML that does not parse.
Each becomes one line on stderr, never a traceback. Anything else is a bug in kaggle_kit and keeps its
traceback (set ``KAGGLE_KIT_TRACEBACK=1`` to see one for expected errors too).

Level 0: imports nothing from the package but ``utils`` (the error types register by deriving from
``UserError``), so any tool may use it.
"""
from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

import yaml

from kaggle_kit.utils import UserError

__all__ = ["EXIT_USER_ERROR", "format_error", "is_expected", "run"]

EXIT_USER_ERROR = 2

#: OS errors that are the machine's state, not a bug: what to do about each
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space there or write to another disk",
    errno.EDQUOT: "the disk quota is exceeded: free space in your quota or write to another disk",
    errno.EROFS: "the file system is read-only: write to a writable folder",
    errno.EACCES: "no permission: check the permissions of the file and its folder, or write elsewhere",
    errno.EPERM: "operation not permitted: check the permissions of the file and its folder, or write elsewhere",
}


def is_expected(e: BaseException) -> bool:
    """True for the errors a user can fix (see the module docstring)."""
    if isinstance(e, (UserError, yaml.YAMLError)):
        return True
    # a path the user gave: missing, a folder for a file (or back), no permission, full disk
    if isinstance(e, OSError) and e.errno in _OS_HINTS:
        return True
    return isinstance(e, OSError) and (e.filename is not None or isinstance(
        e, (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError)))


def format_error(e: BaseException) -> str:
    """The one ``error: ...`` line for an expected error (whitespace and newlines folded)."""
    if isinstance(e, OSError) and e.errno in _OS_HINTS:
        what = (e.strerror or os.strerror(e.errno)).lower()
        where = e.filename if e.filename is not None else "(the file being written when it happened)"
        msg = f"{what}: {where}; {_OS_HINTS[e.errno]}"
    elif isinstance(e, OSError) and e.filename is not None:
        what = (e.strerror or type(e).__name__).lower()
        hint = {FileNotFoundError: "check the path", IsADirectoryError: "give a file path, not a folder",
                NotADirectoryError: "give a folder path", PermissionError: "check the file's permissions",
                FileExistsError: "choose another path or remove it"}.get(type(e), "check the path")
        msg = f"{what}: {e.filename}; {hint}"
    elif isinstance(e, yaml.YAMLError):
        mark = getattr(e, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a YAML file"
        msg = f"YAML does not parse ({getattr(e, 'problem', None) or type(e).__name__}), {where}; fix the syntax"
    else:
        msg = str(e)
    return "error: " + " ".join(msg.split())


def run(main: Callable[..., int | None], argv=None) -> None:
    """Call ``main(argv)`` and exit with its return code; an expected error exits 2 with one line."""
    try:
        code = main(argv)
    except Exception as e:  # noqa: BLE001 - filtered just below; unexpected errors are re-raised
        if not is_expected(e) or os.environ.get("KAGGLE_KIT_TRACEBACK"):
            raise
        print(format_error(e), file=sys.stderr)
        code = EXIT_USER_ERROR
    sys.exit(code or 0)
