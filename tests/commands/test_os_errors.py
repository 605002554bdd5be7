"""A full disk, a read-only file system, a quota, a refused permission: one ``error:`` line naming the path and
what to do, exit 2, and no partial file left (issue 32).

The full and read-only disks are real: a small tmpfs mounted in a private mount namespace (``unshare -m``),
where that is permitted; elsewhere those tests skip.
"""
import errno
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.commands.test_bad_input import one_error_line
from tests.conftest import ROOT


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    p = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True)
    return p.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs `unshare -m` and mount (root or user namespaces)")


def _tool_on_tmpfs(mnt, size: str, script: str, *args, read_only: bool = False):
    """Run tools/<script> with a fresh tmpfs of ``size`` at ``mnt`` (read-only with ``read_only``); the
    files left on it afterwards are printed on stdout's last line (the tmpfs is gone when this returns)."""
    mnt.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0777" + (",ro" if read_only else "")
    sh = ('mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; d="$2"; shift 2; "$@"; rc=$?; '
          'echo "LEFT: $(cd "$d" && find . -type f | sort | tr "\\n" " ")"; exit $rc')
    cmd = ["unshare", "-m", "sh", "-c", sh, "sh", opts, str(mnt), sys.executable, str(ROOT / "tools" / script),
           *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode != 99, p.stderr
    left = p.stdout.strip().splitlines()[-1]
    assert left.startswith("LEFT:"), p.stdout
    return p, left[len("LEFT:"):].split()


def _ensemble_yaml(tmp_path):
    ens = tmp_path / "ensemble.yaml"
    ens.write_text(yaml.safe_dump({"members": [{"exp": "tiny_cpu", "kind": "pixel", "weight": 1.0}], "threshold": 0.5}))
    return ens


@needs_mount
def test_full_disk_prepare_is_one_line_and_leaves_no_partial_file(synth_root, tmp_path):
    mnt = tmp_path / "mnt"
    p, left = _tool_on_tmpfs(mnt, "64k", "prepare.py", "--data-root", synth_root, "--cache", mnt / "cache")
    line = one_error_line(p)
    assert line.startswith("error: no space left on device: ") and str(mnt / "cache") in line
    assert "the disk is full: free space there or write to another disk" in line
    assert not [f for f in left if f.endswith(".tmp")], left  # complete files only, no temporary one


@needs_mount
def test_full_disk_ensemble_names_out_and_leaves_nothing(trained_seg25d, synth_root, tmp_path):
    mnt = tmp_path / "mnt"
    out = mnt / "submission.csv"
    p, left = _tool_on_tmpfs(mnt, "4k", "ensemble.py", _ensemble_yaml(tmp_path), "--data-root", synth_root,
                             "--out", out, "--preds", trained_seg25d["pred_root"])
    line = one_error_line(p)
    assert line == f"error: no space left on device: {out}; the disk is full: free space there or write to another disk"
    assert left == []


@needs_mount
def test_read_only_file_system_names_out(trained_seg25d, synth_root, tmp_path):
    mnt = tmp_path / "mnt"
    out = mnt / "submission.csv"
    p, left = _tool_on_tmpfs(mnt, "1m", "ensemble.py", _ensemble_yaml(tmp_path), "--data-root", synth_root,
                             "--out", out, "--preds", trained_seg25d["pred_root"], read_only=True)
    line = one_error_line(p)
    assert line == f"error: read-only file system: {out}; the file system is read-only: write to a writable folder"
    assert left == []


@pytest.mark.parametrize("code, text", [
    (errno.ENOSPC, "no space left on device: /data/x.npy; the disk is full"),
    (errno.EDQUOT, "disk quota exceeded: /data/x.npy; the disk quota is exceeded: free space in your quota"),
    (errno.EROFS, "read-only file system: /data/x.npy; the file system is read-only"),
    (errno.EACCES, "permission denied: /data/x.npy; no permission: check the permissions of the file and its folder"),
])
def test_os_errors_are_one_line_from_any_tool(code, text):
    """Each errno, with and without a file name (a write that fails inside a library has none), through
    ``kaggle_kit.cli.run``, the wrapper of every tool: exit 2, one line, no traceback."""
    import os

    for filename in ("/data/x.npy", None):
        args = f"{code}, {os.strerror(code)!r}" + (f", {filename!r}" if filename else "")
        prog = f"from kaggle_kit.cli import run\ndef main(argv): raise OSError({args})\nrun(main)\n"
        p = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True)
        line = one_error_line(p)
        want = text if filename else text.replace("/data/x.npy", "(the file being written when it happened)")
        assert line.startswith("error: " + want), line


def test_atomic_write_names_the_target_of_a_failed_write(tmp_path, monkeypatch):
    """A write that fails without a file name (ENOSPC from ``write``) is reported with the target path, and
    the temporary file is gone."""
    from kaggle_kit.utils import atomic_path

    target = tmp_path / "out.csv"
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
