"""Execute the Kaggle inference notebook headless (nbclient), as Kaggle would, optionally with no network.

    python tools/run_notebook.py --bundle BUNDLE --data-root ROOT --out submission.csv [--offline]
        [--debug-case-days 3] [--time-budget-h 8] [--budget-check-after 2]
        [--notebook submission/kaggle_kit_inference.ipynb] [--executed NB_OUT.ipynb]

``--offline`` runs the kernel in a fresh network namespace (``unshare -n``: no interface but loopback), the
proof that nothing reaches the network; it fails clearly where unshare is not permitted. The notebook's
printed output is echoed; its last JSON summary line is printed last. Exit 1 when a cell raised (the public
run raises on any member failure, see ``kaggle_kit.deploy.infer``) or when the notebook took its fallback
path (empty masks). What the run dropped or shed is in ``<out stem>_report.json`` next to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.resources import notebook_path

NOTEBOOK = notebook_path()

_KERNEL = r'''
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
try:
    NotebookClient(nb, timeout=int(sys.argv[3]), kernel_name="python3",
                   resources={"metadata": {"path": sys.argv[2]}}).execute()
finally:
    if len(sys.argv) > 4:
        nbformat.write(nb, sys.argv[4])
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
    returncode != 0 when a cell raised)."""
    if offline and not can_unshare():
        raise RuntimeError("`unshare -n` is not permitted here (needs root or user namespaces); drop --offline")
    cwd = Path(cwd or Path(out).resolve().parent)
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), "-c", _KERNEL, str(Path(notebook).resolve()), str(cwd), str(timeout)]
    if executed:
        cmd.append(str(Path(executed).resolve()))
    if offline:  # loopback up for the kernel's ZMQ sockets, nothing else exists
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh", *cmd]
    env = dict(os.environ, KK_BUNDLE=str(Path(bundle).resolve()), KK_DATA=str(Path(data_root).resolve()),
               KK_OUT=str(Path(out).resolve()), KK_DEBUG_CASE_DAYS=str(debug_case_days), **(extra_env or {}))
    if time_budget_h is not None:
        env["KK_TIME_BUDGET_H"] = str(time_budget_h)
    if budget_check_after is not None:
        env["KK_BUDGET_CHECK_AFTER"] = str(budget_check_after)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)


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
