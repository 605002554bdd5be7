"""Execute the Kaggle inference notebook headless (nbclient), as Kaggle would, optionally with no network.

    python tools/run_notebook.py --bundle BUNDLE --data-root ROOT --out submission.csv [--offline]
        [--debug-case-days 3] [--time-budget-h 8] [--budget-check-after 2]
        [--notebook submission/kaggle_kit_inference.ipynb] [--executed NB_OUT.ipynb]

The notebook runs in its own process group; when this tool is killed or interrupted (SIGINT, SIGTERM,
SIGHUP, or ``kill -9`` on Linux) the runner and its kernel die with it, so nothing of a killed run writes
``--out`` afterwards.

``--offline`` runs the kernel in a fresh network namespace (``unshare -n``: no interface but loopback), the
proof that nothing reaches the network; it fails clearly where unshare is not permitted. The notebook's
printed output is echoed; its last JSON summary line is printed last. Exit 1 when a cell raised (the public
run raises on any member failure, see ``kaggle_kit.deploy.infer``) or when the notebook took its fallback
path (empty masks). What the run dropped or shed is in ``<out stem>_report.json`` next to ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.resources import notebook_path

NOTEBOOK = notebook_path()

# The runner: executes the notebook with nbclient. It dies with its parent (this tool) and makes the kernel
# die with it (Linux PR_SET_PDEATHSIG, set by a first cell that is removed again from the outputs), so a
# killed run (even ``kill -9``) leaves no kernel behind to finish and write a submission afterwards.
_KERNEL = r'''
import json, os, signal, sys
cfg = json.loads(sys.argv[1])


def _die_with_parent(parent):
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except Exception:  # noqa: BLE001 - elsewhere the process group kill is all there is
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


_die_with_parent(cfg["parent"])
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(cfg["notebook"], as_version=4)
guard = nbformat.v4.new_code_cell(
    "import ctypes as _kk_c, os as _kk_o\n"
    "try:\n    _kk_c.CDLL(None).prctl(1, 9)\nexcept Exception:\n    pass\n"
    f"if _kk_o.getppid() != {os.getpid()}:\n    _kk_o._exit(1)\n"
    "del _kk_c, _kk_o")
nb.cells.insert(0, guard)
try:
    NotebookClient(nb, timeout=cfg["timeout"], kernel_name="python3",
                   resources={"metadata": {"path": cfg["cwd"]}}).execute()
finally:
    nb.cells = [c for c in nb.cells if c is not guard]
    if cfg["executed"]:
        nbformat.write(nb, cfg["executed"])
    for c in nb.cells:
        if c.cell_type == "code":
            for o in c.get("outputs", []):
                sys.stdout.write(o.get("text", "") or "".join(o.get("traceback", [])) + "\n")
'''


def can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0


def run_notebook(bundle, data_root, out, *, offline: bool = False, debug_case_days: int = 3,
                 time_budget_h: float | None = None, budget_check_after: int | None = None,
                 notebook=NOTEBOOK, executed=None, timeout: int = 3600, python=sys.executable,
                 cwd=None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the notebook in a subprocess with KK_* set; returns the finished process (stdout = outputs,
    returncode != 0 when a cell raised). An exception while waiting (KeyboardInterrupt, the SystemExit of
    main's SIGTERM handler) kills the runner and its kernel before it propagates; a ``kill -9`` of this
    process takes them down too (Linux: they die with their parent)."""
    if offline and not can_unshare():
        raise RuntimeError("`unshare -n` is not permitted here (needs root or user namespaces); drop --offline")
    cwd = Path(cwd or Path(out).resolve().parent)
    cwd.mkdir(parents=True, exist_ok=True)
    cfg = {"notebook": str(Path(notebook).resolve()), "cwd": str(cwd), "timeout": int(timeout),
           "executed": str(Path(executed).resolve()) if executed else None, "parent": os.getpid()}
    cmd = [str(python), "-c", _KERNEL, json.dumps(cfg)]
    if offline:  # loopback up for the kernel's ZMQ sockets, nothing else exists
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh", *cmd]
    env = dict(os.environ, KK_BUNDLE=str(Path(bundle).resolve()), KK_DATA=str(Path(data_root).resolve()),
               KK_OUT=str(Path(out).resolve()), KK_DEBUG_CASE_DAYS=str(debug_case_days), **(extra_env or {}))
    if time_budget_h is not None:
        env["KK_TIME_BUDGET_H"] = str(time_budget_h)
    if budget_check_after is not None:
        env["KK_BUDGET_CHECK_AFTER"] = str(budget_check_after)
    # its own process group: a signal to this tool's group (Ctrl-C) does not reach it directly; this
    # function ends it, whatever stops the wait (an interrupt, SIGTERM through main's handler)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                            start_new_session=True)
    try:
        out_text, err_text = proc.communicate()
    except BaseException:
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out_text, err_text)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the runner's process group (the kernel follows it: see ``_KERNEL``) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds run_notebook's wait, which ends the runner's group


def summary_of(text: str) -> dict | None:
    """The notebook prints run_inference's summary as an indented JSON object; find and parse it."""
    start = text.rfind("\n{")
    while start != -1:
        end = text.find("\n}", start)
        if end != -1:
            try:
                return json.loads(text[start + 1:end + 2])
            except ValueError:
                pass
        start = text.rfind("\n{", 0, start)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--out", required=True, help="submission.csv the notebook writes")
    ap.add_argument("--offline", action="store_true", help="no network at all (unshare -n)")
    ap.add_argument("--debug-case-days", type=int, default=3)
    ap.add_argument("--time-budget-h", type=float, default=None, help="hours the run may take (notebook: 8)")
    ap.add_argument("--budget-check-after", type=int, default=None,
                    help="case-days measured before the time budget is first checked (notebook: 2)")
    ap.add_argument("--notebook", default=str(NOTEBOOK))
    ap.add_argument("--executed", default=None, help="also save the executed notebook here")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    a = ap.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    try:
        p = run_notebook(a.bundle, a.data_root, a.out, offline=a.offline, debug_case_days=a.debug_case_days,
                         time_budget_h=a.time_budget_h, budget_check_after=a.budget_check_after,
                         notebook=a.notebook, executed=a.executed, timeout=a.timeout)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(p.stdout)
    if p.returncode != 0:
        print(p.stderr[-4000:], file=sys.stderr)
        print(f"error: the notebook failed (exit {p.returncode})", file=sys.stderr)
        return 1
    s = summary_of(p.stdout)
    fallback = "FALLBACK" in p.stdout
    print(json.dumps({"out": str(a.out), "fallback": fallback, "offline": a.offline, "summary": s}))
    return 1 if fallback else 0



if __name__ == "__main__":
    run(main)
