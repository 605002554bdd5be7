"""Child processes that never outlive the tool that started them.

:func:`run_child` starts a command in its own process group, asks the kernel to kill it when its parent dies
(Linux ``PR_SET_PDEATHSIG``: even a ``kill -9`` of the parent takes it down) and, when the wait is interrupted
(Ctrl-C, SIGTERM turned into an exception), kills the whole group before the interruption propagates. So a
killed ``kk run`` leaves no training or notebook behind that goes on writing. Level 0: imports nothing from
the package.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess

__all__ = ["run_child"]


def _die_with_parent(parent: int) -> None:  # runs in the child, between fork and exec
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def run_child(cmd: list[str], env: dict | None = None, stdout=subprocess.PIPE, cwd=None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, text=True, stdout=stdout)`` whose child dies with this process (see the module
    docstring); stderr passes through."""
    parent = os.getpid()
    proc = subprocess.Popen(cmd, text=True, stdout=stdout, env=env, cwd=cwd, start_new_session=True,
                            preexec_fn=lambda: _die_with_parent(parent))
    try:
        out, _ = proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)
