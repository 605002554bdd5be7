"""A child started by a tool dies with it: ``kill -9`` of the parent leaves nothing that goes on writing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

PARENT = textwrap.dedent("""
    import sys
    from kaggle_kit.children import run_child
    out, pidfile = sys.argv[1], sys.argv[2]
    child = "import os, time; open(%r, 'w').write(str(os.getpid())); time.sleep(4); open(%r, 'w').write('late')"
    run_child([sys.executable, "-c", child % (pidfile, out)])
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting to be reaped is dead
        return f.read().split()[2] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_parent_takes_its_child_along(tmp_path, how):
    out, pidfile = tmp_path / "out.txt", tmp_path / "child.pid"
    p = subprocess.Popen([sys.executable, "-c", PARENT, str(out), str(pidfile)])
    for _ in range(200):
        if pidfile.is_file() and pidfile.read_text():
            break
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert _alive(child)
    p.send_signal(how)
    p.wait(timeout=10)
    deadline = time.time() + 3
    while _alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child outlived its killed parent"
    time.sleep(5)  # past the child's 4 s: a survivor would have written by now
    assert not out.exists()


def test_run_child_returns_like_subprocess_run():
    from kaggle_kit.children import run_child

    p = run_child([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"])
    assert p.returncode == 3 and p.stdout == "hi\n"
